"""The burden report (issue 14): per person per ISO week, what gridsync asked of them, on a
hand-built week of the district of ``tests/coverage_community.py``.

NOW is Friday 2026-11-20 20:00 in Shanghai: ISO week 2026-W47 runs from Monday 16 November
00:00 to Monday 23 November 00:00 Shanghai time. The fixture's visits in that week: m1 at h1
(Tuesday), m2 at h5 (Thursday; a voided one Wednesday), m5 at h13 (Wednesday); m2's visit at h7
is Sunday 15 November 20:00 Shanghai, the week before. In the week we add:

- m1's phone (the reference client) pushes a visit to h3, an edit of h1 and a whistle case in
  g1: 3 mutations; m1 still owes h4 (never visited): 1 household due;
- m2 pushes a visit to h5 through the push endpoint, then resends the same batch (a timeout):
  1 mutation, the resend is a duplicate;
- the daily digest goes out (the sweep) to the members with a channel and households due (m1;
  m2 has a channel but nothing due), the weekly coverage digest to the secretary sec1; m1's
  case tells the grid's other members (m2);
- the admin escalates m1's case and a second one of g2 to the community: two alerts to its
  secretary sec1, who accepts the first afterwards: 2 received, 1 acted on.
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from gridsync import sweep
from gridsync.cli import cli
from gridsync.clock import FixedClock, iso_ms, uuid7
from gridsync.sync.client import DeviceClient
from tests.conftest import bearer
from tests.coverage_community import NOW_MS
from tests.sync_helpers import Phone

BURDEN = "/api/v1/reports/burden"
MINUTE = 60_000
CHANNEL = '["json://127.0.0.1:9/burden"]'


@pytest.fixture
def week(store, cov_settings, cov_client, comm):
    """The hand-built week; returns the time the report is read at."""
    store.write(
        lambda db: db.execute(
            "UPDATE people SET channels = ? WHERE id IN ('m1', 'm2', 'sec1')", [CHANNEL]
        )
    )
    sweep.run_once(store, cov_settings, comm.clock, dispatch=False)  # the daily digest

    comm.clock.advance(minutes=1)
    phone = DeviceClient(
        cov_client,
        token=comm.tokens["m1"],
        device_id="dev-m1",
        clock=FixedClock(comm.clock.now_ms()),
        sleep=lambda _s: None,
    )
    phone.sync()
    phone.log_visit("h3", "door", ["policy"], "")
    phone.update_household("h1", fields={"notes": "独居，需每周电话"})
    case1 = uuid7()
    phone.enqueue(
        "whistle.raise",
        case1,
        data={"category": "safety", "grid_id": "g1", "description": "楼道堆物"},
    )
    report = phone.push()
    assert report.applied == 3, report

    m2 = Phone(cov_client, comm.tokens["m2"], "dev-m2", now_ms=comm.clock.now_ms())
    batch = [m2.visit("h5")]
    assert m2.push(batch).status_code == 200
    resent = m2.push(batch).json()
    assert [r["status"] for r in resent["results"]] == ["duplicate"]

    admin = bearer(comm.tokens["admin"])
    r = cov_client.post(
        "/api/v1/whistle/cases",
        json={"category": "safety", "grid_id": "g2", "description": "路灯不亮"},
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    case2 = r.json()["id"]
    for case in (case1, case2):
        r = cov_client.post(
            f"/api/v1/whistle/cases/{case}/actions", json={"action": "escalate"}, headers=admin
        )
        assert r.status_code == 200, r.text
    comm.clock.advance(minutes=5)
    r = cov_client.post(
        f"/api/v1/whistle/cases/{case1}/actions",
        json={"action": "accept"},
        headers=bearer(comm.tokens["sec1"]),
    )
    assert r.status_code == 200, r.text
    return comm.clock.now_ms()


def rows_of(report: dict) -> dict[str, dict]:
    return {r["person_id"]: r for r in report["rows"]}


def test_the_figures_of_a_hand_built_week(cov_client, comm, week):
    r = cov_client.get(
        BURDEN, params={"scope": "c1", "week": "2026-W47"}, headers=bearer(comm.tokens["admin"])
    )
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["week"] == "2026-W47"
    rows = rows_of(report)
    # the people of c1: its secretary, b1's secretary, its members (mx is inactive)
    assert list(rows) == ["bs1", "m1", "m2", "m3", "m4", "sec1"]

    m1 = rows["m1"]
    assert (m1["name"], m1["roles"]) == ("张伟", ["member"])
    assert m1["mutations"] == 3
    assert m1["visits"] == 2  # h1 (fixture, Tuesday) and h3 (pushed)
    assert m1["households_due"] == 1  # h4, never visited
    assert m1["notifications"] == {"digest_daily": 1}
    assert m1["alerts_acted"] is None  # not a secretary

    m2 = rows["m2"]
    assert m2["mutations"] == 1  # the resend asked nothing new
    assert m2["visits"] == 2  # h5 Thursday and h5 pushed; not the voided one, not h7 (W46)
    assert m2["households_due"] == 0
    assert m2["notifications"] == {"whistle_raised": 1}  # m1's case in their grid; no digest

    sec1 = rows["sec1"]
    assert sec1["mutations"] == 0 and sec1["visits"] == 0 and sec1["households_due"] == 0
    assert sec1["notifications"] == {"digest_weekly": 1, "whistle_escalated": 2}
    assert sec1["alerts_acted"] == {"received": 2, "acted": 1}
    # b1's secretary has no channel: the alerts reach the inbox all the same, and count
    assert rows["bs1"]["notifications"] == {"digest_weekly": 1, "whistle_raised": 1}
    assert rows["bs1"]["alerts_acted"] == {"received": 1, "acted": 0}

    m3 = rows["m3"]  # nothing asked of m3 this week but to read of m1's case in their grid
    assert (m3["mutations"], m3["visits"], m3["households_due"], m3["notifications"]) == (
        0,
        0,
        0,
        {"whistle_raised": 1},  # no channel: the inbox (notices) counts
    )

    # the week before: m1's visit at h2 (Tuesday 10th) and m2's at h7 (Sunday 15th 20:00
    # Shanghai); nothing pushed or sent
    before = rows_of(
        cov_client.get(
            BURDEN, params={"scope": "c1", "week": "2026-W46"}, headers=bearer(comm.tokens["admin"])
        ).json()
    )
    assert {p: r["visits"] for p, r in before.items() if r["visits"]} == {"m1": 1, "m2": 1}
    assert all(r["mutations"] == 0 and r["notifications"] == {} for r in before.values())

    # without a week: this week (the clock's); the whole district for an admin
    everyone = rows_of(cov_client.get(BURDEN, headers=bearer(comm.tokens["admin"])).json())
    assert everyone["m1"] == m1
    assert {"admin", "street1", "m5"} <= set(everyone)
    assert everyone["m5"]["visits"] == 1 and everyone["m5"]["households_due"] == 1


def test_who_may_read_it_and_bounds(cov_client, comm, week):
    def get(person, **params):
        return cov_client.get(BURDEN, params=params, headers=bearer(comm.tokens[person]))

    assert get("m1").status_code == 403
    r = get("sec1", scope="c2")
    assert r.status_code == 403 and r.json()["code"] == "out_of_scope"
    assert set(rows_of(get("sec1", week="2026-W47").json())) == {
        "bs1",
        "m1",
        "m2",
        "m3",
        "m4",
        "sec1",
    }
    assert set(rows_of(get("bs1", week="2026-W47").json())) == {"bs1", "m1", "m2"}
    for bad in ("2026-47", "2026-W54", "1969-W01", "2026-W00", "2026-W5x"):
        r = get("admin", week=bad)
        assert r.status_code == 400 and r.json()["code"] == "validation_error", bad
    r = get("admin", week="2026-W49")  # not begun at NOW
    assert r.status_code == 400 and r.json()["field"] == "week"


def test_cli_json_and_xlsx(cov_client, comm, week, db_path, tmp_path):
    api = cov_client.get(
        BURDEN, params={"scope": "c1", "week": "2026-W47"}, headers=bearer(comm.tokens["admin"])
    ).json()
    out = tmp_path / "burden.xlsx"
    args = ["report", "burden", "--db", db_path, "--scope", "c1", "--week", "2026-W47"]
    args += ["--now", iso_ms(week)]
    r = CliRunner().invoke(cli, [*args, "--json", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == api

    ws = load_workbook(out).active
    header = [c.value for c in ws[1]]
    assert ws.title == "工作负担 2026-W47"
    assert header[:7] == [
        "人员编号",
        "姓名",
        "角色",
        "推送变更数",
        "走访数",
        "待走访户数",
        "收到通知数",
    ]
    assert "通知：吹哨上报" in header and header[-2:] == ["收到预警数", "已处置预警数"]
    by_id = {row[0]: dict(zip(header, row)) for row in ws.iter_rows(min_row=2, values_only=True)}
    assert by_id["m1"]["推送变更数"] == 3 and by_id["m1"]["角色"] == "党员"
    assert by_id["sec1"]["已处置预警数"] == 1 and by_id["m1"]["已处置预警数"] is None

    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0 and "张伟" in table.stdout and "2026-W47" in table.stderr


def test_a_push_belongs_to_the_week_of_its_receipt_in_shanghai(cov_client, comm, week):
    """The week's bounds are Shanghai's Monday midnights: a push received Sunday 23:59 local
    counts in that week, one received Monday 00:00 local in the next."""
    from datetime import UTC, datetime

    monday = datetime(2026, 11, 22, 16, 0, tzinfo=UTC)  # Monday 23 November 00:00 in Shanghai
    m3 = Phone(cov_client, comm.tokens["m3"], "dev-m3", now_ms=NOW_MS)
    comm.clock.set(datetime(2026, 11, 22, 15, 59, tzinfo=UTC))
    assert m3.push([m3.visit("h9")]).status_code == 200
    comm.clock.set(monday)
    assert m3.push([m3.visit("h10")]).status_code == 200

    def mutations(week: str) -> int:
        r = cov_client.get(
            BURDEN, params={"scope": "g2", "week": week}, headers=bearer(comm.tokens["admin"])
        )
        assert r.status_code == 200, r.text
        return rows_of(r.json())["m3"]["mutations"]

    assert (mutations("2026-W47"), mutations("2026-W48")) == (1, 1)

"""Hotline orders (12345, 接诉即办) and supervision (督办), issue 17: working-day deadlines, orders
in by the API and by the spreadsheet (idempotent by number), a missed first contact escalated by
the sweep, the three rates from callbacks only (by someone other than the handler), and a
supervised case alerting the unit through a real Apprise delivery."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone

import pytest
from litestar.testing import TestClient

from gridsync import auth, org
from gridsync.app import create_app
from gridsync.audit import Actor
from gridsync.clock import FixedClock, iso_ms
from gridsync.config import HotlineSettings, NotifySettings, Settings, WorkCalendar
from gridsync.notify.dispatcher import Dispatcher
from gridsync.sweep import run_once
from gridsync.workdays import is_workday, working_deadline
from tests.conftest import bearer
from tests.sync_helpers import Phone
from tests.test_notify import REPO, Receiver, set_channels

CN = timezone(timedelta(hours=8))
TZ = "Asia/Shanghai"
# 2026-10-01 (Thu) and 10-02 (Fri) holidays, Saturday 10-10 a make-up workday (调休).
CALENDAR = WorkCalendar(
    holidays=(date(2026, 10, 1), date(2026, 10, 2)), makeup_workdays=(date(2026, 10, 10),)
)
FRIDAY_4PM = datetime(2026, 11, 20, 16, 0, tzinfo=CN)


def at(*args: int) -> int:
    return int(datetime(*args, tzinfo=CN).timestamp() * 1000)


# -- the working calendar: THE deadline function -------------------------------------------------


@pytest.mark.parametrize(
    ("start", "allowance", "expected", "why"),
    [
        ((2026, 11, 23, 10, 0), {"hours": 2}, (2026, 11, 23, 12, 0), "inside the morning"),
        ((2026, 11, 23, 11, 0), {"hours": 2}, (2026, 11, 23, 14, 30), "over the lunch break"),
        ((2026, 11, 20, 16, 30), {"hours": 2}, (2026, 11, 23, 10, 0), "over a weekend"),
        ((2026, 11, 21, 11, 0), {"hours": 1}, (2026, 11, 23, 10, 0), "started on a Saturday"),
        ((2026, 11, 20, 10, 0), {"days": 1}, (2026, 11, 23, 17, 30), "a day over a weekend"),
        ((2026, 9, 30, 10, 0), {"days": 1}, (2026, 10, 5, 17, 30), "over a holiday + weekend"),
        ((2026, 9, 30, 17, 0), {"hours": 1}, (2026, 10, 5, 9, 30), "hours over the holiday"),
        ((2026, 10, 9, 17, 0), {"hours": 1}, (2026, 10, 10, 9, 30), "into a make-up Saturday"),
        ((2026, 10, 9, 9, 0), {"days": 1}, (2026, 10, 10, 17, 30), "the make-up day counts"),
        ((2026, 10, 10, 18, 0), {"days": 1}, (2026, 10, 12, 17, 30), "from a make-up day"),
    ],
)
def test_working_deadline(start, allowance, expected, why):
    assert working_deadline(at(*start), CALENDAR, TZ, **allowance) == at(*expected), why


def test_workdays_by_the_calendar():
    assert not is_workday(CALENDAR, date(2026, 11, 21))  # Saturday
    assert not is_workday(CALENDAR, date(2026, 10, 1))  # holiday on a Thursday
    assert is_workday(CALENDAR, date(2026, 10, 10))  # 调休: a Saturday worked
    assert is_workday(CALENDAR, date(2026, 11, 23))
    with pytest.raises(ValueError):
        working_deadline(at(2026, 11, 23, 9), WorkCalendar(workdays=()), TZ, hours=1)


def test_a_calendar_with_bad_hours_is_refused(tmp_path):
    from gridsync.config import ConfigError, load_settings

    path = tmp_path / "g.toml"
    path.write_text('[calendar]\nhours = [["13:00", "12:00"]]\n')
    with pytest.raises(ConfigError, match=r"calendar\.hours"):
        load_settings(path)
    path.write_text("[calendar]\nholidays = [2026-10-01]\nmakeup_workdays = [2026-10-10]\n")
    loaded = load_settings(path)
    assert loaded.calendar.holidays == (date(2026, 10, 1),)
    assert loaded.hotline == HotlineSettings()


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(FRIDAY_4PM)


@pytest.fixture
def hsettings(db_path) -> Settings:
    return Settings(
        db=db_path,
        calendar=CALENDAR,
        hotline=HotlineSettings(contact_hours=2, resolve_days=3),
        notify=NotifySettings(timeout_seconds=5),
    )


@pytest.fixture
def people(store, tiny):
    """The tiny org plus a supervisor (督办), the platform's credential (hotline) and a street
    duty person, each with a device."""
    extra = [
        org.NewPerson(id="sup", name="督办员", roles=["supervisor"], scope=["d1"]),
        org.NewPerson(id="hl", name="12345平台", roles=["hotline"], scope=["d1"]),
        org.NewPerson(id="st", name="街道值班", roles=["street"], scope=["s1"]),
        org.NewPerson(id="sec2", name="陈书记", roles=["community_secretary"], scope=["c1"]),
        org.NewPerson(id="hl2", name="街道热线", roles=["hotline"], scope=["s1"]),
    ]
    store.write(lambda db: org.add_people(db, extra, Actor.cli()))
    for person in extra:
        tiny.tokens[person.id] = store.write(auth.enroll, person.id, Actor.cli()).token
    return tiny


@pytest.fixture
def api(store, people, hsettings, clock):
    with TestClient(app=create_app(hsettings, store=store, clock=clock)) as c:
        yield c


def reachable(store, *person_ids):
    """Give people a channel (never delivered to here): the outbox queues only for people with
    somewhere to deliver to (the inbox of every person is issue 17's other part)."""
    for person_id in person_ids:
        set_channels(store, person_id, [f"json://127.0.0.1:9/{person_id}"])


def order(order_no="BJ2026112000001", **fields):
    return {
        "order_no": order_no,
        "type": "投诉",
        "caller_name": "刘芳",
        "caller_phone": "13912345678",
        "address": "出头社区3号楼",
        "description": "楼道灯坏了一周",
        "unit_id": "c1",
        "received_at": "2026-11-20T15:50:00+08:00",
        **fields,
    }


def post_order(api, people, who="hl", **fields):
    return api.post(
        "/api/v1/hotline/orders", json=order(**fields), headers=bearer(people.tokens[who])
    )


def act(api, people, case_id, who, action, **extra):
    r = api.post(
        f"/api/v1/whistle/cases/{case_id}/actions",
        json={"action": action, **extra},
        headers=bearer(people.tokens[who]),
    )
    assert r.status_code == 200, r.text
    return r.json()


def callback(api, people, case_id, who, **verdict):
    return api.post(
        f"/api/v1/hotline/orders/{case_id}/callback",
        json=verdict,
        headers=bearer(people.tokens[who]),
    )


# -- orders in ------------------------------------------------------------------------------------


def test_an_order_is_a_hotline_case_with_working_time_deadlines(api, people, store):
    r = post_order(api, people)
    assert r.status_code == 201, r.text
    case = r.json()
    assert (case["source"], case["level"], case["unit_id"], case["state"]) == (
        "hotline",
        "community",
        "c1",
        "raised",
    )
    assert case["category"] == "投诉"
    o = case["order"]
    assert (o["order_no"], o["type"], o["dispatched_level"], o["dispatched_unit_id"]) == (
        "BJ2026112000001",
        "complaint",
        "community",
        "c1",
    )
    # the platform's credential is not the caller's reader: masked
    assert (o["caller_name"], o["caller_phone"]) == ("刘*", "139****5678")
    # Friday 16:00 + 2 working hours: 1.5 h on Friday, 0.5 h on Monday -> Monday 09:30;
    # 3 working days after Friday: Monday, Tuesday, Wednesday -> Wednesday 17:30.
    assert case["deadlines"]["accept"] == iso_ms(at(2026, 11, 23, 9, 30))
    assert case["deadlines"]["resolve"] == iso_ms(at(2026, 11, 25, 17, 30))
    # the community secretary (the holder) reads the caller in full; a supervisor does not
    for who, full in (("sec", True), ("admin", True), ("sup", False), ("m1", None)):
        got = api.get(f"/api/v1/whistle/cases/{case['id']}", headers=bearer(people.tokens[who]))
        if full is None:  # a member of a grid does not see a community's order
            assert got.status_code == 404
            continue
        assert got.status_code == 200, got.text
        assert (got.json()["order"]["caller_phone"] == "13912345678") is full, who
    # a case raised by a phone or the web keeps source "whistle" and no order
    w = api.post(
        "/api/v1/whistle/cases",
        json={"category": "漏水", "grid_id": "g1"},
        headers=bearer(people.tokens["m1"]),
    )
    assert (w.json()["source"], w.json()["order"]) == ("whistle", None)


def test_the_same_order_number_is_the_same_case(api, people, store):
    first = post_order(api, people)
    again = post_order(api, people, description="resent, another text", unit_id="s1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["description"] == "楼道灯坏了一周"  # the first one's case, unchanged
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM hotline_orders").fetchone()[0]) == 1
    )


@pytest.mark.parametrize(
    ("who", "fields", "status", "code"),
    [
        ("m1", {}, 403, "forbidden"),
        ("sec", {}, 403, "forbidden"),
        ("hl", {"unit_id": "b1"}, 400, "invalid_unit"),
        ("hl2", {"unit_id": "dept1"}, 403, "out_of_scope"),
        ("hl", {"unit_id": "nowhere"}, 400, "invalid_unit"),
        ("hl", {"type": "抱怨"}, 400, "validation_error"),
        ("hl", {"order_no": "x" * 65}, 400, "validation_error"),
        ("hl", {"received_at": "yesterday"}, 400, "validation_error"),
        ("hl", {"caller_phone": "1" * 40}, 400, "validation_error"),
    ],
)
def test_bad_orders_are_refused_with_a_code(api, people, store, who, fields, status, code):
    r = post_order(api, people, who=who, **fields)
    assert (r.status_code, r.json()["code"]) == (status, code), r.text
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM hotline_orders").fetchone()[0]) == 0
    )


def test_every_new_order_reaches_the_supervisors_and_the_unit(api, people, store):
    reachable(store, "sec", "sec2", "sup", "hl", "m1")
    post_order(api, people)
    post_order(api, people)  # the same order: no second notice
    rows = store.read(
        lambda db: db.execute(
            "SELECT person_id, title FROM outbox WHERE kind = 'hotline_new' ORDER BY person_id"
        ).fetchall()
    )
    assert [r[0] for r in rows] == ["sec", "sec2", "sup"]
    assert all(r[1].startswith("【12345】新工单（投诉）") for r in rows)
    listed = api.get("/api/v1/hotline/orders", headers=bearer(people.tokens["sup"])).json()
    assert [c["order"]["order_no"] for c in listed["items"]] == ["BJ2026112000001"]


def test_open_orders_come_by_deadline(api, people, clock):
    post_order(api, people, order_no="A1")
    clock.advance(minutes=10)
    post_order(api, people, order_no="A2")
    clock.advance(minutes=10)
    b = post_order(api, people, order_no="A3").json()
    act(api, people, b["id"], "sec", "accept")  # A3 contacted: its next deadline is resolution
    listed = api.get("/api/v1/hotline/orders", headers=bearer(people.tokens["sup"])).json()
    assert [c["order"]["order_no"] for c in listed["items"]] == ["A1", "A2", "A3"]


# -- import -----------------------------------------------------------------------------------


def _write_orders(path, rows):
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "序号",
                "工单编号",
                "类型",
                "来电人",
                "联系电话",
                "地址",
                "诉求内容",
                "承办单位",
                "受理时间",
            ]
        )
        for i, row in enumerate(rows, start=1):
            w.writerow([i, *row])


def _cli(*args, db):
    return subprocess.run(
        [sys.executable, "-m", "gridsync", *args, "--db", db],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_order_imported_twice_is_one_order(tmp_path, store, tiny, db_path):
    path = tmp_path / "orders.csv"
    _write_orders(
        path,
        [
            [
                "BJ001",
                "求助",
                "刘芳",
                "13912345678",
                "3号楼",
                "独居老人需要帮助",
                "出头社区",
                "2026-11-20 09:30",
            ],
            ["BJ002", "suggestion", "", "", "", "增设座椅", "s1", "2026-11-20T10:00:00+08:00"],
        ],
    )
    first = _cli("import", "orders", str(path), "--json", db=db_path)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) | {"ignored_columns": []} == {
        "source": "orders.csv",
        "rows": 2,
        "new": 2,
        "existing": 0,
        "ignored_columns": [],
        "errors": [],
        "dry_run": False,
        "written": True,
    }
    second = _cli("import", "orders", str(path), "--json", db=db_path)
    assert second.returncode == 0, second.stderr
    assert (json.loads(second.stdout)["new"], json.loads(second.stdout)["existing"]) == (0, 2)
    rows = store.read(
        lambda db: db.execute(
            "SELECT o.order_no, o.type, o.dispatched_unit, o.received_ms, c.source FROM "
            "hotline_orders o JOIN whistle_cases c ON c.id = o.case_id ORDER BY o.order_no"
        ).fetchall()
    )
    assert rows == [
        ("BJ001", "help", "c1", at(2026, 11, 20, 9, 30), "hotline"),  # by name; local time
        ("BJ002", "suggestion", "s1", at(2026, 11, 20, 10, 0), "hotline"),
    ]


def test_an_import_with_a_bad_row_writes_nothing(tmp_path, store, tiny, db_path):
    path = tmp_path / "orders.csv"
    _write_orders(
        path,
        [
            ["BJ001", "求助", "刘芳", "13912345678", "3号楼", "需要帮助", "c1", "2026-11-20 09:30"],
            ["BJ002", "抱怨", "", "", "", "", "c1", "2026-11-20 10:00"],
            ["BJ001", "求助", "", "", "", "", "第一网格", "2026-11-20 10:00"],
            ["BJ004", "建议", "", "", "", "", "b1", ""],
        ],
    )
    r = _cli("import", "orders", str(path), db=db_path)
    assert r.returncode == 1
    assert "第3行 类型" in r.stderr
    assert "第4行 工单编号" in r.stderr and "与第2行重复" in r.stderr
    assert "第5行 受理时间: 受理时间不能为空" in r.stderr
    assert "nothing was written" in r.stderr
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM whistle_cases").fetchone()[0]) == 0
    )


def test_import_reads_an_xlsx_with_date_cells(tmp_path, store, tiny, db_path):
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.append(["工单编号", "类型", "承办单位", "受理时间"])
    ws.append(["BJ9", "咨询", "城管局", datetime(2026, 11, 20, 9, 0)])
    wb.save(tmp_path / "o.xlsx")
    r = _cli("import", "orders", str(tmp_path / "o.xlsx"), "--json", db=db_path)
    assert r.returncode == 0, r.stdout + r.stderr
    row = store.read(
        lambda db: db.execute(
            "SELECT o.dispatched_level, c.level, c.department_id, o.received_ms FROM "
            "hotline_orders o JOIN whistle_cases c ON c.id = o.case_id"
        ).fetchone()
    )
    assert row == ("department", "department", "dept1", at(2026, 11, 20, 9, 0))


# -- escalation of a missed first contact -------------------------------------------------------


def test_a_missed_first_contact_escalates_through_the_sweep(api, people, store, hsettings, clock):
    reachable(store, "st", "admin", "sup", "sec")
    case = post_order(api, people).json()
    # Monday 09:29: the contact deadline (09:30) has not passed (the weekend does not count)
    clock.set(datetime(2026, 11, 23, 9, 29, tzinfo=CN))
    assert (
        run_once(store, hsettings, clock, dispatch=False, with_digests=False).deadlines["escalated"]
        == 0
    )
    clock.set(datetime(2026, 11, 23, 9, 31, tzinfo=CN))
    report = run_once(store, hsettings, clock, dispatch=False, with_digests=False)
    assert report.deadlines["escalated"] == 1
    got = api.get(f"/api/v1/whistle/cases/{case['id']}", headers=bearer(people.tokens["admin"]))
    body = got.json()
    assert (body["level"], body["unit_id"], body["state"]) == ("street", "s1", "raised")
    assert body["history"][-1]["action"] == "escalate" and body["history"][-1]["by"] is None
    assert body["history"][-1]["note"] == "missed:accept"
    # the street's new stay has its own working-time deadlines: 2 h from 09:31 -> 11:31
    assert body["deadlines"]["accept"] == iso_ms(at(2026, 11, 23, 11, 31))
    told = store.read(
        lambda db: db.execute(
            "SELECT DISTINCT person_id FROM outbox WHERE kind = 'whistle_escalated' "
            "ORDER BY person_id"
        ).fetchall()
    )
    assert [r[0] for r in told] == ["admin", "st", "sup"]  # the street, the district, 督办
    # a second sweep escalates nothing more
    again = run_once(store, hsettings, clock, dispatch=False, with_digests=False)
    assert again.deadlines["escalated"] == 0


# -- callbacks and the three rates ------------------------------------------------------------


def _resolved_order(api, people, order_no, handler="sec"):
    case = post_order(api, people, order_no=order_no).json()
    act(api, people, case["id"], handler, "accept")
    act(api, people, case["id"], handler, "resolve", note="修好了")
    return case["id"]


def test_the_handler_may_not_call_back(api, people):
    cid = _resolved_order(api, people, "C1")
    r = callback(
        api, people, cid, "sec", reached=True, contacted=True, resolved=True, satisfied=True
    )
    assert (r.status_code, r.json()["code"]) == (403, "callback_by_handler")
    ok = callback(
        api, people, cid, "sec2", reached=True, contacted=True, resolved=True, satisfied=False
    )
    assert ok.status_code == 200, ok.text
    cb = ok.json()["order"]["callback"]
    assert (cb["by"], cb["reached"], cb["resolved"], cb["satisfied"]) == ("sec2", True, True, False)
    assert ok.json()["history"][-1]["action"] == "callback"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"reached": True, "resolved": True, "satisfied": True}, "verdict_missing"),
        ({"reached": False, "satisfied": True}, "verdict_without_caller"),
        (
            {"reached": True, "contacted": True, "resolved": True, "satisfied": True, "x": 1},
            "validation_error",
        ),
    ],
)
def test_a_callback_is_the_callers_whole_verdict(api, people, body, code):
    cid = _resolved_order(api, people, "C1")
    r = callback(api, people, cid, "admin", **body)
    assert (r.status_code, r.json()["code"]) == (400, code)


def test_callbacks_only_after_resolution_and_only_of_orders(api, people):
    case = post_order(api, people, order_no="C9").json()
    r = callback(api, people, case["id"], "admin", reached=False)
    assert (r.status_code, r.json()["code"]) == (409, "not_resolved")
    w = api.post(
        "/api/v1/whistle/cases",
        json={"category": "漏水", "grid_id": "g1"},
        headers=bearer(people.tokens["m1"]),
    ).json()
    r = callback(api, people, w["id"], "admin", reached=False)
    assert (r.status_code, r.json()["code"]) == (409, "not_an_order")
    r = callback(api, people, case["id"], "m1", reached=False)
    assert r.status_code == 403


def test_rates_come_only_from_callbacks(api, people):
    good = _resolved_order(api, people, "R1")
    bad = _resolved_order(api, people, "R2")
    unreached = _resolved_order(api, people, "R3")
    _resolved_order(api, people, "R4")  # never called back
    # staff closing with a score of 5 does not rate anything
    act(api, people, bad, "sec2", "close", satisfaction=5)
    assert (
        callback(
            api, people, good, "admin", reached=True, contacted=True, resolved=True, satisfied=True
        ).status_code
        == 200
    )
    assert (
        callback(
            api, people, bad, "admin", reached=True, contacted=True, resolved=False, satisfied=False
        ).status_code
        == 200
    )
    assert callback(api, people, unreached, "admin", reached=False).status_code == 200
    # the latest callback counts: a first unreached call of R1 before would not matter
    report = api.get(
        "/api/v1/hotline/report", params={"scope": "c1"}, headers=bearer(people.tokens["sup"])
    )
    assert report.status_code == 200, report.text
    rows = {(r["unit_id"], r["type"]): r for r in report.json()["rows"]}
    total = rows[(None, "all")]
    assert (total["orders"], total["rated"], total["unrated"]) == (4, 2, 2)
    assert (total["response_rate"], total["resolution_rate"], total["satisfaction_rate"]) == (
        1.0,
        0.5,
        0.5,
    )
    assert rows[("c1", "complaint")]["orders"] == 4
    assert rows[("c1", "all")]["satisfaction_rate"] == 0.5
    # nothing rated yet is null, not 100%
    empty = api.get(
        "/api/v1/hotline/report",
        params={"from": "2027-01-01T00:00:00+08:00"},
        headers=bearer(people.tokens["admin"]),
    ).json()
    assert empty["rows"] == [
        {
            "unit_id": None,
            "unit_name": "",
            "type": "all",
            "orders": 0,
            "rated": 0,
            "unrated": 0,
            "contacted": 0,
            "resolved": 0,
            "satisfied": 0,
            "response_rate": None,
            "resolution_rate": None,
            "satisfaction_rate": None,
        }
    ]
    denied = api.get("/api/v1/hotline/report", headers=bearer(people.tokens["m1"]))
    assert denied.status_code == 403
    outside = api.get(
        "/api/v1/hotline/report", params={"scope": "s1"}, headers=bearer(people.tokens["sec"])
    )
    assert outside.status_code == 404


def test_report_and_export_from_the_cli(api, people, tmp_path, db_path):
    cid = _resolved_order(api, people, "E1")
    callback(api, people, cid, "admin", reached=True, contacted=True, resolved=True, satisfied=True)
    r = _cli("report", "hotline", "--json", "-o", str(tmp_path / "r.xlsx"), db=db_path)
    assert r.returncode == 0, r.stderr
    total = json.loads(r.stdout)["rows"][-1]
    assert (total["rated"], total["satisfaction_rate"]) == (1, 1.0)
    from openpyxl import load_workbook

    book = load_workbook(tmp_path / "r.xlsx")
    ws = book.active
    assert [c.value for c in ws[1]][:3] == ["单位", "类型", "工单"]
    assert ws.cell(row=ws.max_row, column=8).value == 1.0
    book.close()
    out = tmp_path / "orders.csv"
    e = _cli("export", "orders", "--format", "csv", "-o", str(out), db=db_path)
    assert e.returncode == 0, e.stderr
    with out.open(encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["工单编号", "类型", "受理时间"]
    assert rows[1][0] == "E1" and rows[1][1] == "投诉"
    assert rows[1][7] == "139****5678"  # masked without --show-phones
    assert "响应:是 解决:是 满意:是" in rows[1]
    assert "accept 王书记" in rows[1][-1] and "resolve 王书记：修好了" in rows[1][-1]


# -- supervision ------------------------------------------------------------------------------


def test_a_supervised_case_alerts_the_unit_at_once(api, people, store, hsettings, clock):
    case = post_order(api, people, order_no="S1").json()
    with Receiver() as http:
        set_channels(store, "sec", [http.url("sec")])
        due = (FRIDAY_4PM + timedelta(days=1)).isoformat()
        denied = api.post(
            f"/api/v1/whistle/cases/{case['id']}/supervise",
            json={"note": "尽快处理", "due_at": due},
            headers=bearer(people.tokens["sec"]),
        )
        assert denied.status_code == 403
        r = api.post(
            f"/api/v1/whistle/cases/{case['id']}/supervise",
            json={"note": "居民多次来电，请今日办结", "due_at": due},
            headers=bearer(people.tokens["sup"]),
        )
        assert r.status_code == 200, r.text
        sup = r.json()["supervised"]
        assert (sup["by"], sup["note"], sup["met"]) == ("sup", "居民多次来电，请今日办结", None)
        # quiet hours do not hold an alert: delivered at 23:00
        clock.set(datetime(2026, 11, 20, 23, 0, tzinfo=CN))
        Dispatcher(store, hsettings, clock).run_once()
        supervised = [m for m in http.received if m["title"].startswith("【督办】")]
        assert len(supervised) == 1, http.received
        assert "居民多次来电，请今日办结" in supervised[0]["message"]
        assert "督办员督办" in supervised[0]["message"]
    # the case shows it everywhere: the case detail, the list, the phones' pull
    shown = api.get(f"/api/v1/whistle/cases/{case['id']}", headers=bearer(people.tokens["sec"]))
    assert shown.json()["supervised"]["due_at"] == iso_ms(at(2026, 11, 21, 16, 0))
    listed = api.get("/api/v1/whistle/cases", headers=bearer(people.tokens["sec"])).json()
    assert listed["items"][0]["supervised"]["by"] == "sup"
    # resolved after the new due time: missed
    clock.set(datetime(2026, 11, 23, 10, 0, tzinfo=CN))
    act(api, people, case["id"], "sec", "accept")
    act(api, people, case["id"], "sec", "resolve")
    report = api.get("/api/v1/whistle/supervised", headers=bearer(people.tokens["sup"])).json()
    assert (report["supervised"], report["met"], report["missed"], report["pending"]) == (
        1,
        0,
        1,
        0,
    )
    assert report["rows"][0]["order_no"] == "S1"
    assert report["rows"][0]["met"] is False


def test_supervision_met_and_refusals(api, people, clock, db_path):
    w = api.post(
        "/api/v1/whistle/cases",
        json={"category": "漏水", "grid_id": "g1"},
        headers=bearer(people.tokens["m1"]),
    ).json()
    due = (FRIDAY_4PM + timedelta(hours=2)).isoformat()
    past = (FRIDAY_4PM - timedelta(hours=2)).isoformat()

    def supervise(who, **body):
        return api.post(
            f"/api/v1/whistle/cases/{w['id']}/supervise",
            json=body,
            headers=bearer(people.tokens[who]),
        )

    r = supervise("sup", note="x", due_at=past)
    assert (r.status_code, r.json()["code"]) == (400, "due_in_past")
    assert supervise("sup", note="", due_at=due).status_code == 400
    assert supervise("sup", note="请办结", due_at=due).status_code == 200
    clock.advance(minutes=30)
    act(api, people, w["id"], "m1", "accept")
    act(api, people, w["id"], "m1", "resolve")
    assert (
        api.get(f"/api/v1/whistle/cases/{w['id']}", headers=bearer(people.tokens["m1"])).json()[
            "supervised"
        ]["met"]
        is True
    )
    r = supervise("sup", note="again", due_at=due)
    assert (r.status_code, r.json()["code"]) == (409, "case_not_open")
    r = supervise("admin", note="x", due_at=due)
    assert r.status_code == 409
    cli_report = _cli("report", "supervised", "--json", db=db_path)
    assert cli_report.returncode == 0, cli_report.stderr
    assert json.loads(cli_report.stdout)["met"] == 1


def test_the_street_forwards_an_order_to_a_grid_with_the_same_deadlines(api, people, store):
    case = post_order(api, people, order_no="F1", unit_id="s1").json()
    assert (case["level"], case["order"]["dispatched_level"]) == ("street", "street")

    def forward(who, **body):
        return api.post(
            f"/api/v1/hotline/orders/{case['id']}/forward",
            json=body,
            headers=bearer(people.tokens[who]),
        )

    assert forward("m1", unit_id="g1").json()["code"] == "case_not_found"  # not in its scope
    for bad in ("b1", "dept1", "s1", "nowhere"):
        r = forward("st", unit_id=bad)
        assert (r.status_code, r.json()["code"]) == (400, "invalid_unit"), bad
    r = forward("st", unit_id="g1", note="请网格员上门")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["level"], body["unit_id"], body["grid_id"], body["state"]) == (
        "grid",
        "g1",
        "g1",
        "raised",
    )
    assert body["deadlines"]["accept"] == case["deadlines"]["accept"]  # no time bought
    assert body["deadlines"]["resolve"] == case["deadlines"]["resolve"]
    assert body["order"]["dispatched_unit_id"] == "s1"
    assert body["history"][-1]["action"] == "forward"
    # the grid's member now answers for it: reads the caller, accepts and resolves it
    mine = api.get(f"/api/v1/whistle/cases/{case['id']}", headers=bearer(people.tokens["m1"]))
    assert mine.json()["order"]["caller_phone"] == "13912345678"
    act(api, people, case["id"], "m1", "accept")
    r = forward("st", unit_id="g2")  # nothing lies below a grid
    assert (r.status_code, r.json()["code"]) == (400, "invalid_unit")
    act(api, people, case["id"], "m1", "resolve")
    # the street handed it down: it handled the order, so it may not call back
    r = callback(api, people, case["id"], "st", reached=False)
    assert (r.status_code, r.json()["code"]) == (403, "callback_by_handler")
    assert callback(api, people, case["id"], "sec", reached=False).status_code == 200


def test_phones_pull_orders_and_their_supervision(api, people):
    sec = Phone(api, people.tokens["sec"], people.devices["sec"])
    sec.pull_all()
    case = post_order(api, people, order_no="P1").json()
    r = api.post(
        f"/api/v1/whistle/cases/{case['id']}/supervise",
        json={"note": "今日办结", "due_at": (FRIDAY_4PM + timedelta(hours=3)).isoformat()},
        headers=bearer(people.tokens["sup"]),
    )
    assert r.status_code == 200
    pulled = [c for c in sec.pull_all() if c.get("type") == "whistle"]
    assert [c["id"] for c in pulled] == [case["id"]]
    data = pulled[0]["data"]
    assert (data["source"], data["order"]["order_no"]) == ("hotline", "P1")
    assert data["order"]["caller_phone"] == "13912345678"  # the holder's secretary
    assert data["supervised"]["note"] == "今日办结"


def test_an_accepted_order_waits_on_its_resolution_not_an_on_site_step(tmp_path):
    """An order has no on-site step: the deadline the CLI, the console and the board show for an
    accepted order is its resolution (``whistle.next_deadline``), a whistle case's its arrival."""
    import subprocess
    import sys

    import msgspec

    from gridsync import whistle
    from gridsync.models import WhistleCase

    db = str(tmp_path / "demo.db")
    subprocess.run(
        [sys.executable, "-m", "gridsync", "demo", "--db", db], check=True, capture_output=True
    )
    out = subprocess.run(
        [sys.executable, "-m", "gridsync", "cases", "--db", db, "--json"],
        check=True,
        capture_output=True,
    ).stdout
    cases = msgspec.json.decode(out, type=dict)["items"]
    accepted = [msgspec.convert(c, WhistleCase) for c in cases if c["state"] == "accepted"]
    orders = [c for c in accepted if c.source == "hotline"]
    assert orders, "the demo has accepted orders"
    for case in orders:
        assert whistle.next_deadline(case) == ("resolve", case.deadlines.resolve)
    # the same case as a whistle case waits on its arrival (the demo holds no accepted one)
    as_whistle = msgspec.structs.replace(orders[0], source="whistle")
    assert whistle.next_deadline(as_whistle) == ("arrive", as_whistle.deadlines.arrive)


@pytest.mark.parametrize("calendar", ["workdays = []", "hours = []"])
def test_a_calendar_without_working_time_is_refused_when_settings_load(tmp_path, calendar):
    """Every deadline of an order counts in working time: a calendar without any is a one-line
    configuration error at start, not a 500 on the first order."""
    from gridsync.config import ConfigError, load_settings

    path = tmp_path / "gridsync.toml"
    path.write_text(f"[calendar]\n{calendar}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="calendar"):
        load_settings(str(path))

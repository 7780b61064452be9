"""Recorded checks (抽检, issue 14): drawn only from above the assessed unit with a server seed
that `coverage sample --seed` reproduces; the checker's outcomes make the verified rate, which
the roll-up (API, CLI, exports) shows beside the contact rate. On the hand-built district of
``tests/coverage_community.py`` (street1 over s1 > c1 (g1, g2), c2 (g3); sec1 secretary of c1;
bs1 branch secretary of b1; members m1..m5)."""

from __future__ import annotations

import json
import sqlite3

import pytest
from click.testing import CliRunner

from gridsync import auth, exports, org
from gridsync.audit import Actor
from gridsync.cli import cli
from gridsync.models import MAX_CHECK_HOUSEHOLDS
from tests.conftest import bearer
from tests.coverage_community import DAY_MS, NOW_MS

CHECKS = "/api/v1/coverage/checks"


def draw(client, comm, person: str, scope: str, n: int = 3):
    return client.post(CHECKS, json={"scope": scope, "n": n}, headers=bearer(comm.tokens[person]))


def put_result(client, comm, person, check_id, household_id, outcome, note=""):
    return client.put(
        f"{CHECKS}/{check_id}/results/{household_id}",
        json={"outcome": outcome, "note": note},
        headers=bearer(comm.tokens[person]),
    )


@pytest.mark.parametrize(
    ("person", "scope", "status", "code"),
    [
        # the assessed unit's own people
        ("sec1", "c1", 403, "check_forbidden"),  # the community's own secretary
        ("bs1", "b1", 403, "check_forbidden"),  # the branch's own secretary
        ("bs1", "g1", 403, "check_forbidden"),  # ... and the branch's grid
        ("m1", "g1", 403, "check_forbidden"),  # a member of the grid
        ("street1", "s1", 403, "check_forbidden"),  # the street itself: only an admin
        ("sec1", "g3", 403, "out_of_scope"),  # another community's grid
        ("sec1", "nowhere", 404, "not_found"),
        # a role above the unit
        ("street1", "c1", 201, None),
        ("street1", "g3", 201, None),
        ("sec1", "g1", 201, None),
        ("sec1", "b2", 201, None),
        ("admin", "d1", 201, None),
        ("admin", "c2", 201, None),
    ],
)
def test_who_may_draw(cov_client, comm, person, scope, status, code):
    r = draw(cov_client, comm, person, scope)
    assert r.status_code == status, r.text
    if code is not None:
        assert r.json()["code"] == code
    else:
        body = r.json()
        assert body["scope"] == scope and body["drawn_by"] == person
        assert body["verified_rate"] is None
        assert all(h["outcome"] is None for h in body["households"])


def test_a_street_worker_who_belongs_to_the_community_may_not_check_it(store, cov_client, comm):
    """Above the community by role, but one of its own people (their party branch is b1)."""
    store.write(
        org.add_people,
        [
            org.NewPerson(
                id="street2",
                name="兼职干部",
                roles=["street", "member"],
                scope=["s1"],
                branch_id="b1",
            )
        ],
        Actor.cli(),
    )
    comm.tokens["street2"] = store.write(auth.enroll, "street2", Actor.cli()).token
    r = draw(cov_client, comm, "street2", "c1")
    assert r.status_code == 403 and r.json()["code"] == "check_forbidden"
    assert draw(cov_client, comm, "street2", "c2").status_code == 201  # not theirs


def test_the_server_seed_reproduces_the_draw_and_last_visits_are_kept(cov_client, comm):
    r = draw(cov_client, comm, "street1", "c1", n=5)
    check = r.json()
    assert len(check["seed"]) == 16 and check["n"] == 5
    ids = [h["household_id"] for h in check["households"]]
    assert len(set(ids)) == 5
    sample = cov_client.get(
        "/api/v1/coverage/sample",
        params={"scope": "c1", "n": 5, "seed": check["seed"]},
        headers=bearer(comm.tokens["admin"]),
    ).json()
    assert [i["household"]["id"] for i in sample["items"]] == ids
    for h, item in zip(check["households"], sample["items"]):
        newest = item["last_visits"][0] if item["last_visits"] else None
        if newest is None:
            assert h["last_visit"] is None
        else:
            assert h["last_visit"] == {
                k: newest[k] for k in ("id", "at", "member_id", "channel", "kinds")
            }
    # two draws, two seeds
    assert draw(cov_client, comm, "street1", "c1", n=5).json()["seed"] != check["seed"]


def test_outcomes_make_the_verified_rate_and_only_checkers_read_or_record(cov_client, comm):
    check = draw(cov_client, comm, "street1", "c1", n=4).json()
    cid = check["id"]
    h = [x["household_id"] for x in check["households"]]
    # the assessed may neither record nor read it (reading would tell which to prepare)
    assert put_result(cov_client, comm, "sec1", cid, h[0], "confirmed").json()["code"] == (
        "check_forbidden"
    )
    r = cov_client.get(f"{CHECKS}/{cid}", headers=bearer(comm.tokens["sec1"]))
    assert r.status_code == 403 and r.json()["code"] == "check_forbidden"

    r = put_result(cov_client, comm, "street1", cid, h[0], "unreachable", "无人应答")
    assert r.status_code == 200 and r.json()["verified_rate"] is None  # nothing reached
    assert (
        put_result(cov_client, comm, "street1", cid, h[1], "confirmed").json()["verified_rate"]
        == 1.0
    )
    r = put_result(cov_client, comm, "street1", cid, h[2], "denied", "住户说没人来过")
    assert r.json()["verified_rate"] == 0.5
    r = put_result(cov_client, comm, "street1", cid, h[3], "denied")
    assert r.json()["verified_rate"] == 0.3333
    r = put_result(cov_client, comm, "street1", cid, h[3], "confirmed")  # corrected
    assert r.json()["verified_rate"] == 0.6667

    shown = cov_client.get(f"{CHECKS}/{cid}", headers=bearer(comm.tokens["street1"])).json()
    assert [(x["household_id"], x["outcome"], x["note"]) for x in shown["households"]] == [
        (h[0], "unreachable", "无人应答"),
        (h[1], "confirmed", ""),
        (h[2], "denied", "住户说没人来过"),
        (h[3], "confirmed", ""),
    ]
    assert shown["verified_rate"] == 0.6667
    assert set(shown) == {
        "id",
        "scope",
        "n",
        "seed",
        "drawn_by",
        "drawn_at",
        "households",
        "verified_rate",
    }
    # an admin may read it too; another community's secretary is outside
    assert (
        cov_client.get(f"{CHECKS}/{cid}", headers=bearer(comm.tokens["admin"])).status_code == 200
    )

    audit = (
        sqlite3.connect(cov_client.app.state.store.path)
        .execute(
            "SELECT action, person_id, detail FROM audit_log WHERE target = ? ORDER BY id", [cid]
        )
        .fetchall()
    )
    actions = [a for a, *_ in audit]
    assert actions[0] == "coverage.check.draw" and actions.count("coverage.check.result") == 5
    assert json.loads(audit[0][2])["seed"] == check["seed"]


def test_bounds_and_unknowns(cov_client, comm):
    h = bearer(comm.tokens["street1"])
    for body in (
        {"scope": "c1", "n": 0},
        {"scope": "c1", "n": MAX_CHECK_HOUSEHOLDS + 1},
        {"scope": "c 1", "n": 3},
        {"scope": "c1", "n": 3, "extra": 1},
        {"n": 3},
    ):
        r = cov_client.post(CHECKS, json=body, headers=h)
        assert r.status_code == 400, (body, r.text)
        assert r.json()["code"] == "validation_error"
    cid = draw(cov_client, comm, "street1", "c1", n=2).json()["id"]
    hid = cov_client.get(f"{CHECKS}/{cid}", headers=h).json()["households"][0]["household_id"]
    for body in ({"outcome": "maybe"}, {"outcome": "confirmed", "note": "x" * 501}, {}):
        r = cov_client.put(f"{CHECKS}/{cid}/results/{hid}", json=body, headers=h)
        assert r.status_code == 400, (body, r.text)
    assert put_result(cov_client, comm, "street1", cid, "h14", "confirmed").status_code == 404
    assert put_result(cov_client, comm, "street1", "nope", hid, "confirmed").status_code == 404
    assert cov_client.get(f"{CHECKS}/nope", headers=h).status_code == 404


def test_a_unit_with_no_household_cannot_be_checked(store, cov_client, comm):
    store.write(
        org.add_units,
        [org.OrgUnit(id="c3", kind="community", name="空社区", parent_id="s1")],
    )
    r = draw(cov_client, comm, "street1", "c3")
    assert r.status_code == 400 and r.json()["code"] == "check_empty"


def test_the_rollup_shows_the_latest_verified_rate_beside_the_contact_rate(
    store, cov_settings, cov_client, comm
):
    h = bearer(comm.tokens["street1"])

    def rows(**params):
        report = cov_client.get("/api/v1/coverage", params={"scope": "s1", **params}, headers=h)
        return {r["unit_id"]: r for r in report.json()["rows"]}

    assert rows()["c1"]["verified_rate"] is None
    first = draw(cov_client, comm, "street1", "c1", n=2).json()
    a, b = (x["household_id"] for x in first["households"])
    put_result(cov_client, comm, "street1", first["id"], a, "confirmed")
    put_result(cov_client, comm, "street1", first["id"], b, "denied")
    now = rows()
    assert now["c1"]["verified_rate"] == 0.5 and now["c1"]["verified_at"] == first["drawn_at"]
    assert now["c1"]["contact_rate"] is not None
    assert now["g1"]["verified_rate"] is None and now["c2"]["verified_rate"] is None
    assert now["s1"]["verified_rate"] is None  # a check is of its own unit, not summed upwards
    # a newer check with nothing reached yet leaves the latest verified one in place
    comm.clock.advance(minutes=60)
    second = draw(cov_client, comm, "street1", "c1", n=1).json()
    assert rows()["c1"]["verified_rate"] == 0.5
    put_result(
        cov_client,
        comm,
        "street1",
        second["id"],
        second["households"][0]["household_id"],
        "confirmed",
    )
    assert rows()["c1"]["verified_rate"] == 1.0  # now the newer one has a rate
    # a report as of before the first draw shows none
    before = "2026-11-01T00:00:00+00:00"
    assert rows(at=before)["c1"]["verified_rate"] is None

    # the export carries it under its Chinese header, beside the contact rate
    from gridsync.cli.coverage import OPERATOR

    data = store.read(exports.export_data, cov_settings, OPERATOR, "s1", now_ms=NOW_MS + 2 * DAY_MS)
    c1 = next(r for r in data.rows if r.unit_id == "c1")
    assert c1.verified_rate is not None
    keys = [k for k, *_ in exports.ROW_COLUMNS]
    assert keys.index("verified_rate") == keys.index("contact_rate") + 1
    headers = [zh for _, zh, *_ in exports.ROW_COLUMNS]
    assert "最近抽检核实率" in headers


def test_cli_draw_record_show_json(store, comm, db_path):
    runner = CliRunner()

    def run(*args):
        r = runner.invoke(cli, [*args, "--db", db_path, "--json"])
        assert r.exit_code == 0, r.output
        return json.loads(r.output)

    check = run("coverage", "check", "draw", "--scope", "c1", "--n", "3")
    assert check["drawn_by"] is None and len(check["households"]) == 3
    hid = check["households"][0]["household_id"]
    after = run("coverage", "check", "record", check["id"], hid, "confirmed", "--note", "属实")
    assert after["verified_rate"] == 1.0 and after["households"][0]["note"] == "属实"
    assert run("coverage", "check", "show", check["id"]) == after
    sample = run("coverage", "sample", "--scope", "c1", "--n", "3", "--seed", check["seed"])
    assert [i["household"]["id"] for i in sample["items"]] == [
        x["household_id"] for x in check["households"]
    ]
    rollup = run("coverage", "--scope", "c1", "--level", "community", "--now", "2030-01-01")
    assert rollup["rows"][0]["verified_rate"] == 1.0
    # a bad outcome is a usage error, an unknown check a one-line error
    r = runner.invoke(
        cli, ["coverage", "check", "record", check["id"], hid, "maybe", "--db", db_path]
    )
    assert r.exit_code == 2
    r = runner.invoke(cli, ["coverage", "check", "show", "nope", "--db", db_path])
    assert r.exit_code == 1 and "not_found" in r.output

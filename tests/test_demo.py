"""gridsync demo: the community's published figures, its realistic gaps, determinism."""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import date

import pytest
from click.testing import CliRunner

from gridsync import auth, demo
from gridsync.cli import cli
from gridsync.clock import parse_ms
from gridsync.db import Store

AS_OF = "2026-11-23"
END_MS = parse_ms("2026-11-23T00:00:00+08:00")
DAY_MS = 86_400_000
DOMAIN_TABLES = (
    "org_units",
    "people",
    "person_scope",
    "households",
    "visits",
    "whistle_cases",
    "whistle_stints",
    "hotline_orders",
    "hotline_callbacks",
    "supervisions",
)


def run_demo(db_path, *args: str):
    result = CliRunner().invoke(cli, ["demo", "--db", str(db_path), "--as-of", AS_OF, *args])
    return result


def dump(db_path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(db_path)
    try:
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in DOMAIN_TABLES
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def community(tmp_path_factory):
    """One community demo, built once through the CLI with --json."""
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    result = run_demo(path, "--json")
    assert result.exit_code == 0, result.output
    return path, json.loads(result.stdout)


def q(path, sql: str, *params) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_community_has_the_published_figures(community):
    path, report = community
    assert report["org_units"] == {
        "district": 1,
        "street": 1,
        "community": 1,
        "grid": 6,
        "branch": 6,
        "department": 2,
    }
    assert report["people"] == {
        "admin": 1,
        "street": 1,
        "community_secretary": 1,
        "branch_secretary": 6,
        "member": 71,
        "department": 2,
        "supervisor": 1,
        "hotline": 1,
        "instructor": 1,  # 党建指导员, one per community
    }
    assert report["households"] == 520
    assert q(path, "SELECT name FROM org_units WHERE kind = 'community'") == [("出头社区",)]
    assert sorted(n for (n,) in q(path, "SELECT name FROM org_units WHERE kind='department'")) == [
        "住建局",
        "城管局",
    ]
    # every branch maps to one grid of the community, and each grid has one branch
    branches = q(
        path,
        "SELECT b.grid_id, g.kind, b.parent_id FROM org_units b "
        "JOIN org_units g ON g.id = b.grid_id WHERE b.kind = 'branch'",
    )
    assert len({g for g, _, _ in branches}) == 6
    assert {(k, p) for _, k, p in branches} == {("grid", "c001")}


def test_members_belong_to_a_branch_and_are_scoped_to_its_grid(community):
    path, _ = community
    rows = q(
        path,
        "SELECT p.id, p.branch_id, b.grid_id, s.unit_id FROM people p "
        "JOIN person_scope s ON s.person_id = p.id "
        "JOIN org_units b ON b.id = p.branch_id "
        "WHERE EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = 'member')",
    )
    assert len(rows) == 71
    assert all(grid == scope for _, _, grid, scope in rows)
    names = [n for (n,) in q(path, "SELECT head_name FROM households")]
    assert all(2 <= len(n) <= 4 for n in names)
    assert len(set(names)) > 300  # plausible variety of names
    phones = [p for (p,) in q(path, "SELECT phone FROM households WHERE phone != ''")]
    assert len(phones) > 450 and all(len(p) == 11 and p.startswith("1") for p in phones)
    addresses = q(path, "SELECT building, unit, room FROM households")
    assert len(set(addresses)) == 520
    assert all(b.endswith("号楼") and u.endswith("单元") and r.isdigit() for b, u, r in addresses)


def test_every_household_has_one_member_of_its_grid_within_limits(community):
    path, report = community
    wrong_grid = q(
        path,
        "SELECT h.id FROM households h JOIN person_scope s "
        "ON s.person_id = h.responsible_member_id WHERE s.unit_id != h.grid_id",
    )
    assert wrong_grid == []
    unassigned = q(
        path,
        "SELECT count(*) FROM households WHERE status = 'active' AND responsible_member_id IS NULL",
    )[0][0]
    assert 1 <= unassigned <= 10 and unassigned == report["unassigned_households"]
    loads = dict(
        q(
            path,
            "SELECT p.id, (SELECT count(*) FROM households h WHERE "
            "h.responsible_member_id = p.id AND h.status = 'active') FROM people p "
            "WHERE EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value='member') "
            "AND p.active = 1",  # the demo's member who moved away holds none
        )
    )
    assert max(loads.values()) <= 12
    under = [m for m, n in loads.items() if n < 5]
    assert 1 <= len(under) <= 3 and len(under) == report["members_under_minimum"]
    tagged = dict(q(path, "SELECT value, count(*) FROM households, json_each(tags) GROUP BY 1"))
    assert set(tagged) == {"elderly_alone", "disabled", "low_income", "renter"}
    assert tagged["renter"] > tagged["disabled"] > 0


def test_visits_cover_sixty_days_and_keep_last_visit(community):
    path, report = community
    visits = q(
        path,
        "SELECT v.id, v.at, v.at_ms, v.grid_id, h.grid_id, v.channel, v.kinds, "
        "v.device_id FROM visits v JOIN households h ON h.id = v.household_id",
    )
    assert len(visits) == report["visits"] > 2000
    for vid, at, at_ms, grid, household_grid, channel, kinds, device in visits:
        assert END_MS - 60 * DAY_MS <= at_ms < END_MS
        assert at.endswith("+08:00") and parse_ms(at) == at_ms
        assert grid == household_grid
        assert channel in {"door", "phone", "wechat"}
        assert set(json.loads(kinds)) <= {
            "policy",
            "opinion",
            "hardship",
            "safety",
            "dispute",
            "environment",
        } and json.loads(kinds)
        u = uuid.UUID(vid)
        assert u.version == 7 and u.int >> 80 == at_ms  # time-ordered id of the visit's time
        assert device is None  # demo people have no devices
    stale = q(
        path,
        "SELECT count(*) FROM households h WHERE h.last_visit_ms IS NOT "
        "(SELECT max(at_ms) FROM visits v WHERE v.voided = 0 AND (v.household_id = h.id "
        "OR v.id IN (SELECT visit_id FROM visit_households WHERE household_id = h.id)))",
    )
    assert stale == [(0,)]
    stale = q(
        path,
        "SELECT count(*) FROM households h WHERE h.last_responsible_visit_ms IS NOT "
        "(SELECT max(at_ms) FROM visits v WHERE v.household_id = h.id "
        "AND v.voided = 0 AND v.member_id = h.responsible_member_id)",
    )
    assert stale == [(0,)]
    assert report["overdue_households"] > 0
    # no household is visited by a member of another grid
    foreign = q(
        path,
        "SELECT count(*) FROM visits v JOIN person_scope s ON "
        "s.person_id = v.member_id WHERE s.unit_id != v.grid_id AND EXISTS (SELECT 1 FROM "
        "people p, json_each(p.roles) r WHERE p.id = v.member_id AND r.value = 'member')",
    )
    assert foreign == [(0,)]


def test_every_row_has_its_own_change_seq(community):
    path, _ = community
    seqs = [
        s
        for t in ("org_units", "people", "households", "visits", "whistle_cases", "notices")
        for (s,) in q(path, f"SELECT seq FROM {t}")
    ]
    assert len(seqs) == len(set(seqs))
    assert max(seqs) == int(q(path, "SELECT value FROM meta WHERE key='change_seq'")[0][0])
    visit_order = [s for (s,) in q(path, "SELECT seq FROM visits ORDER BY id")]
    assert visit_order == sorted(visit_order)  # ids and seqs both follow time


def test_only_the_admin_device_is_enrolled_and_its_token_works(community):
    path, report = community
    assert q(path, "SELECT id, person_id FROM devices") == [(report["admin_device_id"], "admin")]
    with Store(path) as store:
        principal = store.read(auth.authenticate, report["admin_token"])
    assert principal.person_id == "admin" and principal.scope.everything


def test_same_seed_same_database_other_seed_differs(tmp_path):
    paths = [tmp_path / "a.db", tmp_path / "b.db", tmp_path / "c.db"]
    for path, seed in zip(paths, ("7", "7", "8")):
        assert run_demo(path, "--seed", seed).exit_code == 0
    a, b, c = (dump(p) for p in paths)
    assert a == b
    assert a["households"] != c["households"] and a["visits"] != c["visits"]


def test_refuses_a_database_with_data_unless_forced(tmp_path):
    path = tmp_path / "demo.db"
    assert run_demo(path).exit_code == 0
    before = dump(path)
    again = run_demo(path)
    assert again.exit_code == 1 and "database_not_empty" in again.output
    assert "Traceback" not in again.output
    assert dump(path) == before
    forced = run_demo(path, "--force", "--json")
    assert forced.exit_code == 0, forced.output
    assert dump(path) == before  # same seed and day: the same data again
    assert q(path, "SELECT count(*) FROM devices") == [(1,)]  # the old file is gone


def test_text_summary_prints_the_token(tmp_path):
    result = run_demo(tmp_path / "demo.db")
    assert result.exit_code == 0, result.output
    assert "households 520" in result.stdout
    token = result.stdout.split("admin token (shown once, store it now): ")[1].split()[0]
    assert token.startswith(auth.TOKEN_PREFIX)


def test_district_generator_at_a_tiny_scale(tmp_path):
    """The district code path (several streets and communities) without its two minutes."""
    scale = demo.Scale(
        "tiny-district", streets=2, communities=3, grids=8, households=700, members=90, days=20
    )
    with Store(tmp_path / "d.db", synchronous="NORMAL") as store:
        report = demo.build(store, scale, seed=3, as_of=date(2026, 11, 23))
        names = store.read(
            lambda db: [
                r[0]
                for r in db.execute(
                    "SELECT name FROM org_units WHERE kind = 'community'"
                ).fetchall()
            ]
        )
        parents = store.read(
            lambda db: db.execute(
                "SELECT c.kind, p.kind FROM org_units c JOIN org_units p ON p.id = c.parent_id "
                "GROUP BY 1, 2"
            ).fetchall()
        )
        span = store.read(
            lambda db: db.execute("SELECT min(at_ms), max(at_ms) FROM visits").fetchone()
        )
        indexes = store.read(
            lambda db: {
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL"
                ).fetchall()
            }
        )
    assert report["org_units"] == {
        "district": 1,
        "street": 2,
        "community": 3,
        "grid": 8,
        "branch": 8,
        "department": 2,
    }
    assert report["people"]["member"] == 90 and report["households"] == 700
    assert len(set(names)) == 3 and "出头社区" not in names
    assert set(parents) == {
        ("street", "district"),
        ("department", "district"),
        ("community", "street"),
        ("grid", "community"),
        ("branch", "community"),
    }
    # the bulk load drops secondary indexes for speed; they must all be back
    assert {
        "visits_household",
        "visits_grid_seq",
        "households_grid_seq",
        "households_member",
    } <= indexes
    assert report["visits"] > 700
    assert END_MS - 20 * DAY_MS <= span[0] < span[1] < END_MS


def test_demo_help():
    result = CliRunner().invoke(cli, ["demo", "--help"])
    assert result.exit_code == 0 and "--scale" in result.output and "--seed" in result.output


def test_demo_database_serves_the_api_with_the_printed_token(tmp_path):
    """The quick start: demo, then the real app on that file with the printed admin token; a
    member enrolled afterwards sees exactly the households of their grid."""
    from litestar.testing import TestClient

    from gridsync.app import create_app
    from gridsync.audit import Actor
    from gridsync.config import Settings

    path = tmp_path / "demo.db"
    result = run_demo(path, "--json")
    admin = json.loads(result.stdout)["admin_token"]
    member, grid = q(
        path,
        "SELECT responsible_member_id, grid_id FROM households "
        "WHERE responsible_member_id IS NOT NULL ORDER BY id LIMIT 1",
    )[0]
    in_grid = q(path, "SELECT count(*) FROM households WHERE grid_id = ?", grid)[0][0]
    other = q(path, "SELECT id FROM households WHERE grid_id != ? LIMIT 1", grid)[0][0]
    with Store(path) as store:
        phone = store.write(auth.enroll, member, Actor.cli()).token
        with TestClient(app=create_app(Settings(db=str(path)), store=store)) as client:
            r = client.get(
                "/api/v1/households?limit=1", headers={"Authorization": f"Bearer {admin}"}
            )
            assert r.status_code == 200, r.text
            assert r.json()["total"] == 520
            r = client.get(
                "/api/v1/households?limit=500", headers={"Authorization": f"Bearer {phone}"}
            )
            assert r.status_code == 200, r.text
            assert r.json()["total"] == in_grid
            assert {h["grid_id"] for h in r.json()["items"]} == {grid}
            r = client.get(
                f"/api/v1/households/{other}", headers={"Authorization": f"Bearer {phone}"}
            )
            assert r.status_code == 404


def test_a_month_of_orders_and_cases_with_callbacks(community):
    """Issue 17: the reports have real content: orders of every type over the last 30 days,
    rated by callbacks of someone who handled none of them, some not yet rated, some escalated
    by the deadline check, some supervised; and whistle cases handled and closed."""
    path, _ = community
    ((orders, types, first, last),) = q(
        path,
        "SELECT count(*), count(DISTINCT type), min(received_ms), max(received_ms) "
        "FROM hotline_orders",
    )
    assert orders >= 30 and types == 5
    assert first >= END_MS - 30 * DAY_MS and last < END_MS
    callers = q(
        path,
        "SELECT count(*) FROM hotline_callbacks cb WHERE EXISTS (SELECT 1 FROM whistle_history h "
        "WHERE h.case_id = cb.case_id AND h.by = cb.by AND h.action IN ('accept', 'resolve'))",
    )
    assert callers == [(0,)]
    rated = q(path, "SELECT count(DISTINCT case_id) FROM hotline_callbacks WHERE reached = 1")[0][0]
    assert 0 < rated < orders
    escalated = q(
        path,
        "SELECT count(*) FROM whistle_history h JOIN whistle_cases c ON c.id = h.case_id "
        "WHERE c.source = 'hotline' AND h.action = 'escalate' AND h.by IS NULL",
    )[0][0]
    assert escalated >= 1
    assert q(path, "SELECT count(*) FROM supervisions")[0][0] >= 1
    closed = q(
        path, "SELECT count(*) FROM whistle_cases WHERE source = 'whistle' AND state = 'closed'"
    )
    assert closed[0][0] >= 5


def test_the_demo_shows_issue_18s_people_at_work(community):
    """An instructor per community with a group visit, an inactive member whose households
    were unassigned through the assignment log: the reports show all three."""
    path, report = community
    assert report["group_visits"] == 1 and report["inactive_people"] == 1
    ((pid, reason),) = q(path, "SELECT id, inactive_reason FROM people WHERE active = 0")
    assert reason == "moved_away"
    released = {
        h
        for (h,) in q(
            path,
            "SELECT household_id FROM assignment_log WHERE previous_member_id = ? "
            "AND member_id IS NULL",
            pid,
        )
    }
    assert released
    assert not q(path, "SELECT 1 FROM households WHERE responsible_member_id = ?", pid)
    runner = CliRunner()
    plan = runner.invoke(cli, ["coverage", "rebalance", "--json", "--db", str(path)])
    assert plan.exit_code == 0, plan.output
    body = json.loads(plan.stdout)["plan"]
    offered = {s["household_id"] for s in body["suggestions"]} | set(body["unplaced"])
    assert released <= offered
    out = runner.invoke(cli, ["report", "instructors", "--json", "--db", str(path)])
    assert out.exit_code == 0, out.output
    (row,) = json.loads(out.stdout)["rows"]
    assert row["person_id"] == "c001-ins" and row["group_visits"] == 1
    assert row["households_visited"] >= 4 and row["communities_covered"] == 1
    rollup = runner.invoke(
        cli, ["coverage", "--json", "--db", str(path), "--now", AS_OF, "--level", "grid"]
    )
    assert rollup.exit_code == 0, rollup.output
    assert sum(r["group_contacted"] for r in json.loads(rollup.stdout)["rows"]) >= 1

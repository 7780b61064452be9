"""The trigger-kept coverage aggregates (migration 0005: per-person loads and branches, per-grid
household counts by tags) equal a recount after every kind of write: people edits,
assignments, phone pushes (create, update with a grid move and tags, move out, visits and
voids), an import, raw SQL, and the demo generator."""

from __future__ import annotations

import csv
from collections import Counter
from datetime import date

import pytest

from gridsync import coverage, demo, importer, org
from gridsync.audit import Actor
from gridsync.clock import uuid7
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.migrations import backfill_0005
from gridsync.models import COVERAGE_LEVELS
from gridsync.org import Scope
from tests.coverage_community import NOW_MS
from tests.sync_helpers import Phone
from tests.test_service_kinds import assert_exact as assert_kinds_exact

CLI = Actor.cli()
ADMIN_ROLES = frozenset({"admin"})


def kept(db) -> tuple[dict, dict, dict]:
    members = {
        pid: (branch, bool(is_member), n)
        for pid, branch, is_member, n in db.execute(
            "SELECT person_id, branch_id, is_member, households FROM coverage_members"
        )
        if is_member or n
    }
    grids = {
        (g, tags, bool(a)): n
        for g, tags, a, n in db.execute(
            "SELECT grid_id, tags, assigned, households FROM coverage_grid_counts"
        )
        if n
    }
    histogram = {
        (b, n): m
        for b, n, m in db.execute(
            "SELECT branch_id, households, members FROM coverage_load_histogram"
        )
        if m
    }
    return members, grids, histogram


def recount(db) -> tuple[dict, dict, dict]:
    """The same figures straight from people and households (no kept table involved)."""
    loads = dict(
        db.execute(
            "SELECT responsible_member_id, count(*) FROM households WHERE status = 'active' "
            "AND responsible_member_id IS NOT NULL GROUP BY 1"
        ).fetchall()
    )
    members = {}
    for pid, branch, active, roles in db.execute("SELECT id, branch_id, active, roles FROM people"):
        is_member = bool(active) and '"member"' in roles
        if is_member or loads.get(pid):
            members[pid] = (branch, is_member, loads.get(pid, 0))
    for pid, n in loads.items():  # responsible but not (yet) in people
        members.setdefault(pid, (None, False, n))
    grids = {
        (g, tags, bool(a)): n
        for g, tags, a, n in db.execute(
            "SELECT grid_id, tags, responsible_member_id IS NOT NULL, count(*) FROM households "
            "WHERE status = 'active' GROUP BY 1, 2, 3"
        )
    }
    histogram = dict(
        Counter(
            (branch, n)
            for branch, is_member, n in members.values()
            if is_member and branch is not None
        )
    )
    return members, grids, histogram


def assert_exact(store: Store) -> None:
    got, expected = store.read(kept), store.read(recount)
    assert got == expected
    assert got[0] and got[1] and got[2]  # not vacuously equal


def test_kept_aggregates_equal_a_recount_after_mixed_writes(client, tiny, store, tmp_path):
    settings = Settings()
    admin = store.read(org.resolve_scope, "admin")
    assert_exact(store)

    # people: a new member in g1 (inserted by add_people, its scope makes it assignable)
    store.write(
        org.add_people,
        [org.NewPerson(id="m3", name="周敏", roles=["member"], scope=["g1"], branch_id="b1")],
        CLI,
    )

    def assign(hid: str, member: str, replace: bool = False) -> None:
        store.write(
            coverage.assign,
            settings,
            CLI,
            ADMIN_ROLES,
            admin,
            hid,
            member,
            replace=replace,
            override_cap=True,
        )

    assign("hh-g1-1", "m1")
    assign("hh-g1-2", "m1")
    assign("hh-g1-3", "m3")
    assign("hh-g2-1", "m2")
    assign("hh-g2-2", "m2")
    assign("hh-g1-2", "m3", replace=True)  # a move between members
    assert_exact(store)
    assert store.read(kept)[0]["m3"] == ("b1", True, 2)

    # phone pushes: create, tags, a move to another grid, a move out, visits and a void
    sec = Phone(client, tiny.tokens["sec"], tiny.devices["sec"])

    def seq_of(hid: str) -> int:
        return store.read(
            lambda db: db.execute("SELECT seq FROM households WHERE id = ?", [hid]).fetchone()[0]
        )

    created = uuid7()
    muts = [
        sec.mutation(
            "household.create",
            created,
            data={
                "grid_id": "g1",
                "building": "9号楼",
                "room": "301",
                "head_name": "孙",
                "size": 2,
                "tags": ["renter"],
            },
        ),
        sec.mutation(
            "household.update",
            "hh-g1-1",
            base_seq=seq_of("hh-g1-1"),
            tags_add=["disabled"],
            tags_remove=["elderly_alone"],
        ),
        sec.mutation(
            "household.update",
            "hh-g1-3",
            base_seq=seq_of("hh-g1-3"),
            fields={"grid_id": "g2", "notes": "搬到二网格"},
        ),
        sec.mutation("household.move_out", "hh-g2-2", base_seq=seq_of("hh-g2-2")),
    ]
    first_visit = sec.visit("hh-g1-1", kinds=["policy"])
    r = sec.push([*muts, first_visit, sec.visit("hh-g1-2", kinds=["safety"])])
    assert r.status_code == 200, r.text
    assert {x["status"] for x in r.json()["results"]} == {"applied"}, r.text
    r = sec.push([sec.mutation("visit.void", first_visit["id"])])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "applied"
    assert_exact(store)
    # hh-g1-3 (m3) moved into g2; hh-g2-2 (m2) moved out; hh-g2-1 (m2) is tagged
    assert store.read(kept)[1][("g2", "[]", True)] == 1

    # an import: new households (one assigned) and a changed one
    path = tmp_path / "import.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [
                [
                    "external_id",
                    "grid_id",
                    "building",
                    "unit",
                    "room",
                    "head_name",
                    "phone",
                    "size",
                    "tags",
                    "notes",
                    "status",
                    "responsible_member_id",
                ],
                [
                    "R-1",
                    "g1",
                    "1号楼",
                    "1单元",
                    "101",
                    "王",
                    "",
                    "1",
                    "elderly_alone",
                    "",
                    "",
                    "m1",
                ],
                ["R-2", "g2", "1号楼", "1单元", "102", "李", "", "2", "", "", "", ""],
            ]
        )
    store.write(importer.import_households, importer.read_file(path), CLI)
    assert_exact(store)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(
            [
                [
                    "external_id",
                    "grid_id",
                    "building",
                    "unit",
                    "room",
                    "head_name",
                    "phone",
                    "size",
                    "tags",
                    "notes",
                    "status",
                    "responsible_member_id",
                ],
                ["R-1", "g1", "1号楼", "1单元", "101", "王", "", "1", "", "", "迁出", "m1"],
                ["R-2", "g2", "1号楼", "1单元", "102", "李", "", "2", "renter", "", "", "m2"],
            ]
        )
    store.write(importer.import_households, importer.read_file(path), CLI)
    assert_exact(store)

    # people: m3 stops being a member (roles), m2 is deactivated, m1 changes branch
    store.write(
        org.add_people,
        [
            org.NewPerson(
                id="m3", name="周敏", roles=["branch_secretary"], scope=["g1"], branch_id="b1"
            )
        ],
        CLI,
    )
    store.write(lambda db: db.execute("UPDATE people SET active = 0 WHERE id = 'm2'"))
    store.write(lambda db: db.execute("UPDATE people SET branch_id = 'b2' WHERE id = 'm1'"))
    # raw SQL on households too: a deletion and a reactivation
    store.write(lambda db: db.execute("DELETE FROM households WHERE id = 'hh-g2-3'"))
    store.write(
        lambda db: db.execute("UPDATE households SET status = 'active' WHERE id = 'hh-g2-2'")
    )
    assert_exact(store)
    members = store.read(kept)[0]
    assert members["m3"][1] is False and members["m3"][2] == 2  # still responsible, not counted
    assert members["m2"][1] is False and members["m1"][0] == "b2"

    # the recount used as the migration's backfill gives the same tables
    before = store.read(kept)
    store.write(backfill_0005)
    assert store.read(kept) == before


def test_demo_generator_keeps_the_aggregates_and_the_kinds(tmp_path):
    scale = demo.Scale(
        "tiny", streets=1, communities=2, grids=4, households=300, members=40, days=10
    )
    with Store(tmp_path / "d.db") as store:
        demo.build(store, scale, seed=2, as_of=date(2026, 11, 23))
        assert_exact(store)
        kinds_by_grid, kinds_by_member = assert_kinds_exact(store)
        assert len(kinds_by_grid) >= 4 * 3 and len(kinds_by_member) > 40
        members, grids, _ = store.read(kept)
        assert sum(grids.values()) == store.read(
            lambda db: db.execute(
                "SELECT count(*) FROM households WHERE status = 'active'"
            ).fetchone()[0]
        )
        # 40 members planned, one of whom moved away (inactive: not counted)
        assert sum(1 for _, is_member, _ in members.values() if is_member) == 39


# -- the read paths that use the kept aggregates agree with the per-member path ----------------

ADMIN = Scope("admin", True, frozenset(), frozenset(), 0)
OVERRIDES = [
    None,
    # other limits in c2: members are judged from the (branch, load) histogram
    coverage.PolicyOverride(min_households_per_member=3, max_households_per_member=4),
    # other tags and cycles in c2: two policy groups, priority from the kept tag lists
    coverage.PolicyOverride(
        cycle_days=1,
        priority_cycle_days=1,
        priority_tags=["renter"],
        min_households_per_member=0,
        max_households_per_member=1,
    ),
]


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("unit", [None, "s1", "c2", "g1"])
def test_kept_path_equals_the_member_path(store, cov_settings, comm, override, unit):
    if override is not None:
        store.write(coverage.set_policy, cov_settings, CLI, "c2", override)
    units = [level for level in COVERAGE_LEVELS if level != "member"]
    fast = store.read(coverage.rollup, cov_settings, ADMIN, unit, now_ms=NOW_MS, levels=units)
    full = store.read(
        coverage.rollup, cov_settings, ADMIN, unit, now_ms=NOW_MS, levels=list(COVERAGE_LEVELS)
    )
    assert fast.rows == [r for r in full.rows if r.level != "member"]
    assert any(r.members for r in fast.rows)

    def both(db):
        kept = coverage.violations(db, cov_settings, ADMIN, unit, now_ms=NOW_MS, limit=500)
        tallied = coverage.tally(db, cov_settings, ADMIN, unit, NOW_MS, with_kinds=False)
        per_member = coverage.violations(
            db, cov_settings, ADMIN, unit, now_ms=NOW_MS, limit=500, tallied=tallied
        )
        return kept, per_member

    kept, per_member = store.read(both)
    assert kept == per_member and kept.total > 0
    # a page that starts among the member violations
    households = sum(kept.counts[k] for k in coverage.HOUSEHOLD_VIOLATIONS)
    tail = store.read(
        coverage.violations, cov_settings, ADMIN, unit, now_ms=NOW_MS, offset=households, limit=10
    )
    assert tail.items == per_member.items[households : households + 10]

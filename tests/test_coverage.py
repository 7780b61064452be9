"""1-5-N roll-ups on a hand-built district whose every figure is known (tests/coverage_community.py),
violations of each kind, and scope."""

from __future__ import annotations

import pytest

from gridsync import coverage
from gridsync.models import COVERAGE_LEVELS
from gridsync.org import Scope, resolve_scope
from tests.conftest import bearer
from tests.coverage_community import DAY_MS, NOW_MS

ADMIN = Scope("admin", True, frozenset(), frozenset(), 0)

# level, unit: households, assigned, unassigned, contacted, overdue, priority households,
# priority overdue, members, under min, over cap, kinds covered, kinds total
EXPECTED = {
    ("district", "d1"): (
        12,
        9,
        3,
        7,
        3,
        4,
        2,
        5,
        2,
        1,
        ["policy", "opinion", "safety", "dispute", "environment"],
        6,
    ),
    ("street", "s1"): (
        12,
        9,
        3,
        7,
        3,
        4,
        2,
        5,
        2,
        1,
        ["policy", "opinion", "safety", "dispute", "environment"],
        6,
    ),
    ("community", "c1"): (
        10,
        7,
        3,
        6,
        2,
        3,
        1,
        4,
        2,
        1,
        ["policy", "opinion", "safety", "dispute", "environment"],
        6,
    ),
    ("community", "c2"): (2, 2, 0, 1, 1, 1, 1, 1, 0, 0, ["policy"], 6),
    ("grid", "g1"): (
        7,
        5,
        2,
        4,
        2,
        3,
        1,
        2,
        1,
        1,
        ["policy", "opinion", "safety", "environment"],
        6,
    ),
    ("grid", "g2"): (3, 2, 1, 2, 0, 0, 0, 2, 1, 0, ["dispute"], 6),
    ("grid", "g3"): (2, 2, 0, 1, 1, 1, 1, 1, 0, 0, ["policy"], 6),
    ("branch", "b1"): (
        7,
        5,
        2,
        4,
        2,
        3,
        1,
        2,
        1,
        1,
        ["policy", "opinion", "safety", "environment"],
        6,
    ),
    ("branch", "b2"): (3, 2, 1, 2, 0, 0, 0, 2, 1, 0, ["dispute"], 6),
    ("branch", "b3"): (2, 2, 0, 1, 1, 1, 1, 1, 0, 0, ["policy"], 6),
    ("member", "m1"): (4, 4, 0, 2, 2, 2, 1, 1, 0, 1, ["policy", "opinion", "safety"], 6),
    ("member", "m2"): (1, 1, 0, 1, 0, 0, 0, 1, 1, 0, ["policy", "environment"], 6),
    ("member", "m3"): (2, 2, 0, 2, 0, 0, 0, 1, 0, 0, ["dispute"], 6),
    ("member", "m4"): (0, 0, 0, 0, 0, 0, 0, 1, 1, 0, [], 6),
    ("member", "m5"): (2, 2, 0, 1, 1, 1, 1, 1, 0, 0, ["policy"], 6),
}

# rates: assigned, contact, overdue (of assigned), priority overdue (of priority households),
# under min and over cap (of members), kinds
EXPECTED_RATES = {
    ("district", "d1"): (0.75, 0.5833, 0.3333, 0.5, 0.4, 0.2, 0.8333),
    ("community", "c1"): (0.7, 0.6, 0.2857, 0.3333, 0.5, 0.25, 0.8333),
    ("community", "c2"): (1.0, 0.5, 0.5, 1.0, 0.0, 0.0, 0.1667),
    ("grid", "g1"): (0.7143, 0.5714, 0.4, 0.3333, 0.5, 0.5, 0.6667),
    ("grid", "g2"): (0.6667, 0.6667, 0.0, None, 0.5, 0.0, 0.1667),
    ("branch", "b1"): (0.7143, 0.5714, 0.4, 0.3333, 0.5, 0.5, 0.6667),
    ("member", "m1"): (1.0, 0.5, 0.5, 0.5, 0.0, 1.0, 0.5),
    ("member", "m4"): (None, None, None, None, 1.0, 0.0, 0.0),
}


def _figures(row: coverage.CoverageRow) -> tuple:
    return (
        row.households,
        row.assigned,
        row.unassigned,
        row.contacted,
        row.overdue,
        row.priority_households,
        row.priority_overdue,
        row.members,
        row.members_under_min,
        row.members_over_cap,
        row.kinds_covered,
        row.kinds_total,
    )


def _rates(row: coverage.CoverageRow) -> tuple:
    return (
        row.assigned_rate,
        row.contact_rate,
        row.overdue_rate,
        row.priority_overdue_rate,
        row.members_under_min_rate,
        row.members_over_cap_rate,
        row.kinds_rate,
    )


def _by_key(rows):
    return {(r.level, r.unit_id): r for r in rows}


def test_every_figure_at_every_level(store, cov_settings, comm):
    report = store.read(
        coverage.rollup, cov_settings, ADMIN, None, now_ms=NOW_MS, levels=list(COVERAGE_LEVELS)
    )
    rows = _by_key(report.rows)
    assert set(rows) == set(EXPECTED)  # mx is inactive: no row
    for key, expected in EXPECTED.items():
        # kinds are listed in the configured order
        got = _figures(rows[key])
        assert got[:10] == expected[:10], key
        assert sorted(got[10]) == sorted(expected[10]), key
        assert got[11] == expected[11], key
    for key, expected in EXPECTED_RATES.items():
        assert _rates(rows[key]) == pytest.approx(expected), key
    # top-down order: district first, members last
    assert report.rows[0].level == "district"
    assert [r.level for r in report.rows][-1] == "member"
    assert rows[("member", "m1")].parent_id == "b1"


def test_rollup_over_http_and_levels_filter(cov_client, comm):
    r = cov_client.get(
        "/api/v1/coverage",
        params={"scope": "c1", "level": ["grid", "member"]},
        headers=bearer(comm.tokens["sec1"]),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["at"].startswith("2026-11-20T12:00:00")
    got = {(row["level"], row["unit_id"]): row for row in body["rows"]}
    assert set(got) == {
        ("grid", "g1"),
        ("grid", "g2"),
        ("member", "m1"),
        ("member", "m2"),
        ("member", "m3"),
        ("member", "m4"),
    }
    assert got[("grid", "g1")]["overdue"] == 2
    assert got[("grid", "g1")]["contact_rate"] == pytest.approx(0.5714)


def test_now_moves_the_cycle(store, cov_settings, comm):
    """Ten days later h1 (visited d3) falls out of the 7-day priority window; h9 (d20) and
    h10 (d25) are still in the 30-day cycle, h10 falls out after 6 more days."""
    later = store.read(
        coverage.rollup,
        cov_settings,
        ADMIN,
        "g2",
        now_ms=NOW_MS + 6 * DAY_MS,
        levels=["grid"],
    )
    (g2,) = later.rows
    assert (g2.contacted, g2.overdue) == (1, 1)
    g1 = store.read(
        coverage.rollup,
        cov_settings,
        ADMIN,
        "g1",
        now_ms=NOW_MS + 10 * DAY_MS,
        levels=["grid"],
    ).rows[0]
    assert g1.priority_overdue == 2  # h1 and h2


def test_community_policy_override_changes_only_that_community(store, cov_settings, comm):
    override = coverage.PolicyOverride(cycle_days=1, priority_cycle_days=1)
    store.write(coverage.set_policy, cov_settings, coverage.Actor.cli(), "c2", override)
    rows = _by_key(store.read(coverage.rollup, cov_settings, ADMIN, None, now_ms=NOW_MS).rows)
    assert not any(level == "member" for level, _ in rows)  # district-wide: no member rows
    c2 = rows[("community", "c2")]
    # kinds_covered is a tuple (rows share it; issue 13)
    assert (c2.contacted, c2.overdue, c2.kinds_covered) == (0, 2, ())  # h13 visited 2 days ago
    assert _figures(rows[("community", "c1")])[:10] == EXPECTED[("community", "c1")][:10]
    assert rows[("district", "d1")].contacted == 6


# -- violations ---------------------------------------------------------------------------------

EXPECTED_VIOLATIONS = {
    # by grid, member, never visited first, then the longest ago
    "unassigned": ["h6", "h7", "h12"],
    "overdue": ["h4", "h3", "h14"],
    "contacted_by_others_only": [],  # every visit here is by the responsible member
    "priority_overdue": ["h2", "h14"],
    "member_under_min": ["m2", "m4"],
    "member_over_cap": ["m1"],
}


@pytest.mark.parametrize("kind", coverage.VIOLATION_KINDS)
def test_each_violation_kind(store, cov_settings, comm, kind):
    page = store.read(coverage.violations, cov_settings, ADMIN, None, now_ms=NOW_MS, kinds=[kind])
    assert [v.id for v in page.items] == EXPECTED_VIOLATIONS[kind]
    assert {v.kind for v in page.items} == ({kind} if EXPECTED_VIOLATIONS[kind] else set())
    assert page.total == len(EXPECTED_VIOLATIONS[kind])


def test_violation_details_and_paging(store, cov_settings, comm):
    page = store.read(coverage.violations, cov_settings, ADMIN, None, now_ms=NOW_MS)
    assert page.total == 11
    assert page.counts == {k: len(v) for k, v in EXPECTED_VIOLATIONS.items()}
    everything = [
        v.id
        for k in coverage.VIOLATION_KINDS
        for v in store.read(
            coverage.violations, cov_settings, ADMIN, None, now_ms=NOW_MS, kinds=[k]
        ).items
    ]
    pages = []
    for offset in range(0, 11, 4):
        pages += [
            v.id
            for v in store.read(
                coverage.violations,
                cov_settings,
                ADMIN,
                None,
                now_ms=NOW_MS,
                limit=4,
                offset=offset,
            ).items
        ]
    assert pages == everything
    by = {(v.kind, v.id): v for v in page.items}
    h3 = by[("overdue", "h3")]
    assert (h3.days_since_visit, h3.member_id, h3.address) == (40, "m1", "1号楼1单元103")
    assert h3.phone == "137****0003"  # masked unless asked
    m1 = by[("member_over_cap", "m1")]
    assert (m1.households, m1.limit) == (4, 3)
    assert by[("member_under_min", "m4")].households == 0


def test_violations_filter_by_scope_over_http(cov_client, comm):
    r = cov_client.get(
        "/api/v1/coverage/violations",
        params={"scope": "g3", "kind": ["overdue", "priority_overdue"]},
        headers=bearer(comm.tokens["admin"]),
    )
    assert r.status_code == 200, r.text
    assert [(v["kind"], v["id"]) for v in r.json()["items"]] == [
        ("overdue", "h14"),
        ("priority_overdue", "h14"),
    ]
    assert r.json()["items"][0]["phone"] == "13700000014"  # admin sees full numbers
    bad = cov_client.get(
        "/api/v1/coverage/violations", params={"kind": "late"}, headers=bearer(comm.tokens["admin"])
    )
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


# -- scope ----------------------------------------------------------------------------------------


def test_branch_secretary_sees_only_their_branch(cov_client, comm):
    h = bearer(comm.tokens["bs1"])
    r = cov_client.get("/api/v1/coverage", headers=h)
    assert r.status_code == 200, r.text
    keys = {(row["level"], row["unit_id"]) for row in r.json()["rows"]}
    assert keys == {("branch", "b1"), ("grid", "g1"), ("member", "m1"), ("member", "m2")}
    for path in (
        "/api/v1/coverage",
        "/api/v1/coverage/violations",
        "/api/v1/coverage/rebalance",
        "/api/v1/exports/coverage",
    ):
        r = cov_client.get(path, params={"scope": "c2"}, headers=h)
        assert r.status_code == 403, path
        assert r.json()["code"] == "out_of_scope"
    r = cov_client.get("/api/v1/coverage/sample", params={"scope": "g3", "seed": "1"}, headers=h)
    assert r.status_code == 403 and r.json()["code"] == "out_of_scope"


def test_members_and_departments_get_no_reports(cov_client, comm):
    r = cov_client.get("/api/v1/coverage", headers=bearer(comm.tokens["m1"]))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_unknown_scope_is_404(cov_client, comm):
    r = cov_client.get(
        "/api/v1/coverage", params={"scope": "nope"}, headers=bearer(comm.tokens["admin"])
    )
    assert r.status_code == 404 and r.json()["code"] == "not_found"


def test_street_scope_reads_its_communities(store, cov_settings, comm):
    scope = store.read(resolve_scope, "street1")
    rows = _by_key(store.read(coverage.rollup, cov_settings, scope, None, now_ms=NOW_MS).rows)
    assert ("district", "d1") not in rows
    assert _figures(rows[("street", "s1")])[:10] == EXPECTED[("street", "s1")][:10]


def test_the_cached_org_tree_follows_org_edits(store, cov_settings, comm):
    """Roll-ups reuse the org tree of a database while its units are unchanged; a renamed unit
    or a new grid (each written with a new change seq) is seen by the next roll-up."""
    from gridsync import org
    from gridsync.models import OrgUnit

    def rows():
        return _by_key(store.read(coverage.rollup, cov_settings, ADMIN, None, now_ms=NOW_MS).rows)

    before = rows()
    assert store.read(coverage.OrgIndex.of) is store.read(coverage.OrgIndex.of)
    g1 = before[("grid", "g1")]
    store.write(
        org.add_units, [OrgUnit(id="g1", kind="grid", name="一网格（新）", parent_id=g1.parent_id)]
    )
    store.write(
        org.add_units, [OrgUnit(id="g9", kind="grid", name="新网格", parent_id=g1.parent_id)]
    )
    after = rows()
    assert after[("grid", "g1")].name == "一网格（新）"
    assert after[("grid", "g9")].households == 0
    assert _figures(after[("grid", "g1")]) == _figures(g1)


def test_violation_pages_across_communities_with_different_policies(store, cov_settings, comm):
    """c2 on a 1-day cycle: h13 (visited 2 days ago) becomes overdue there. Two policy groups
    are read separately and merged in one order, page by page."""
    override = coverage.PolicyOverride(cycle_days=1, priority_cycle_days=1)
    store.write(coverage.set_policy, cov_settings, coverage.Actor.cli(), "c2", override)
    page = store.read(
        coverage.violations, cov_settings, ADMIN, None, now_ms=NOW_MS, kinds=["overdue"]
    )
    assert [v.id for v in page.items] == ["h4", "h3", "h14", "h13"]
    one_by_one = [
        store.read(
            coverage.violations,
            cov_settings,
            ADMIN,
            None,
            now_ms=NOW_MS,
            kinds=["overdue"],
            limit=1,
            offset=i,
        )
        .items[0]
        .id
        for i in range(4)
    ]
    assert one_by_one == ["h4", "h3", "h14", "h13"]


@pytest.mark.parametrize(
    "override",
    [
        None,
        coverage.PolicyOverride(cycle_days=1, priority_cycle_days=1),
        coverage.PolicyOverride(priority_tags=[]),
    ],
)
@pytest.mark.parametrize("unit", [None, "s1", "c1", "g2"])
def test_sql_unit_path_equals_the_member_path(store, cov_settings, comm, override, unit):
    """Unit rows are computed in SQL when no member rows are shown, and from per-member groups
    when they are: both must give the same figures (c2 without priority tags has no
    priority overdue pass at all)."""
    if override is not None:
        store.write(coverage.set_policy, cov_settings, coverage.Actor.cli(), "c2", override)
    units = [level for level in COVERAGE_LEVELS if level != "member"]
    fast = store.read(coverage.rollup, cov_settings, ADMIN, unit, now_ms=NOW_MS, levels=units)
    full = store.read(
        coverage.rollup, cov_settings, ADMIN, unit, now_ms=NOW_MS, levels=list(COVERAGE_LEVELS)
    )
    assert fast.rows == [r for r in full.rows if r.level != "member"]
    assert fast.rows
    if unit is None:  # the fixture has priority households overdue in the whole district
        assert fast.rows[0].priority_overdue > 0


@pytest.mark.parametrize(
    "override",
    [
        None,
        coverage.PolicyOverride(cycle_days=1, priority_cycle_days=1),
        # another minimum and cap in c2: members judged per (branch, load), not in SQL
        coverage.PolicyOverride(min_households_per_member=3, max_households_per_member=3),
    ],
)
@pytest.mark.parametrize("unit", [None, "s1", "c1", "g2", "b1"])
def test_one_engine_counts_the_same_either_way(store, cov_settings, comm, override, unit):
    """The tally counts per member or from the kept aggregates; either way it gives the same
    household counts per grid and the same members, under-minimum and over-cap counts per home
    (the roll-up's unit rows and the violations' member counts are built from these)."""
    if override is not None:
        store.write(coverage.set_policy, cov_settings, coverage.Actor.cli(), "c2", override)

    def counted(per_member: bool):
        t = store.read(coverage.tally, cov_settings, ADMIN, unit, NOW_MS, per_member=per_member)
        grids = {g: c for g, c in t.grid_counts.items() if c.households or c.mask}
        homes = {home: m for home, m in t.homes.items() if m.members}
        return grids, homes, t

    grids, homes, per_member = counted(True)
    assert (grids, homes) == counted(False)[:2]
    assert homes and grids  # not vacuously equal
    # per member, the homes sum the members' own judgements
    assert sum(m.members for m in homes.values()) == len(per_member.members)
    assert sum(m.under for m in homes.values()) == sum(m.under for m in per_member.members.values())

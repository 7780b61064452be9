"""Member rows of a roll-up (built positionally, figures shared between members with the same
numbers) equal the obvious per-member recount from people, households and visits, under several
community policies (limits, priority tags, cycles, service kinds) and scopes."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridsync import coverage, org
from gridsync.audit import Actor
from gridsync.org import Scope
from tests.coverage_community import DAY_MS, NOW_MS, insert_visit

CLI = Actor.cli()
ADMIN = Scope("admin", True, frozenset(), frozenset(), 0)
OVERRIDES = [
    None,
    coverage.PolicyOverride(min_households_per_member=0, max_households_per_member=1),
    coverage.PolicyOverride(
        cycle_days=3,
        priority_cycle_days=1,
        priority_tags=["renter"],
        service_kinds=["policy", "dispute", "custom"],
    ),
]


def _rate(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


def obvious_member_rows(db, settings, unit: str | None) -> dict[str, tuple]:
    units = {
        uid: (kind, parent)
        for uid, kind, parent in db.execute("SELECT id, kind, parent_id FROM org_units")
    }

    def under(uid: str | None, top: str | None) -> bool:
        while uid is not None:
            if uid == top:
                return True
            uid = units[uid][1]
        return top is None

    policies = {
        uid: coverage.policy_for(db, settings, uid)
        for uid, (kind, _) in units.items()
        if kind == "community"
    }
    grids = {uid for uid, (kind, _) in units.items() if kind == "grid" and under(uid, unit)}
    households = db.execute(
        "SELECT grid_id, responsible_member_id, tags, last_visit_ms, id "
        "FROM households WHERE status = 'active'"
    ).fetchall()
    visits = db.execute(
        "SELECT grid_id, member_id, at_ms, kinds, household_id FROM visits WHERE voided = 0"
    ).fetchall()
    out = {}
    for pid, name, branch, roles in db.execute(
        "SELECT id, name, branch_id, roles FROM people WHERE active = 1"
    ):
        if "member" not in json.loads(roles) or not under(branch, unit):
            continue
        own = coverage.policy_for(db, settings, units[branch][1])
        load = sum(1 for h in households if h[1] == pid)
        n = contacted = by_self = prio = prio_overdue = 0
        for grid, member, tags, last, hid in households:
            if member != pid or grid not in grids:
                continue
            p = policies[units[grid][1]]
            n += 1
            contacted += (last or 0) >= NOW_MS - p.cycle_days * DAY_MS
            by_self += any(  # from the visits themselves, not the kept column
                v[4] == hid and v[1] == pid and v[2] >= NOW_MS - p.cycle_days * DAY_MS
                for v in visits
            )
            if set(json.loads(tags)) & set(p.priority_tags):
                prio += 1
                prio_overdue += (last or 0) < NOW_MS - p.priority_cycle_days * DAY_MS
        kinds = set()
        for grid, member, at_ms, raw, _ in visits:
            p = policies[units[grid][1]]
            if member == pid and grid in grids and at_ms >= NOW_MS - p.cycle_days * DAY_MS:
                kinds |= set(json.loads(raw))
        kinds &= set(own.service_kinds)
        low, high = load < own.min_households_per_member, load > own.max_households_per_member
        total = len(own.service_kinds)
        out[pid] = (
            name,
            branch,
            n,
            n,
            0,
            contacted,
            by_self,
            n - contacted,
            prio,
            prio_overdue,
            1,
            int(low),
            int(high),
            kinds,
            total,
            _rate(n, n),
            _rate(contacted, n),
            _rate(by_self, n),
            _rate(n - contacted, n),
            _rate(prio_overdue, prio),
            float(low),
            float(high),
            _rate(len(kinds), total),
        )
    return out


@pytest.mark.parametrize("override", OVERRIDES)
@pytest.mark.parametrize("unit", [None, "c1", "c2"])
def test_member_rows_equal_the_obvious_recount(store, cov_settings, comm, override, unit):
    # members who differ in one figure only (figures are shared between members with the
    # same numbers), one without households, and m3 with households and visits in two
    # communities
    store.write(
        org.add_people,
        [
            org.NewPerson(id=pid, name=f"党员{pid}", roles=["member"], scope=["g2"], branch_id="b2")
            for pid in ("m6", "m7", "m8", "m9")
        ],
        CLI,
    )

    def households(db):
        for hid, member, tags in (
            ("h20", "m6", '["elderly_alone"]'),
            ("h21", "m7", '["elderly_alone"]'),
            ("h22", "m8", '["elderly_alone"]'),
            ("h23", "m8", "[]"),
        ):
            db.execute(
                "INSERT INTO households (id, grid_id, tags, responsible_member_id, seq, "
                "created_at, updated_at) VALUES (?, 'g2', ?, ?, 0, '', '')",
                [hid, tags, member],
            )
        db.execute("UPDATE households SET responsible_member_id = 'm3' WHERE id = 'h14'")

    store.write(households)
    for hid, member, days, kinds in (
        ("h20", "m6", 3, ["policy"]),
        ("h21", "m7", 10, ["policy"]),  # priority overdue
        ("h22", "m8", 3, ["policy"]),
        ("h23", "m8", 31, ["opinion"]),  # one overdue
        ("h14", "m3", 2, ["dispute", "custom"]),
        ("h13", "m6", 29, ["policy"]),
        ("h3", "m2", 4, ["policy"]),  # m1's household, contacted by another member only
    ):
        store.write(insert_visit, hid, member, NOW_MS - days * DAY_MS, kinds)
    if override is not None:
        store.write(coverage.set_policy, cov_settings, CLI, "c2", override)
    report = store.read(
        coverage.rollup, cov_settings, ADMIN, unit, now_ms=NOW_MS, levels=["member"]
    )
    got = {
        r.unit_id: (
            r.name,
            r.parent_id,
            r.households,
            r.assigned,
            r.unassigned,
            r.contacted,
            r.contacted_by_responsible,
            r.overdue,
            r.priority_households,
            r.priority_overdue,
            r.members,
            r.members_under_min,
            r.members_over_cap,
            set(r.kinds_covered),
            r.kinds_total,
            r.assigned_rate,
            r.contact_rate,
            r.compliance_rate,
            r.overdue_rate,
            r.priority_overdue_rate,
            r.members_under_min_rate,
            r.members_over_cap_rate,
            r.kinds_rate,
        )
        for r in report.rows
    }
    assert [r.unit_id for r in report.rows] == sorted(got)  # by id
    expected = store.read(obvious_member_rows, cov_settings, unit)
    assert got == expected
    assert any(row[2] for row in got.values())  # not vacuously equal
    if unit != "c2":  # h3 (m1's) is contacted this cycle, not by m1
        assert got["m1"][5] - got["m1"][6] == 1
    # the JSON the API sends is the same as for rows built one by one
    assert all(
        coverage.CoverageRow(**{f: getattr(r, f) for f in r.__struct_fields__}) == r
        for r in report.rows
    )


@given(
    st.integers(min_value=1, max_value=2_000_000).flatmap(
        lambda den: st.tuples(st.integers(min_value=0, max_value=den), st.just(den))
    )
)
@settings(max_examples=500, deadline=None)
def test_rates_are_round_to_4_decimals(pair):
    num, den = pair
    assert coverage._rate(num, den) == round(num / den, 4)


def test_rates_agree_on_every_tie_and_small_quotient():
    """Exact decimal ties (num / den = k.5e-4) and every quotient with den < 800."""
    ties = [(2 * k + 1, 20_000) for k in range(10_000)]
    ties += [(m * (2 * k + 1), m * 20_000) for m in (3, 7, 9) for k in range(0, 10_000, 37)]
    small = [(n, d) for d in range(1, 800) for n in range(d + 1)]
    for num, den in ties + small:
        assert coverage._rate(num, den) == round(num / den, 4), (num, den)
    assert coverage._rate(0, 0) is None

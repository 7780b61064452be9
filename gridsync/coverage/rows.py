"""Roll-up rows (SPEC section 4): coverage at every level member -> branch -> grid -> community
-> street -> district, from one :func:`~gridsync.coverage.tallying.tally`.

A unit's figures: a grid's households and the members whose home it is; a branch has its grid's
households and kinds and its own members, and is not summed upwards (its members are counted at
their grid already); every unit of the administrative tree adds its total into its parent's.
A member's figures: their own households (in the grids read) and visits' kinds, judged by their
community's policy. Rates are ``round(num / den, 4)``, None when the denominator is 0.
"""

from __future__ import annotations

from collections import defaultdict

import msgspec
import sqlite_utils

from gridsync.clock import iso_ms
from gridsync.config import Settings
from gridsync.coverage.org_index import OrgIndex, report_units
from gridsync.coverage.tallying import Counts, Tally, tally
from gridsync.coverage.verified import latest_verified
from gridsync.errors import Invalid
from gridsync.models import COVERAGE_LEVELS, CoverageLevel, CoverageReport, CoverageRow, Policy
from gridsync.org import Scope

UNIT_LEVELS = ("branch", "grid", "community", "street", "district")


def rollup(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None = None,
    *,
    now_ms: int,
    levels: list[str] | None = None,
) -> CoverageReport:
    """Coverage at every level (or the ``levels`` asked for; default :func:`default_levels`) of a
    unit, within a scope.

    Rows come top-down (district first, members last), by id within a level. A unit is reported
    only if it lies at or below ``unit_id`` (default: the caller's scope). Without member rows
    the tally reads the kept aggregates only."""
    idx = OrgIndex.of(db)
    scoped = report_units(idx, scope, unit_id)
    per_member = not idx.wide(scoped.units) if levels is None else "member" in levels
    t = tally(
        db,
        settings,
        scope,
        unit_id,
        now_ms,
        per_member=per_member,
        member_kinds=True,
        idx=idx,
        scoped=scoped,
    )
    rows = with_verified(db, rows_of(t, levels), now_ms)
    return CoverageReport(scope_id=unit_id, at=iso_ms(now_ms), rows=rows)


def with_verified(
    db: sqlite_utils.Database, rows: list[CoverageRow], now_ms: int
) -> list[CoverageRow]:
    """``rows`` with each unit's latest verified rate (最近抽检核实率) beside its contact rate:
    its newest recorded check at or before ``now_ms`` that reached a household
    (:func:`~gridsync.coverage.verified.latest_verified`). Rows are changed in place (most have
    no check) and returned."""
    latest = latest_verified(db, now_ms)
    if latest:
        for row in rows:
            found = latest.get(row.unit_id) if row.level != "member" else None
            if found is not None:
                row.verified_rate = rate(found.confirmed, found.reached)
                row.verified_at = iso_ms(found.drawn_ms)
    return rows


def default_levels(t: Tally) -> tuple[CoverageLevel, ...]:
    """Every level, except members when the report spans a street or the district: tens of
    thousands of member rows belong in an export or a narrower scope (``level=member`` still
    asks for them). Members are counted in every unit row either way."""
    if t.idx.wide(t.units):
        return tuple(level for level in COVERAGE_LEVELS if level != "member")
    return COVERAGE_LEVELS


def rows_of(t: Tally, levels: list[str] | None = None) -> list[CoverageRow]:
    """The rows of a tally at ``levels`` (default :func:`default_levels`), top-down."""
    wanted = set(levels or default_levels(t))
    bad = wanted - set(COVERAGE_LEVELS)
    if bad:
        raise Invalid(
            f"unknown level {sorted(bad)[0]!r}; one of {', '.join(COVERAGE_LEVELS)}", field="level"
        )
    make = RowMaker(t)
    counts = _unit_counts(t)
    kinds = _unit_kinds(t, make)
    by_level: dict[str, list[str]] = defaultdict(list)
    for uid, kind in t.idx.kind.items():  # in id order (OrgIndex.load)
        if uid in t.units:
            by_level[kind].append(uid)
    rows: list[CoverageRow] = []
    for level in reversed(COVERAGE_LEVELS):
        if level == "member" and level in wanted:
            rows += _member_rows(t, make)
        elif level in wanted:
            rows += _unit_rows(t, make, level, by_level[level], counts, kinds)
    return rows


def _unit_counts(t: Tally) -> dict[str, Counts]:
    """Each unit's counts: its own part (a grid's households, a branch's grid's households, the
    members whose home it is), then every unit of the administrative tree, children first,
    adds its total into its parent's."""
    idx = t.idx
    counts: dict[str, Counts] = {}

    def own(uid: str) -> Counts:
        acc = counts.get(uid)
        if acc is None:
            acc = counts[uid] = Counts()
        return acc

    for grid, acc in t.grid_counts.items():
        if grid is not None:  # (None holds the totals of a tally with by_grid=False)
            counts[grid] = acc.households_only()
    for branch, grid in idx.branch_grid.items():
        of_grid = t.grid_counts.get(grid) if grid else None
        if of_grid is not None:
            counts[branch] = of_grid.households_only()
    for home, m in t.homes.items():
        grid_or_community = home.grid_id if home.grid_id is not None else home.community_id
        for uid in (home.branch_id, grid_or_community):
            if uid is not None:
                unit = own(uid)
                unit.members += m.members
                unit.under += m.under
                unit.over += m.over
    for uid in idx.bottom_up():
        parent = idx.parent[uid]
        total = counts.get(uid)
        if total is not None and parent is not None and parent in idx.kind:
            own(parent).add(total)
    return counts


def _unit_kinds(t: Tally, make: RowMaker) -> dict[str, int]:
    """The service kinds configured at each community (its policy's) and above it (those of
    every community below), as masks."""
    idx = t.idx
    kinds: dict[str, int] = {}
    for uid in idx.bottom_up():
        if idx.kind[uid] == "community":
            kinds[uid] = kinds.get(uid, 0) | make.kinds_mask(t.policies[uid])
        parent = idx.parent[uid]
        if uid in kinds and parent is not None and parent in idx.kind:
            kinds[parent] = kinds.get(parent, 0) | kinds[uid]
    return kinds


def _unit_rows(
    t: Tally,
    make: RowMaker,
    level: CoverageLevel,
    unit_ids: list[str],
    counts: dict[str, Counts],
    kinds: dict[str, int],
) -> list[CoverageRow]:
    """The rows of one level's units; a unit below a community has its community's kinds."""
    idx = t.idx
    empty = Counts()
    rows = []
    for uid in unit_ids:
        c = counts.get(uid, empty)
        allowed = kinds.get(idx.community_of(uid) or uid, 0)
        name, parent = idx.name[uid], idx.parent[uid]
        rows.append(make.row(level, uid, name, parent, c, allowed, c.members, c.under, c.over))
    return rows


def _member_rows(t: Tally, make: RowMaker) -> list[CoverageRow]:
    """One row per member, by id: their own households and visits, their own judgement."""
    allowed_of: dict[str | None, int] = {}
    no_households = Counts()
    rows = []
    for pid in sorted(t.members):
        m = t.members[pid]
        community = m.home.community_id
        allowed = allowed_of.get(community)
        if allowed is None:
            allowed = allowed_of[community] = make.kinds_mask(t.policy_of_community(community))
        own = t.member_counts.get(pid, no_households)
        branch = m.home.branch_id
        rows.append(make.row("member", pid, m.name, branch, own, allowed, 1, m.under, m.over))
    return rows


class HouseholdFigures(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The household part of a row, shared by rows with the same counts and kinds."""

    households: int
    assigned: int
    unassigned: int
    contacted: int
    contacted_by_responsible: int
    overdue: int
    priority_households: int
    priority_overdue: int
    kinds_covered: tuple[str, ...]
    kinds_total: int
    assigned_rate: float | None
    contact_rate: float | None
    compliance_rate: float | None
    overdue_rate: float | None
    priority_overdue_rate: float | None
    kinds_rate: float | None
    group_contacted: int


class MemberFigures(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """The member part of a row."""

    members: int
    under: int
    over: int
    under_rate: float | None
    over_rate: float | None


class RowMaker:
    """Builds the rows of one tally. Many rows share their figures (a branch has its grid's
    households; most members share a few small numbers), so each distinct household part and
    member part is computed once per call, and rows with the same covered kinds share one
    ``kinds_covered`` tuple."""

    def __init__(self, t: Tally) -> None:
        self.kinds = t.kinds
        self._covered_kinds: dict[int, tuple[str, ...]] = {0: ()}
        self._households: dict[tuple, HouseholdFigures] = {}
        self._members: dict[tuple[int, int, int], MemberFigures] = {}
        self._masks: dict[tuple[str, ...], int] = {}

    def kinds_mask(self, policy: Policy) -> int:
        """The mask of the service kinds a policy configures."""
        key = tuple(policy.service_kinds)
        mask = self._masks.get(key)
        if mask is None:
            kinds = self.kinds
            mask = self._masks[key] = sum(1 << kinds.index(k) for k in key if k in kinds)
        return mask

    def row(
        self,
        level: CoverageLevel,
        unit_id: str,
        name: str,
        parent_id: str | None,
        c: Counts,
        allowed: int,
        members: int,
        under: int,
        over: int,
    ) -> CoverageRow:
        """A row from the household figures of ``c`` (its kinds as far as ``allowed``
        configures them) and its members, how many under the minimum and over the cap."""
        h = self.households(c, allowed)
        m = self._members.get((members, under, over)) or self.members(members, under, over)
        # positional, in CoverageRow's field order: keyword arguments cost 6x per row (1.6 vs
        # 0.25 us measured), and a district roll-up with its members builds 38,000 rows
        return CoverageRow(
            level,
            unit_id,
            name,
            parent_id,
            h.households,
            h.assigned,
            h.unassigned,
            h.contacted,
            h.contacted_by_responsible,
            h.overdue,
            h.priority_households,
            h.priority_overdue,
            m.members,
            m.under,
            m.over,
            h.kinds_covered,
            h.kinds_total,
            h.assigned_rate,
            h.contact_rate,
            h.compliance_rate,
            h.overdue_rate,
            h.priority_overdue_rate,
            m.under_rate,
            m.over_rate,
            h.kinds_rate,
            None,
            None,
            h.group_contacted,
        )

    def households(self, c: Counts, allowed: int) -> HouseholdFigures:
        covered = c.mask & allowed
        key = (
            c.households,
            c.assigned,
            c.contacted,
            c.by_responsible,
            c.overdue,
            c.priority,
            c.priority_overdue,
            covered,
            allowed,
            c.group_only,
        )
        found = self._households.get(key)
        if found is None:
            kinds_covered = self._covered_kinds.get(covered)
            if kinds_covered is None:
                kinds_covered = self._covered_kinds[covered] = tuple(
                    k for i, k in enumerate(self.kinds) if covered >> i & 1
                )
            total = allowed.bit_count()
            found = self._households[key] = HouseholdFigures(
                households=c.households,
                assigned=c.assigned,
                unassigned=c.households - c.assigned,
                contacted=c.contacted,
                contacted_by_responsible=c.by_responsible,
                overdue=c.overdue,
                priority_households=c.priority,
                priority_overdue=c.priority_overdue,
                kinds_covered=kinds_covered,
                kinds_total=total,
                assigned_rate=rate(c.assigned, c.households),
                contact_rate=rate(c.contacted, c.households),
                compliance_rate=rate(c.by_responsible, c.households),
                overdue_rate=rate(c.overdue, c.assigned),
                priority_overdue_rate=rate(c.priority_overdue, c.priority),
                kinds_rate=rate(len(kinds_covered), total),
                group_contacted=c.group_only,
            )
        return found

    def members(self, members: int, under: int, over: int) -> MemberFigures:
        key = (members, under, over)  # a bool under/over finds its int twin (True == 1)
        found = self._members.get(key)
        if found is None:
            found = self._members[key] = MemberFigures(
                members=members,
                under=int(under),
                over=int(over),
                under_rate=rate(under, members),
                over_rate=rate(over, members),
            )
        return found


def rate(num: int, den: int) -> float | None:
    """``round(num / den, 4)`` for counts, None when ``den`` is 0.

    Exactly the same float, computed without ``round``'s decimal conversion (about 2.5x
    faster; a district roll-up computes ~14,000 rates): ``num * 10000 / den`` is within one
    unit in the last place of the exact quotient, so rounding it to an integer decides like
    rounding ``num / den`` to 4 decimals except near a tie, where ``round`` itself decides.
    ``tests/test_coverage_rows.py`` compares the two over many quotients and every tie."""
    if not den:
        return None
    if not num:
        return 0.0
    if num == den:
        return 1.0
    y = num * 10000 / den
    k = int(y)
    f = y - k
    if -1e-6 < f - 0.5 < 1e-6:
        return round(num / den, 4)
    return (k + (f > 0.5)) / 10000

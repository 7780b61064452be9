"""The violations list (SPEC section 4): every household or member at fault, named, a page at a
time with the counts of every kind.

Kinds, in this order: ``unassigned`` (an active household with no responsible member),
``overdue``, ``contacted_by_others_only`` (contacted this cycle, but not by its responsible
member) and ``priority_overdue`` (as defined in :mod:`gridsync.coverage.tallying`),
``member_under_min`` and ``member_over_cap`` (a member's load judged by their community's
policy). Counts come from a tally from the kept aggregates; member items are read one by one
only when a page reaches them.
"""

from __future__ import annotations

from typing import Any

import sqlite_utils

from gridsync.clock import DAY_MS, iso_ms
from gridsync.config import Settings
from gridsync.coverage.tallying import Member, PolicyGroup, Tally, member_phone, tally
from gridsync.errors import Invalid
from gridsync.models import VIOLATION_KINDS, Violation, ViolationKind, ViolationPage
from gridsync.org import Scope
from gridsync.privacy import PhoneView, shown_phone

HOUSEHOLD_VIOLATIONS: tuple[ViolationKind, ...] = (
    "unassigned",
    "overdue",
    "contacted_by_others_only",
    "priority_overdue",
)
MEMBER_VIOLATIONS: tuple[ViolationKind, ...] = ("member_under_min", "member_over_cap")


def violations(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None = None,
    *,
    now_ms: int,
    kinds: list[str] | None = None,
    limit: int = 100,
    offset: int = 0,
    tallied: Tally | None = None,
) -> ViolationPage:
    """Every household or member at fault, in kind order (unassigned, overdue, contacted by
    others only, priority overdue, members under the minimum, members over the cap). Households within a kind: by grid, then
    responsible member, never-visited and longest-ago first (the order of the covering index,
    so a page streams instead of sorting); members by grid and id. Counts come from the roll-up's
    tally (pass ``tallied`` to reuse one). Phones are as ``scope.phones`` may read them."""
    wanted = _kinds_wanted(kinds)
    t = tallied or tally(
        db, settings, scope, unit_id, now_ms, per_member=False, with_kinds=False, by_grid=False
    )
    counts = _counts(t, wanted)
    items, skip = _household_items(db, t, wanted, counts, limit, offset, scope.phones)
    rest = limit - len(items)
    member_total = sum(counts.get(k, 0) for k in MEMBER_VIOLATIONS)
    if rest > 0 and skip < member_total:
        if not t.per_member:
            t = tally(db, settings, scope, unit_id, now_ms, with_kinds=False)
        items += _member_items(t, wanted, scope.phones)[skip : skip + rest]
    return ViolationPage(
        items=items, total=sum(counts.values()), limit=limit, offset=offset, counts=counts
    )


def _kinds_wanted(kinds: list[str] | None) -> list[ViolationKind]:
    """The kinds asked for (default: all), in kind order; ``invalid`` for an unknown one."""
    wanted = list(kinds or VIOLATION_KINDS)
    bad = set(wanted) - set(VIOLATION_KINDS)
    if bad:
        raise Invalid(
            f"unknown violation kind {sorted(bad)[0]!r}; one of {', '.join(VIOLATION_KINDS)}",
            field="kind",
        )
    return [k for k in VIOLATION_KINDS if k in wanted]


def _counts(t: Tally, wanted: list[ViolationKind]) -> dict[str, int]:
    """How many violations of each kind asked for: households from the grid counts, members
    from the homes' judgements."""
    totals = dict.fromkeys(VIOLATION_KINDS, 0)
    for acc in t.grid_counts.values():
        totals["unassigned"] += acc.households - acc.assigned
        totals["overdue"] += acc.overdue
        totals["contacted_by_others_only"] += acc.others_only
        totals["priority_overdue"] += acc.priority_overdue
    for home in t.homes.values():
        totals["member_under_min"] += home.under
        totals["member_over_cap"] += home.over
    return {kind: totals[kind] for kind in wanted}


def _household_items(
    db: sqlite_utils.Database,
    t: Tally,
    wanted: list[ViolationKind],
    counts: dict[str, int],
    limit: int,
    offset: int,
    phones: PhoneView,
) -> tuple[list[Violation], int]:
    """The household part of a page, and how many member items the page still skips: kinds
    the offset passes whole are skipped by their counts, without a query."""
    items: list[Violation] = []
    skip = offset
    for kind in (k for k in wanted if k in HOUSEHOLD_VIOLATIONS):
        if len(items) >= limit:
            break
        if skip >= counts[kind]:
            skip -= counts[kind]
            continue
        items += _households_at_fault(db, t, kind, limit - len(items), skip, phones)
        skip = 0
    return items, skip


def _fault(kind: str, group: PolicyGroup, now_ms: int) -> tuple[str, list[Any]]:
    """SQL true for an active household of ``group`` with violation ``kind``, and its
    parameters."""
    if kind == "unassigned":
        return "responsible_member_id IS NULL", []
    if kind == "overdue":
        return (
            "responsible_member_id IS NOT NULL AND coalesce(last_visit_ms, 0) < ?",
            [group.cycle_start(now_ms)],
        )
    if kind == "contacted_by_others_only":
        return (
            "responsible_member_id IS NOT NULL AND last_visit_ms >= ? "
            "AND coalesce(last_responsible_visit_ms, 0) < ?",
            [group.cycle_start(now_ms), group.cycle_start(now_ms)],
        )
    return (
        f"responsible_member_id IS NOT NULL AND {group.is_priority()} "
        f"AND coalesce({group.priority_contact()}, 0) < ?",
        [group.priority_start(now_ms)],
    )


def _households_at_fault(
    db: sqlite_utils.Database,
    t: Tally,
    kind: ViolationKind,
    limit: int,
    offset: int,
    phones: PhoneView,
) -> list[Violation]:
    """One page of one kind's households. One policy group: the page itself; several: each
    group's first offset+limit rows, merged in the same order."""
    fetched: list[tuple] = []
    for group in t.groups:
        cond, params = group.where()
        fault, fault_params = _fault(kind, group, t.now_ms)
        page = [limit, offset] if len(t.groups) == 1 else [limit + offset, 0]
        fetched += db.execute(
            "SELECT grid_id, responsible_member_id, coalesce(last_visit_ms, -1), id, building, "
            "unit, room, head_name, phone FROM households "
            f"WHERE status = 'active' AND {cond} AND {fault} "
            "ORDER BY grid_id, responsible_member_id, last_visit_ms, id LIMIT ? OFFSET ?",
            [*params, *fault_params, *page],
        ).fetchall()
    if len(t.groups) > 1:
        fetched.sort(key=lambda r: (r[0], r[1] or "", r[2], r[3]))
        fetched = fetched[offset : offset + limit]
    out = []
    for grid, member, last, hid, building, unit, room, name, phone in fetched:
        visited = last >= 0
        out.append(
            Violation(
                kind=kind,
                subject="household",
                id=hid,
                name=name,
                phone=shown_phone(phones, phone, grid, member),
                grid_id=grid,
                address="".join(p for p in (building, unit, room) if p),
                member_id=member,
                last_visit_at=iso_ms(last) if visited else None,
                days_since_visit=(t.now_ms - last) // DAY_MS if visited else None,
            )
        )
    return out


def _member_items(t: Tally, wanted: list[ViolationKind], phones: PhoneView) -> list[Violation]:
    """Every member at fault of the kinds asked for (a per-member tally), kind by kind, each
    by grid and id."""
    at_fault: dict[str, list[Violation]] = {kind: [] for kind in MEMBER_VIOLATIONS}
    for pid in sorted(t.members, key=lambda p: (t.members[p].home.grid_id or "", p)):
        m = t.members[pid]
        policy = t.policy_of_community(m.home.community_id)
        if m.under and "member_under_min" in wanted:
            at_fault["member_under_min"].append(
                _member_at_fault("member_under_min", m, phones, policy.min_households_per_member)
            )
        if m.over and "member_over_cap" in wanted:
            at_fault["member_over_cap"].append(
                _member_at_fault("member_over_cap", m, phones, policy.max_households_per_member)
            )
    return at_fault["member_under_min"] + at_fault["member_over_cap"]


def _member_at_fault(kind: ViolationKind, m: Member, phones: PhoneView, limit: int) -> Violation:
    return Violation(
        kind=kind,
        subject="member",
        id=m.id,
        name=m.name,
        phone=member_phone(phones, m),
        grid_id=m.home.grid_id,
        member_id=m.id,
        households=m.load,
        limit=limit,
    )

"""The tally: one read of a scope's households and members into the counts every coverage
report builds on (roll-up rows, violations, rebalancing, exports). One engine, :func:`tally`.

Definitions (SPEC section 4, DOMAIN.md; the README repeats them for users):

- A household counts when its ``status`` is ``active``. It is *contacted this cycle* when its
  ``last_visit_ms`` (a non-voided visit by anyone) is at or after ``now - cycle_days``;
  *contacted by its responsible member* when its ``last_responsible_visit_ms`` (a non-voided
  visit by its current responsible member: ``gridsync/visits.py``) is; *overdue* when it has
  a responsible member and was not contacted this cycle (an unassigned household is an
  ``unassigned`` violation instead); *contacted by others only* when it has a responsible
  member and was contacted this cycle, but not by them. So an assigned household is exactly
  one of: contacted by its responsible member, contacted by others only, overdue. The
  *compliance rate* of 1-5-N is contacted by the responsible member over households. A
  household is *priority overdue* when it carries a priority tag, has a responsible member and
  was not contacted within ``priority_cycle_days``.
- A *member* is an active person with the ``member`` role (:mod:`gridsync.coverage.members`,
  which also says who may serve a grid). Their *home* is their party branch (and the branch's
  grid and community). Their *load* is the number of active households they
  are responsible for, anywhere; under the minimum and over the cap are judged by their
  community's policy (:func:`gridsync.coverage.policy.judge_load`).
- Service kinds covered: the distinct configured kinds among this cycle's non-voided visits, by
  the member who made them (member level) or by the visit's grid (grid and above).

The engine's steps: the frame (the units and grids read, the policies in force, the service
kinds, the grids split into policy groups: :func:`_frame`), household counts per policy group,
members judged and summed per home, service kinds per grid (and member). Two ways to count,
chosen by ``per_member``:

- per member (member rows, rebalancing, exports, member violations): one ``GROUP BY grid_id,
  responsible_member_id`` over the covering partial index ``households_coverage``, and every
  member of the scope judged one by one;
- from the kept aggregates (the unit levels only, no per-household or per-member row reaches
  Python): the per-grid counts the triggers of migration ``0005_coverage_aggregates`` keep,
  plus the passes over ``households_coverage`` and ``households_tagged`` for what depends on
  "now", and the kept (branch, load) histogram of members.

Both give the same unit figures (``tests/test_coverage.py::
test_sql_unit_path_equals_the_member_path``). Service kinds come from the newest visit per
(grid, kind) and (grid, member, kind) that the writers of visits keep (migration
``0007_coverage_kinds``, ``gridsync/visits.py``).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils

from gridsync.clock import DAY_MS
from gridsync.config import Settings
from gridsync.coverage.members import member_sql
from gridsync.coverage.org_index import Home, OrgIndex, ReportUnits, report_units
from gridsync.coverage.policy import community_policies, judge_load
from gridsync.models import Policy
from gridsync.org import Scope
from gridsync.privacy import PhoneView, shown_phone


@dataclass(slots=True)
class Counts:
    """The figures of one grid, member or unit. ``mask``: the service kinds covered (bit i is
    ``Tally.kinds[i]``)."""

    households: int = 0
    assigned: int = 0
    contacted: int = 0
    by_responsible: int = 0  # contacted by their responsible member
    overdue: int = 0
    priority: int = 0
    priority_overdue: int = 0
    members: int = 0
    under: int = 0
    over: int = 0
    mask: int = 0
    group_only: int = 0  # contacted this cycle by group visits (楼栋会) only

    @property
    def others_only(self) -> int:
        """Assigned households contacted this cycle, but not by their responsible member (each
        assigned household is that, contacted by its member, or overdue)."""
        return self.assigned - self.overdue - self.by_responsible

    def households_only(self) -> Counts:
        """A copy with the household figures and service kinds (no members)."""
        return Counts(
            households=self.households,
            assigned=self.assigned,
            contacted=self.contacted,
            by_responsible=self.by_responsible,
            overdue=self.overdue,
            priority=self.priority,
            priority_overdue=self.priority_overdue,
            mask=self.mask,
            group_only=self.group_only,
        )

    def add(self, other: Counts) -> None:
        self.households += other.households
        self.assigned += other.assigned
        self.contacted += other.contacted
        self.by_responsible += other.by_responsible
        self.overdue += other.overdue
        self.priority += other.priority
        self.priority_overdue += other.priority_overdue
        self.group_only += other.group_only
        self.mask |= other.mask
        self.members += other.members
        self.under += other.under
        self.over += other.over


@dataclass(slots=True)
class MemberCounts:
    """The members whose home is one place: how many, how many under the minimum and over the
    cap."""

    members: int = 0
    under: int = 0
    over: int = 0

    def add(self, members: int, under: int, over: int) -> None:
        self.members += members
        self.under += under
        self.over += over


@dataclass(slots=True)
class Member:
    id: str
    name: str
    phone: str
    home: Home
    load: int = 0  # active households they are responsible for, anywhere
    under: bool = False  # load under their community's minimum
    over: bool = False  # load over their community's cap


def member_phone(phones: PhoneView, m: Member) -> str:
    """A member's own number as ``phones`` may read it: the rule of households
    (gridsync/privacy.py), read as a record of the member's home grid that the member is
    responsible for (the admin, their community's secretary, their grid's grid workers and the
    member themselves read it in full)."""
    return shown_phone(phones, m.phone, m.home.grid_id, m.id)


@dataclass(frozen=True, slots=True)
class PolicyGroup:
    """Grids whose communities share the numbers the household queries depend on."""

    cycle_days: int
    priority_cycle_days: int
    priority_tags: tuple[str, ...]
    grids: list[str] | None  # the grids read; None: every grid (no filter at all)
    group_counts_for_priority: bool = False

    @classmethod
    def of(cls, policy: Policy, grids: list[str] | None) -> PolicyGroup:
        return cls(
            policy.cycle_days,
            policy.priority_cycle_days,
            tuple(policy.priority_tags),
            grids,
            policy.group_contact_counts_for_priority,
        )

    def priority_contact(self) -> str:
        """The ``households`` column a priority household's cycle is judged by (by anyone):
        :func:`contact_column`."""
        return contact_column(self.group_counts_for_priority, True)

    def where(self) -> tuple[str, list[Any]]:
        return grid_filter(self.grids)

    def cycle_start(self, now_ms: int) -> int:
        return now_ms - self.cycle_days * DAY_MS

    def priority_start(self, now_ms: int) -> int:
        return now_ms - self.priority_cycle_days * DAY_MS

    def is_priority(self) -> str:
        return tag_match(self.priority_tags)


def is_priority(policy: Policy, tags: list[str] | tuple[str, ...]) -> bool:
    """Whether a household with ``tags`` is a priority household under ``policy`` (the Python
    spelling of :meth:`PolicyGroup.is_priority`)."""
    return not set(policy.priority_tags).isdisjoint(tags)


def contact_column(
    group_counts_for_priority: bool, priority: bool, *, by_responsible: bool = False
) -> str:
    """THE rule of group visits and priority households: the ``households`` column (kept by
    ``gridsync/visits.py``) a household's cycle is judged by. A group visit (楼栋会) is a
    contact of each of its households for the ordinary cycle; for a priority household's it
    counts only when the policy's ``group_contact_counts_for_priority`` says so, else the
    household needs a visit of its own (``last_single_visit_ms``). ``by_responsible``: only
    the visits of the household's responsible member count (the member's own contact, as
    the daily digest asks: :func:`member_contact`)."""
    alone = priority and not group_counts_for_priority
    if by_responsible:
        return "last_responsible_single_visit_ms" if alone else "last_responsible_visit_ms"
    return "last_single_visit_ms" if alone else "last_visit_ms"


# the kept times :func:`member_contact` chooses from, in this order
MEMBER_CONTACT_COLUMNS = ("last_responsible_visit_ms", "last_responsible_single_visit_ms")


def member_contact(
    policy: Policy, tags: list[str] | tuple[str, ...], kept: tuple[int | None, int | None]
) -> tuple[bool, int | None, int | None]:
    """Whether a household is due for its responsible member: ``(priority, last contact that
    counts, due_ms)`` from its tags and its kept times ``kept`` (the columns
    ``MEMBER_CONTACT_COLUMNS``, in that order), judged by :func:`is_priority`,
    :func:`contact_column` (a group visit counts for a priority household only when the
    policy says so, as the roll-up counts it) and :func:`due_ms`."""
    priority = is_priority(policy, tags)
    column = contact_column(policy.group_contact_counts_for_priority, priority, by_responsible=True)
    last = kept[MEMBER_CONTACT_COLUMNS.index(column)]
    return priority, last, due_ms(policy, priority, last)


def due_ms(policy: Policy, priority: bool, last_ms: int | None) -> int | None:
    """When a household contacted last at ``last_ms`` (None: never) is due again: its cycle
    after that contact (the priority cycle for a priority household); None when it is due
    already because it was never contacted. The household counts as not contacted (overdue,
    or priority overdue) once ``now`` is past it, as :func:`tally` counts it: ``last_ms <
    now - cycle`` is ``due_ms < now``."""
    if last_ms is None:
        return None
    return last_ms + (policy.priority_cycle_days if priority else policy.cycle_days) * DAY_MS


@dataclass
class Tally:
    """Everything one read of a scope gives its reports: the counts of every grid read and the
    members of every home reported on, either way; each member and their own counts only
    ``per_member``."""

    idx: OrgIndex
    scope_id: str | None
    now_ms: int
    units: frozenset[str]  # org units reported on
    grid_set: frozenset[str]  # the grids read
    grids: list[str] | None  # the grids read as a filter; None = every grid (district-wide)
    default: Policy  # the district default
    policies: dict[str, Policy]  # community id -> policy in force
    kinds: list[str]  # union of the service kinds in force (bit i = kinds[i])
    groups: list[PolicyGroup]  # the grids read, by policy numbers (none empty)
    per_member: bool
    grid_counts: dict[str | None, Counts] = field(default_factory=lambda: defaultdict(Counts))
    homes: dict[Home, MemberCounts] = field(default_factory=lambda: defaultdict(MemberCounts))
    members: dict[str, Member] = field(default_factory=dict)  # members reported on
    member_counts: dict[str, Counts] = field(default_factory=lambda: defaultdict(Counts))

    def policy_of_community(self, community_id: str | None) -> Policy:
        return self.policies.get(community_id or "", self.default)

    def policy_of_grid(self, grid_id: str | None) -> Policy:
        return self.policy_of_community(self.idx.community_of(grid_id))

    def reports(self, home: Home) -> bool:
        """Whether members of this home are counted in this report."""
        return home.branch_id in self.units or home.grid_id in self.grid_set


def tally(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None,
    now_ms: int,
    *,
    per_member: bool = True,
    with_kinds: bool = True,
    member_kinds: bool | None = None,
    by_grid: bool = True,
    idx: OrgIndex | None = None,
    scoped: ReportUnits | None = None,
) -> Tally:
    """One read of a scope (``unit_id``, default the reader's whole scope) at ``now_ms``.

    ``per_member``: households grouped by (grid, member) and every member judged one by one
    (member rows need them); otherwise the unit levels only, from the kept aggregates.
    ``with_kinds``: service kinds by grid, and by member when ``member_kinds`` (default: when
    member rows are shown by default, i.e. below street scope). ``by_grid=False`` (kept
    aggregates only, for the violations' counts): the "now" passes keep one total under grid
    None instead of one per grid (not grouping saves about a sixth of each pass). ``idx`` and
    ``scoped``: the org tree and report units when the caller has them already."""
    t = _frame(db, settings, scope, unit_id, now_ms, per_member, idx, scoped)
    if per_member:
        for group in t.groups:
            _count_by_member(db, t, group)
            _count_group_only(db, t, group, by_grid=True)
        _judge_members(db, t)
    else:
        for group in t.groups:
            _count_from_aggregates(db, t, group, by_grid)
            _count_group_only(db, t, group, by_grid=by_grid)
        _judge_homes(db, t, whole_district=scope.everything and unit_id is None)
    if with_kinds:
        by_cycle = _grids_by_cycle(t.groups, sorted(t.idx.grids()))
        _grid_kinds(db, t, by_cycle)
        if per_member and (member_kinds if member_kinds is not None else not t.idx.wide(t.units)):
            _member_kinds(db, t, by_cycle)
    return t


def _frame(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None,
    now_ms: int,
    per_member: bool,
    idx: OrgIndex | None,
    scoped: ReportUnits | None,
) -> Tally:
    """What every read shares: the units and grids, the policies in force, the union of their
    service kinds, and the grids split into policy groups; no counts yet."""
    idx = idx or OrgIndex.of(db)
    units, grid_set = scoped or report_units(idx, scope, unit_id)
    grids = None if grid_set == idx.grids() else sorted(grid_set)
    default, overridden = community_policies(db, settings)
    policies = {
        uid: overridden.get(uid, default) for uid, kind in idx.kind.items() if kind == "community"
    }
    kinds: list[str] = []
    for p in [default, *policies.values()]:
        kinds.extend(k for k in p.service_kinds if k not in kinds)
    return Tally(
        idx=idx,
        scope_id=unit_id,
        now_ms=now_ms,
        units=units,
        grid_set=grid_set,
        grids=grids,
        default=default,
        policies=policies,
        kinds=kinds,
        groups=policy_groups(idx, policies, grids, default),
        per_member=per_member,
    )


def policy_groups(
    idx: OrgIndex, policies: dict[str, Policy], grids: list[str] | None, default: Policy
) -> list[PolicyGroup]:
    """Split the grids read by policy numbers. The common case (no overrides, or a whole-
    district read whose overrides agree) is one group reading with no grid filter at all."""
    wanted = sorted(idx.grids()) if grids is None else grids
    if not wanted:
        return []
    if all(p is default or p == default for p in policies.values()):  # no overrides
        return [PolicyGroup.of(default, grids)]
    by_numbers: dict[tuple, tuple[Policy, list[str]]] = {}
    for grid in wanted:
        p = policies.get(idx.community_of(grid) or "", default)
        key = (
            p.cycle_days,
            p.priority_cycle_days,
            tuple(p.priority_tags),
            p.group_contact_counts_for_priority,
        )
        by_numbers.setdefault(key, (p, []))[1].append(grid)
    everything = grids is None and len(by_numbers) == 1
    return [PolicyGroup.of(p, None if everything else g) for p, g in by_numbers.values()]


def grid_filter(grids: list[str] | None, column: str = "grid_id") -> tuple[str, list[Any]]:
    """SQL true for the grids read (None: every grid, no filter), and its parameters."""
    if grids is None:
        return "1", []
    return f"{column} IN (SELECT value FROM json_each(?))", [msgspec.json.encode(grids).decode()]


def tag_match(tags: tuple[str, ...]) -> str:
    """SQL true when a household's JSON tags hold one of ``tags`` (exact, quoted match)."""
    if not tags:
        return "0"
    needles = " OR ".join(f"instr(tags, {_sql_str(msgspec.json.encode(t).decode())})" for t in tags)
    return f"(tags <> '[]' AND ({needles}))"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# -- household counts -------------------------------------------------------------------------


def _count_by_member(db: sqlite_utils.Database, t: Tally, group: PolicyGroup) -> None:
    """One group's households grouped by (grid, responsible member): into their grid's counts,
    and the assigned ones into their member's."""
    cond, params = group.where()
    prio, prio_last = group.is_priority(), group.priority_contact()
    rows = db.execute(
        f"""SELECT grid_id, responsible_member_id, count(*),
                   count(*) FILTER (WHERE last_visit_ms >= ?1),
                   count(*) FILTER (WHERE last_responsible_visit_ms >= ?1),
                   count(*) FILTER (WHERE {prio}),
                   count(*) FILTER (WHERE {prio} AND coalesce({prio_last}, 0) < ?2)
            FROM households INDEXED BY households_coverage
            WHERE status = 'active' AND {cond}
            GROUP BY grid_id, responsible_member_id""",
        [group.cycle_start(t.now_ms), group.priority_start(t.now_ms), *params],
    )
    grid_counts, member_counts = t.grid_counts, t.member_counts
    g = Counts()
    last_grid = None
    # a hot loop (one row per member at district scale): counts are added field by field
    for grid, member, n, contacted, by_responsible, prio_n, prio_overdue in rows:
        if grid != last_grid:  # rows come grid by grid (index order)
            g, last_grid = grid_counts[grid], grid
        g.households += n
        g.contacted += contacted
        g.priority += prio_n
        if member is None:
            continue
        overdue = n - contacted
        g.assigned += n
        g.by_responsible += by_responsible
        g.overdue += overdue
        g.priority_overdue += prio_overdue
        m = member_counts.get(member)
        if m is None:
            m = member_counts[member] = Counts()
        m.households += n
        m.assigned += n
        m.contacted += contacted
        m.by_responsible += by_responsible
        m.overdue += overdue
        m.priority += prio_n
        m.priority_overdue += prio_overdue


def _count_group_only(
    db: sqlite_utils.Database, t: Tally, group: PolicyGroup, *, by_grid: bool
) -> None:
    """Households of one group contacted this cycle by group visits (楼栋会) only: their
    newest contact is a group visit of the cycle and their newest visit alone is older. Read
    on the small partial index of households whose newest contact was a group visit
    (migration 0026); into their grid's counts (grid None when not ``by_grid``) and, on the
    per-member path, their responsible member's."""
    cond, params = group.where()
    for grid, member, n in db.execute(
        f"""SELECT grid_id, responsible_member_id, count(*)
            FROM households INDEXED BY households_group_contact
            WHERE status = 'active' AND last_visit_ms > coalesce(last_single_visit_ms, 0)
              AND last_visit_ms >= ?1 AND coalesce(last_single_visit_ms, 0) < ?1 AND {cond}
            GROUP BY grid_id, responsible_member_id""",
        [group.cycle_start(t.now_ms), *params],
    ):
        t.grid_counts[grid if by_grid else None].group_only += n
        m = t.member_counts.get(member) if member is not None else None
        if m is not None:
            m.group_only += n


def _count_from_aggregates(
    db: sqlite_utils.Database, t: Tally, group: PolicyGroup, by_grid: bool
) -> None:
    """One group's grid counts with no per-household row: households, assigned and priority
    households from the kept counts (a few rows per grid); then what depends on "now" from the
    households not visited by their responsible member within the cycle (only they pass the
    WHERE: the unassigned, the overdue, those contacted by others only) and,
    for priority overdue, only tagged ones, on their own index (``households_tagged``)."""
    cond, params = group.where()
    prio = group.is_priority()
    for grid, n, assigned, prio_n in db.execute(
        f"""SELECT grid_id, sum(households),
                   coalesce(sum(households) FILTER (WHERE assigned), 0),
                   coalesce(sum(households) FILTER (WHERE {prio}), 0)
            FROM coverage_grid_counts WHERE households > 0 AND {cond}
            GROUP BY grid_id""",
        params,
    ):
        acc = t.grid_counts[grid]
        acc.households, acc.assigned, acc.priority, acc.contacted = n, assigned, prio_n, n
        acc.by_responsible = assigned
    key, grouped = ("grid_id", "GROUP BY grid_id") if by_grid else ("NULL", "")
    # a household not contacted by its responsible member this cycle: the only ones that can
    # be not contacted at all (by anyone) are among them, as last_responsible_visit_ms is
    # never after last_visit_ms
    for grid, not_contacted, overdue, not_by_responsible in db.execute(
        f"""SELECT {key}, count(*) FILTER (WHERE coalesce(last_visit_ms, 0) < ?1),
                   count(responsible_member_id) FILTER (WHERE coalesce(last_visit_ms, 0) < ?1),
                   count(responsible_member_id)
            FROM households INDEXED BY households_coverage
            WHERE status = 'active' AND coalesce(last_responsible_visit_ms, 0) < ?1 AND {cond}
            {grouped}""",
        [group.cycle_start(t.now_ms), *params],
    ):
        acc = t.grid_counts[grid]
        acc.contacted -= not_contacted
        acc.overdue += overdue
        acc.by_responsible -= not_by_responsible
    if group.priority_tags:
        # ``tags <> '[]'`` is spelled out (``prio`` holds it too) so that the partial index
        # stays usable, and INDEXED BY cannot fail, whatever ``tag_match`` becomes
        for grid, prio_overdue in db.execute(
            f"""SELECT {key}, count(responsible_member_id)
                FROM households INDEXED BY households_tagged
                WHERE status = 'active' AND tags <> '[]'
                  AND coalesce({group.priority_contact()}, 0) < ? AND {prio} AND {cond}
                {grouped}""",
            [group.priority_start(t.now_ms), *params],
        ):
            t.grid_counts[grid].priority_overdue += prio_overdue


# -- members, judged and summed per home ------------------------------------------------------


def _judge_members(db: sqlite_utils.Database, t: Tally) -> None:
    """Every member of the report, one by one: their load, judged by their community's policy,
    and summed into their home."""
    t.members = _reported_members(db, t)
    loads = {pid: acc.households for pid, acc in t.member_counts.items()}
    if t.grids is not None and t.members:
        # A partial read may miss households a member holds in grids outside it.
        loads = dict(
            db.execute(
                "SELECT responsible_member_id, count(*) FROM households WHERE status = 'active' "
                "AND responsible_member_id IN (SELECT value FROM json_each(?)) GROUP BY 1",
                [msgspec.json.encode(sorted(t.members)).decode()],
            ).fetchall()
        )
    homes = t.homes
    judged: dict[tuple[str | None, int], tuple[bool, bool]] = {}  # few (community, load)
    for pid, m in t.members.items():
        load = m.load = loads.get(pid, 0)
        key = (m.home.community_id, load)
        judgement = judged.get(key)
        if judgement is None:
            judgement = judged[key] = judge_load(load, t.policy_of_community(key[0]))
        m.under, m.over = judgement
        count = homes[m.home]
        count.members += 1
        count.under += m.under
        count.over += m.over


def _reported_members(db: sqlite_utils.Database, t: Tally) -> dict[str, Member]:
    """The members (active people with the member role) whose home the report counts."""
    rows = db.execute(
        f"SELECT id, name, phone, branch_id FROM people WHERE {member_sql()}"
    ).fetchall()
    idx = t.idx
    home_grid = _home_grids(db, idx, [pid for pid, _, _, branch in rows if not branch])
    branch_homes: dict[str, Home | None] = {}  # a branch's home; None: not reported on
    members = {}
    for pid, name, phone, branch in rows:
        if branch:
            try:
                home = branch_homes[branch]
            except KeyError:
                home = idx.home(branch, None)
                home = branch_homes[branch] = home if t.reports(home) else None
        else:
            home = idx.home(branch, home_grid.get(pid))
            home = home if t.reports(home) else None
        if home is not None:
            members[pid] = Member(pid, name, phone, home)
    return members


def _judge_homes(db: sqlite_utils.Database, t: Tally, whole_district: bool) -> None:
    """Members per home with no per-member row, from the kept (branch, load) histogram: judged
    in SQL and summed per branch when one minimum and one cap hold everywhere, else judged per
    (branch, load); members without a branch (rare) one by one."""
    idx = t.idx
    if whole_district:
        branch_cond, params = "1", []
    else:
        branches = sorted(
            {u for u in t.units if idx.kind[u] == "branch"}
            | {b for b, g in idx.branch_grid.items() if g in t.grid_set}
        )
        branch_cond = "branch_id IN (SELECT value FROM json_each(?))"
        params = [msgspec.json.encode(branches).decode()]
    limits = {
        (p.min_households_per_member, p.max_households_per_member)
        for p in [t.default, *t.policies.values()]
    }
    if len(limits) == 1:
        ((low, high),) = limits
        for branch, members, under, over in db.execute(
            f"""SELECT branch_id, sum(members),
                       coalesce(sum(members) FILTER (WHERE households < ?), 0),
                       coalesce(sum(members) FILTER (WHERE households > ?), 0)
                FROM coverage_load_histogram WHERE members > 0 AND {branch_cond}
                GROUP BY branch_id""",
            [low, high, *params],
        ):
            home = idx.home(branch, None)
            if t.reports(home):
                t.homes[home].add(members, under, over)
    else:
        for branch, load, members in db.execute(
            f"""SELECT branch_id, households, members FROM coverage_load_histogram
                WHERE members > 0 AND {branch_cond}""",
            params,
        ):
            _add_judged(t, idx.home(branch, None), members, load)
    unbranched = db.execute(
        "SELECT person_id, households FROM coverage_members INDEXED BY coverage_members_load "
        "WHERE is_member = 1 AND branch_id IS NULL"
    ).fetchall()
    home_grid = _home_grids(db, idx, [pid for pid, _ in unbranched])
    for pid, load in unbranched:
        _add_judged(t, idx.home(None, home_grid.get(pid)), 1, load)


def _add_judged(t: Tally, home: Home, members: int, load: int) -> None:
    """``members`` members of one home, each holding ``load`` households."""
    if t.reports(home):
        under, over = judge_load(load, t.policy_of_community(home.community_id))
        t.homes[home].add(members, members * under, members * over)


def _home_grids(db: sqlite_utils.Database, idx: OrgIndex, person_ids: list[str]) -> dict[str, str]:
    """Rare: a member without a branch lives in the first grid of their scope."""
    home: dict[str, str] = {}
    if not person_ids:
        return home
    for pid, uid in db.execute(
        "SELECT person_id, unit_id FROM person_scope WHERE person_id IN "
        "(SELECT value FROM json_each(?)) ORDER BY person_id, unit_id",
        [msgspec.json.encode(person_ids).decode()],
    ):
        if idx.kind.get(uid) == "grid":
            home.setdefault(pid, uid)
    return home


# -- service kinds ----------------------------------------------------------------------------

_kinds_decoder = msgspec.json.Decoder(list[str])


def _grids_by_cycle(groups: list[PolicyGroup], all_grids: list[str]) -> dict[int, list[str] | None]:
    """The grids read, by cycle length (None: every grid, one cycle)."""
    if len(groups) == 1 and groups[0].grids is None:
        return {groups[0].cycle_days: None}
    by_cycle: dict[int, list[str]] = {}
    for group in groups:
        by_cycle.setdefault(group.cycle_days, []).extend(
            all_grids if group.grids is None else group.grids
        )
    return {cycle: grids for cycle, grids in by_cycle.items()}


def _grid_kinds(db: sqlite_utils.Database, t: Tally, by_cycle: dict[int, list[str] | None]) -> None:
    """Which kinds each grid's visits covered this cycle: the kept newest visit per (grid, kind)
    (``gridsync/visits.py``) at or after the cycle's start."""
    covered = _covered(db, t, by_cycle, "coverage_grid_kinds", "grid_id", "grid_id")
    for grid, mask in covered.items():
        t.grid_counts[grid].mask |= mask


def _member_kinds(
    db: sqlite_utils.Database, t: Tally, by_cycle: dict[int, list[str] | None]
) -> None:
    """Which kinds each member's visits covered this cycle, in the grids read: the kept newest
    visit per (grid, member, kind)."""
    covered = _covered(db, t, by_cycle, "coverage_member_kinds", "member_id", "grid_id, member_id")
    for member, mask in covered.items():
        if mask:
            t.member_counts[member].mask |= mask


def _covered(
    db: sqlite_utils.Database,
    t: Tally,
    by_cycle: dict[int, list[str] | None],
    table: str,
    key: str,
    group_by: str,
) -> dict[str, int]:
    """key -> the mask of the kinds covered, from the rows of a kept kinds table grouped by
    ``group_by``, each cycle's grids counted from their own cycle start. The kinds come as a
    JSON list per row; there are few distinct lists, so each list's mask is computed once."""
    bit = {k: 1 << i for i, k in enumerate(t.kinds)}
    masks: dict[str, int] = {}
    covered: dict[str, int] = {}
    for cycle_days, grids in by_cycle.items():
        cond, params = grid_filter(grids)
        for subject, raw in db.execute(
            f"SELECT {key}, json_group_array(kind) FROM {table} "
            f"WHERE {cond} AND last_ms >= ? GROUP BY {group_by}",
            [*params, t.now_ms - cycle_days * DAY_MS],
        ):
            mask = masks.get(raw)
            if mask is None:
                mask = masks[raw] = sum(bit.get(k, 0) for k in set(_kinds_decoder.decode(raw)))
            covered[subject] = covered.get(subject, 0) | mask
    return covered

"""The 1-5-N contact coverage rule (SPEC section 4, DOMAIN.md): policy, assignments, roll-ups,
violations, rebalancing suggestions and the assessors' sample.

Definitions (the README repeats them for users):

- A household counts when its ``status`` is ``active``. It is *contacted this cycle* when its
  ``last_visit_ms`` is at or after ``now - cycle_days``; *overdue* when it has a responsible
  member and was not contacted this cycle (an unassigned household is an ``unassigned``
  violation instead); *priority overdue* when it carries a priority tag, has a responsible
  member and was not contacted within ``priority_cycle_days``.
- A *member* is an active person with the ``member`` role. Their home is their party branch
  (and the branch's grid and community). Their load is the number of active households they are
  responsible for; under the minimum and over the cap are judged by their community's policy.
- Levels: member -> branch -> grid -> community -> street -> district.
  Service kinds covered: the distinct configured kinds among this cycle's non-voided visits, by
  the member who made them (member level) or by the visit's grid (grid and above). A branch
  has its grid's households and kinds (a branch maps to one grid) and its own members.

Unit levels (no member rows) read the aggregates the triggers of migration
``0005_coverage_aggregates`` keep (per-grid household counts by tags, per-member loads) plus
one pass over the covering partial index ``households_coverage`` for the counts that depend on
"now". Service kinds come from the newest visit per (grid, kind) and (grid, member, kind)
that the writers of visits keep (migration ``0007_coverage_kinds``, ``service_kinds.py``).
Member rows read active households once (``GROUP BY grid_id, responsible_member_id``).
Everything above grid and member is summed in Python from those groups.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils
from msgspec import UNSET

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import CoveragePolicy, Settings
from gridsync.db import epoch, next_seq
from gridsync.errors import Conflict, Forbidden, Invalid, NotFound, OutOfScope
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.models import COVERAGE_LEVELS as LEVELS
from gridsync.models import (
    VIOLATION_KINDS,
    ApplyOutcome,
    ApplyResult,
    Assignment,
    CommunityPolicy,
    CoverageReport,
    CoverageRow,
    Policy,
    PolicyOverride,
    RebalancePlan,
    Sample,
    SampledHousehold,
    Suggestion,
    SuggestionPick,
    Violation,
    ViolationPage,
)
from gridsync.org import Scope, resolve_scope
from gridsync.privacy import PhoneView, shown_phone

DAY_MS = 86_400_000

UNIT_LEVELS = ("branch", "grid", "community", "street", "district")
HOUSEHOLD_VIOLATIONS = ("unassigned", "overdue", "priority_overdue")

# Who may assign households: secretaries and admins, each within their scope.
ASSIGNER_ROLES = ("admin", "street", "community_secretary", "branch_secretary")
# Who may be a household's responsible member (the "1" of 1-5-N).
RESPONSIBLE_ROLE = "member"

# -- labels (user-facing: Chinese by default) -------------------------------------------------

LEVEL_LABELS = {
    "zh": {
        "member": "成员",
        "branch": "党支部",
        "grid": "网格",
        "community": "社区",
        "street": "街道",
        "district": "区",
    },
    "en": {
        "member": "member",
        "branch": "branch",
        "grid": "grid",
        "community": "community",
        "street": "street",
        "district": "district",
    },
}
KIND_LABELS = {
    "zh": {
        "policy": "政策宣传",
        "opinion": "收集意见建议",
        "hardship": "帮困解难",
        "safety": "安全隐患排查",
        "dispute": "矛盾纠纷调解",
        "environment": "环境卫生",
    },
    "en": {
        "policy": "policy publicity",
        "opinion": "opinions",
        "hardship": "hardship help",
        "safety": "safety check",
        "dispute": "dispute mediation",
        "environment": "environment",
    },
}
VIOLATION_LABELS = {
    "zh": {
        "unassigned": "未落实联系党员",
        "overdue": "本周期未走访",
        "priority_overdue": "重点户逾期未走访",
        "member_under_min": "联系户数不足",
        "member_over_cap": "联系户数超上限",
    },
    "en": {
        "unassigned": "unassigned",
        "overdue": "overdue",
        "priority_overdue": "priority overdue",
        "member_under_min": "member under minimum",
        "member_over_cap": "member over cap",
    },
}


def label(table: dict[str, dict[str, str]], lang: str, key: str) -> str:
    return table.get(lang, table["zh"]).get(key, key)


# -- policy -----------------------------------------------------------------------------------

_override_decoder = msgspec.json.Decoder(dict[str, Any])


def default_policy(settings: Settings) -> Policy:
    return msgspec.convert(msgspec.structs.asdict(settings.coverage), Policy)


def _merge(settings: Settings, override: dict[str, Any] | None) -> Policy:
    data = msgspec.structs.asdict(settings.coverage)
    data.update(override or {})
    return msgspec.convert(data, Policy)


def _validate(policy: Policy) -> None:
    if policy.min_households_per_member > policy.max_households_per_member:
        raise Invalid(
            "min_households_per_member must not exceed max_households_per_member",
            field="min_households_per_member",
        )
    if policy.priority_cycle_days > policy.cycle_days:
        raise Invalid("priority_cycle_days must not exceed cycle_days", field="priority_cycle_days")
    for name in ("service_kinds", "priority_tags"):
        values = getattr(policy, name)
        if len(set(values)) != len(values):
            raise Invalid(f"{name} has duplicates", field=name)
    if not policy.service_kinds:
        raise Invalid("service_kinds must not be empty", field="service_kinds")


def _require_community(db: sqlite_utils.Database, community_id: str) -> None:
    row = db.execute("SELECT kind FROM org_units WHERE id = ?", [community_id]).fetchone()
    if row is None or row[0] != "community":
        raise NotFound(f"no community {community_id}")


def load_overrides(db: sqlite_utils.Database) -> dict[str, dict[str, Any]]:
    return {
        cid: _override_decoder.decode(raw)
        for cid, raw in db.execute(
            "SELECT community_id, override FROM coverage_policies WHERE override IS NOT NULL"
        )
    }


def community_policies(
    db: sqlite_utils.Database, settings: Settings
) -> tuple[Policy, dict[str, Policy]]:
    """The district default, and the policy of every community that overrides it."""
    return default_policy(settings), {
        cid: _merge(settings, override) for cid, override in load_overrides(db).items()
    }


def longest_cycle_days(db: sqlite_utils.Database, settings: Settings, scope: Scope) -> int:
    """The longest visit cycle among the communities of a scope (their own policies, else the
    district default). Phones keep the visits of the current and previous cycle (SPEC 3.2), so a
    pull sends visits of twice this many days."""
    default, by_community = community_policies(db, settings)
    if not by_community:
        return default.cycle_days
    if scope.everything:
        communities = {
            r[0] for r in db.execute("SELECT id FROM org_units WHERE kind = 'community'")
        }
    else:
        communities = {
            r[0]
            for r in db.execute(
                "SELECT DISTINCT parent_id FROM org_units WHERE id IN (SELECT value FROM json_each(?))",
                [msgspec.json.encode(sorted(scope.grid_ids)).decode()],
            )
            if r[0]
        }
    return max(
        (by_community.get(c, default).cycle_days for c in communities), default=default.cycle_days
    )


def policy_for(db: sqlite_utils.Database, settings: Settings, community_id: str) -> Policy:
    """The policy in force for a community: the district default with its override on top."""
    _require_community(db, community_id)
    row = db.execute(
        "SELECT override FROM coverage_policies WHERE community_id = ?", [community_id]
    ).fetchone()
    return _merge(settings, _override_decoder.decode(row[0]) if row and row[0] else None)


def service_kinds_of_grids(
    db: sqlite_utils.Database, settings: Settings, grid_ids: set[str]
) -> dict[str, frozenset[str]]:
    """The service kinds a visit may record, per grid whose community overrides them (other
    grids follow the district default, ``settings.coverage.service_kinds``)."""
    if not grid_ids:
        return {}
    return {
        grid: frozenset(msgspec.json.decode(kinds))
        for grid, kinds in db.execute(
            "SELECT o.id, json_extract(p.override, '$.service_kinds') FROM org_units o "
            "JOIN coverage_policies p ON p.community_id = o.parent_id "
            "WHERE o.id IN (SELECT value FROM json_each(?)) "
            "AND json_extract(p.override, '$.service_kinds') IS NOT NULL",
            [msgspec.json.encode(sorted(grid_ids)).decode()],
        )
    }


def policy_of_scope(db: sqlite_utils.Database, settings: Settings, scope: Scope) -> Policy:
    """The policy a person works under: their community's (the community of their first grid,
    or the first community their scope names); the district default for wider scopes."""
    if not scope.everything:
        grids = sorted(scope.grid_ids)
        row = None
        if grids:
            row = db.execute("SELECT parent_id FROM org_units WHERE id = ?", [grids[0]]).fetchone()
        if row is None:
            row = db.execute(
                "SELECT id FROM org_units WHERE kind = 'community' AND id IN "
                "(SELECT value FROM json_each(?)) ORDER BY id LIMIT 1",
                [msgspec.json.encode(sorted(scope.unit_ids)).decode()],
            ).fetchone()
        if row is not None and row[0]:
            return policy_for(db, settings, row[0])
    return default_policy(settings)


def community_policy(
    db: sqlite_utils.Database, settings: Settings, community_id: str
) -> CommunityPolicy:
    _require_community(db, community_id)
    row = db.execute(
        "SELECT override FROM coverage_policies WHERE community_id = ?", [community_id]
    ).fetchone()
    override = _override_decoder.decode(row[0]) if row and row[0] else {}
    return CommunityPolicy(
        community_id=community_id, policy=_merge(settings, override), overridden=sorted(override)
    )


def _put_policy_row(
    db: sqlite_utils.Database, community_id: str, override: str | None, actor: Actor, clock: Clock
) -> None:
    db.execute(
        "INSERT INTO coverage_policies (community_id, override, seq, updated_at, updated_by) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT(community_id) DO UPDATE SET "
        "override = excluded.override, seq = excluded.seq, updated_at = excluded.updated_at, "
        "updated_by = excluded.updated_by",
        [community_id, override, next_seq(db), iso_ms(clock.now_ms()), actor.person_id],
    )


def set_policy(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    community_id: str,
    override: PolicyOverride,
    clock: Clock = SYSTEM_CLOCK,
) -> CommunityPolicy:
    """Replace a community's override (validated against the default it overrides)."""
    _require_community(db, community_id)
    fields = {k: v for k, v in msgspec.structs.asdict(override).items() if v is not UNSET}
    _validate(_merge(settings, fields))
    _put_policy_row(db, community_id, msgspec.json.encode(fields).decode(), actor, clock)
    audit.record(db, actor, "coverage.policy.set", target=community_id, detail=fields, clock=clock)
    return community_policy(db, settings, community_id)


def clear_policy(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    community_id: str,
    clock: Clock = SYSTEM_CLOCK,
) -> CommunityPolicy:
    """Drop a community's override: the district default applies again (and is re-sent)."""
    _require_community(db, community_id)
    _put_policy_row(db, community_id, None, actor, clock)
    audit.record(db, actor, "coverage.policy.clear", target=community_id, clock=clock)
    return community_policy(db, settings, community_id)


def republish_policies(db: sqlite_utils.Database, actor: Actor, clock: Clock = SYSTEM_CLOCK) -> int:
    """Give every community's policy a new seq, so phones fetch it again (done by
    :func:`publish_default` when the configured district default changes)."""
    rows = db.execute(
        "SELECT o.id, p.override FROM org_units o LEFT JOIN coverage_policies p "
        "ON p.community_id = o.id WHERE o.kind = 'community'"
    ).fetchall()
    for community_id, override in rows:
        _put_policy_row(db, community_id, override, actor, clock)
    audit.record(
        db, actor, "coverage.policy.republish", detail={"communities": len(rows)}, clock=clock
    )
    return len(rows)


_default_decoder = msgspec.json.Decoder(CoveragePolicy)


def stored_default(db: sqlite_utils.Database) -> CoveragePolicy:
    """The district default last published into this database (the configured one at startup)."""
    row = db.execute("SELECT value FROM meta WHERE key = 'coverage_default'").fetchone()
    return _default_decoder.decode(row[0]) if row else CoveragePolicy()


def publish_default(
    db: sqlite_utils.Database, policy: CoveragePolicy, actor: Actor, clock: Clock = SYSTEM_CLOCK
) -> bool:
    """Store the configured district default; when it changed, republish every community's
    policy so phones pull it again. Run at startup (``create_app``'s lifespan). Returns whether
    it changed."""
    encoded = msgspec.json.encode(policy).decode()
    row = db.execute("SELECT value FROM meta WHERE key = 'coverage_default'").fetchone()
    if row is not None and row[0] == encoded:
        return False
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('coverage_default', ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [encoded],
    )
    if row is not None:
        republish_policies(db, actor, clock)
    return True


def changed_policies(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[tuple[int, str, Policy]]:
    """(seq, community id, effective Policy) of the communities of the scope (those the scope
    names, or whose grids it holds) with ``after_seq < seq <= upto_seq``, by seq, at most
    ``limit``: what the pull source ``policy`` (``gridsync/sync/policy.py``) sends.

    The seq is the larger of the community unit's seq and its override row's seq, so an
    initial sync (after_seq 0) sends every in-scope community's policy, and setting or clearing
    an override (new seq on its row) sends that community's effective policy again.
    """
    if scope.everything:
        cond, params = "1", []
    else:
        units = msgspec.json.encode(sorted(scope.unit_ids)).decode()
        grids = msgspec.json.encode(sorted(scope.grid_ids)).decode()
        cond = (
            "(o.id IN (SELECT value FROM json_each(?)) OR o.id IN (SELECT parent_id FROM "
            "org_units WHERE id IN (SELECT value FROM json_each(?))))"
        )
        params = [units, grids]
    rows = db.execute(
        f"""SELECT * FROM (
              SELECT o.id, max(o.seq, coalesce(p.seq, 0)) AS s, p.override
              FROM org_units o LEFT JOIN coverage_policies p ON p.community_id = o.id
              WHERE o.kind = 'community' AND {cond})
            WHERE s > ? AND s <= ? ORDER BY s LIMIT ?""",
        [*params, after_seq, upto_seq, limit],
    ).fetchall()
    district = Settings(coverage=stored_default(db))
    return [
        (s, cid, _merge(district, _override_decoder.decode(raw) if raw else None))
        for cid, s, raw in rows
    ]


# -- the org tree, loaded once per report -----------------------------------------------------


@dataclass
class OrgIndex:
    kind: dict[str, str]
    name: dict[str, str]
    parent: dict[str, str | None]
    branch_grid: dict[str, str | None]
    grid_branch: dict[str, str]  # a grid's branch (the smallest id when several map to it)
    children: dict[str, list[str]]
    communities: dict[str | None, str | None] = field(default_factory=dict)  # memo
    _bottom_up: list[str] | None = None  # memo
    _everything: tuple[frozenset[str], frozenset[str]] | None = None  # memo: _scope_units
    _grids: frozenset[str] | None = None  # memo

    @classmethod
    def of(cls, db: sqlite_utils.Database) -> OrgIndex:
        """The org tree of ``db``, loaded once per version of it: every org unit write gives
        the unit a new change ``seq`` (phones receive units), so (database file, epoch, newest
        seq, count) names one version. Treat the index as read-only (its memo aside)."""
        (path,) = [r[2] for r in db.execute("PRAGMA database_list") if r[1] == "main"]
        newest, count = db.execute("SELECT max(seq), count(*) FROM org_units").fetchone()
        key = (path, epoch(db))
        version = (newest, count)
        hit = _ORG_INDEXES.get(key)
        if hit is not None and hit[0] == version:
            return hit[1]
        idx = cls.load(db)
        if path:  # not for in-memory databases, which share the empty path
            with _ORG_INDEXES_LOCK:
                while len(_ORG_INDEXES) >= 8:
                    _ORG_INDEXES.pop(next(iter(_ORG_INDEXES)))
                _ORG_INDEXES[key] = (version, idx)
        return idx

    @classmethod
    def load(cls, db: sqlite_utils.Database) -> OrgIndex:
        idx = cls({}, {}, {}, {}, {}, defaultdict(list))
        for uid, kind, name, parent, grid in db.execute(
            "SELECT id, kind, name, parent_id, grid_id FROM org_units ORDER BY id"
        ):
            idx.kind[uid], idx.name[uid], idx.parent[uid] = kind, name, parent
            if parent:
                idx.children[parent].append(uid)
            if kind == "branch":
                idx.branch_grid[uid] = grid
                if grid and grid not in idx.grid_branch:
                    idx.grid_branch[grid] = uid
        return idx

    def chain(self, unit_id: str | None) -> list[str]:
        """The unit and its ancestors, nearest first."""
        out = []
        while unit_id is not None and unit_id in self.kind:
            out.append(unit_id)
            unit_id = self.parent[unit_id]
        return out

    def community_of(self, unit_id: str | None) -> str | None:
        """The community at or above a unit (memoised: each unit is resolved once, from its
        parent's answer)."""
        try:
            return self.communities[unit_id]
        except KeyError:
            pass
        kind = self.kind.get(unit_id)  # type: ignore[arg-type]
        if kind is None:
            found = None
        elif kind == "community":
            found = unit_id
        else:
            found = self.community_of(self.parent[unit_id])  # type: ignore[index]
        self.communities[unit_id] = found
        return found

    def grids(self) -> frozenset[str]:
        if self._grids is None:
            self._grids = frozenset(u for u, k in self.kind.items() if k == "grid")
        return self._grids

    def bottom_up(self) -> list[str]:
        """Every unit of the administrative tree (not branches), children before parents."""
        if self._bottom_up is None:
            depth: dict[str, int] = {}
            for uid in self.kind:
                if self.kind[uid] != "branch":
                    depth[uid] = len(self.chain(uid))
            self._bottom_up = sorted(depth, key=depth.__getitem__, reverse=True)
        return self._bottom_up

    def below(self, unit_id: str) -> set[str]:
        out, stack = set(), [unit_id]
        while stack:
            uid = stack.pop()
            if uid not in out:
                out.add(uid)
                stack.extend(self.children.get(uid, ()))
        return out


# (database file, epoch) -> ((newest org unit seq, count), its OrgIndex); a few databases
_ORG_INDEXES: dict[tuple[str, str], tuple[tuple[int | None, int], OrgIndex]] = {}
_ORG_INDEXES_LOCK = threading.Lock()


@dataclass(slots=True)
class _Member:
    id: str
    name: str
    phone: str
    branch_id: str | None
    grid_id: str | None
    community_id: str | None


@dataclass(slots=True)
class _Acc:
    households: int = 0
    assigned: int = 0
    contacted: int = 0
    overdue: int = 0
    priority: int = 0
    priority_overdue: int = 0
    members: int = 0
    under: int = 0
    over: int = 0
    mask: int = 0

    def add_households(self, other: _Acc) -> None:
        """Add another accumulator's household figures and service kinds (not its members)."""
        self.households += other.households
        self.assigned += other.assigned
        self.contacted += other.contacted
        self.overdue += other.overdue
        self.priority += other.priority
        self.priority_overdue += other.priority_overdue
        self.mask |= other.mask

    def households_only(self) -> _Acc:
        """A copy with the household figures and service kinds (no members)."""
        return _Acc(
            self.households,
            self.assigned,
            self.contacted,
            self.overdue,
            self.priority,
            self.priority_overdue,
            0,
            0,
            0,
            self.mask,
        )

    def add(self, other: _Acc) -> None:
        self.add_households(other)
        self.members += other.members
        self.under += other.under
        self.over += other.over


@dataclass
class _PolicyGroup:
    """Communities sharing the numbers that the household and visit queries depend on."""

    cycle_days: int
    priority_cycle_days: int
    priority_tags: tuple[str, ...]
    grids: list[str] = field(default_factory=list)


@dataclass
class Tally:
    """Everything one read of households (and optionally visits) gives a report."""

    idx: OrgIndex
    scope_id: str | None
    now_ms: int
    units: frozenset[str]  # org units reported on
    grids: list[str] | None  # the grids read; None = every grid (district-wide read)
    default: Policy  # the district default
    policies: dict[str, Policy]  # community id -> policy
    kinds: list[str]  # union of the service kinds in force (bit i = kinds[i])
    members: dict[str, _Member]  # members reported on
    grid_acc: dict[str, _Acc]
    member_acc: dict[str, _Acc]  # members' households (in the grids read), visits' kinds
    unassigned_by_grid: dict[str, _Acc]
    load: dict[str, int]  # member -> active households (everywhere)
    # (branch, grid, community) -> [members, under min, over cap], when computed in SQL
    homes: dict[tuple[str | None, str | None, str | None], list[int]] | None = None
    groups: list[tuple[_PolicyGroup, list[str] | None]] | None = None  # the grids read by policy

    def policy_of_grid(self, grid_id: str | None) -> Policy:
        return self.policies.get(self.idx.community_of(grid_id) or "", self.default)


def _scope_units(
    idx: OrgIndex, scope: Scope, unit_id: str | None
) -> tuple[frozenset[str], frozenset[str]]:
    """The org units a report covers and the grids it reads, within the caller's scope."""
    if unit_id is not None:
        if unit_id not in idx.kind:
            raise NotFound(f"no org unit {unit_id}")
        if not scope.allows_unit(unit_id) and not (
            idx.kind[unit_id] == "grid" and scope.allows_grid(unit_id)
        ):
            raise OutOfScope(f"org unit {unit_id} is outside your scope")
        units = idx.below(unit_id)
    elif scope.everything:
        if idx._everything is None:  # the same for every whole-district read of this tree
            idx._everything = _scope_units_of(idx, scope, set(idx.kind))
        return idx._everything
    else:
        units = set(scope.unit_ids) | set(scope.grid_ids)
    return _scope_units_of(idx, scope, units)


def _scope_units_of(
    idx: OrgIndex, scope: Scope, units: set[str]
) -> tuple[frozenset[str], frozenset[str]]:
    units = {u for u in units if idx.kind[u] != "department"}
    for uid in list(units):  # a branch's report includes its grid
        grid = idx.branch_grid.get(uid)
        if grid and scope.allows_grid(grid):
            units.add(grid)
    grids = {u for u in units if idx.kind[u] == "grid" and scope.allows_grid(u)}
    return frozenset(units), frozenset(grids)


def _policies(db: sqlite_utils.Database, settings: Settings, idx: OrgIndex) -> dict[str, Policy]:
    overrides = load_overrides(db)
    default = default_policy(settings)
    return {
        uid: _merge(settings, overrides[uid]) if uid in overrides else default
        for uid, kind in idx.kind.items()
        if kind == "community"
    }


def _tag_expr(tags: tuple[str, ...]) -> str:
    """SQL true when a household's JSON tags hold one of ``tags`` (exact, quoted match)."""
    if not tags:
        return "0"
    needles = " OR ".join(f"instr(tags, {_sql_str(msgspec.json.encode(t).decode())})" for t in tags)
    return f"(tags <> '[]' AND ({needles}))"


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _grid_cond(grids: list[str] | None, column: str = "grid_id") -> tuple[str, list[Any]]:
    if grids is None:
        return "1", []
    return f"{column} IN (SELECT value FROM json_each(?))", [msgspec.json.encode(grids).decode()]


def _groups(
    idx: OrgIndex, policies: dict[str, Policy], grids: list[str] | None, default: Policy
) -> list[tuple[_PolicyGroup, list[str] | None]]:
    """Split the grids read by policy numbers. The common case (no overrides, or a whole-
    district read whose overrides agree) is one group reading with no grid filter at all."""
    all_grids = sorted(idx.grids())
    wanted = all_grids if grids is None else grids
    if all(p is default or p == default for p in policies.values()):  # no overrides
        key = (default.cycle_days, default.priority_cycle_days, tuple(default.priority_tags))
        return [(_PolicyGroup(*key, grids=list(wanted)), None if grids is None else grids)]
    by_key: dict[tuple, _PolicyGroup] = {}
    for grid in wanted:
        p = policies.get(idx.community_of(grid) or "", default)
        key = (p.cycle_days, p.priority_cycle_days, tuple(p.priority_tags))
        by_key.setdefault(key, _PolicyGroup(*key)).grids.append(grid)
    out: list[tuple[_PolicyGroup, list[str] | None]] = []
    for group in by_key.values():
        everything = grids is None and len(by_key) == 1
        out.append((group, None if everything else group.grids))
    return out


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


def _load_members(db: sqlite_utils.Database, idx: OrgIndex) -> dict[str, _Member]:
    members: dict[str, _Member] = {}
    rows = db.execute(
        "SELECT id, name, phone, branch_id FROM people WHERE active = 1 AND instr(roles, ?) > 0",
        [msgspec.json.encode(RESPONSIBLE_ROLE).decode()],
    ).fetchall()
    home = _home_grids(db, idx, [r[0] for r in rows if not r[3]])
    places: dict[tuple[str | None, str | None], str | None] = {}
    for pid, name, phone, branch in rows:
        grid = idx.branch_grid.get(branch) if branch else home.get(pid)
        key = (branch, grid)
        if key not in places:
            places[key] = idx.community_of(branch) if branch else idx.community_of(grid)
        members[pid] = _Member(pid, name, phone, branch, grid, places[key])
    return members


def member_phone(phones: PhoneView, m: _Member) -> str:
    """A member's own number as ``phones`` may read it: the rule of households
    (gridsync/privacy.py), read as a record of the member's home grid that the member is
    responsible for (the admin, their community's secretary, their grid's grid workers and the
    member themselves read it in full)."""
    return shown_phone(phones, m.phone, m.grid_id, m.id)


def _wide(idx: OrgIndex, units: set[str]) -> bool:
    return any(idx.kind[u] in ("street", "district") for u in units)


def tally(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None,
    now_ms: int,
    *,
    with_kinds: bool = True,
    member_kinds: bool | None = None,
) -> Tally:
    """One read of a scope: households grouped by (grid, member), members, and (``with_kinds``)
    service kinds by grid, and by member when ``member_kinds`` (default: when member rows are
    shown by default, i.e. below street scope)."""
    idx = OrgIndex.of(db)
    units, grid_set = _scope_units(idx, scope, unit_id)
    all_grids = idx.grids()
    grids = None if grid_set == all_grids else sorted(grid_set)
    policies = _policies(db, settings, idx)
    kinds: list[str] = []
    for p in [default_policy(settings), *policies.values()]:
        kinds.extend(k for k in p.service_kinds if k not in kinds)

    grid_acc: dict[str, _Acc] = defaultdict(_Acc)
    member_acc: dict[str, _Acc] = defaultdict(_Acc)
    unassigned: dict[str, _Acc] = defaultdict(_Acc)
    default = default_policy(settings)
    groups = _groups(idx, policies, grids, default)
    for group, group_grids in groups:
        if group_grids is not None and not group_grids:
            continue
        cond, params = _grid_cond(group_grids)
        prio = _tag_expr(group.priority_tags)
        cycle_start = now_ms - group.cycle_days * DAY_MS
        prio_start = now_ms - group.priority_cycle_days * DAY_MS
        rows = db.execute(
            f"""SELECT grid_id, responsible_member_id, count(*),
                       count(*) FILTER (WHERE last_visit_ms >= ?),
                       count(*) FILTER (WHERE {prio}),
                       count(*) FILTER (WHERE {prio} AND coalesce(last_visit_ms, 0) < ?)
                FROM households INDEXED BY households_coverage
                WHERE status = 'active' AND {cond}
                GROUP BY grid_id, responsible_member_id""",
            [cycle_start, prio_start, *params],
        )
        g = None
        last_grid = None
        for grid, member, n, contacted, prio_n, prio_overdue in rows:
            if grid != last_grid:  # rows come grid by grid (index order)
                g, last_grid = grid_acc[grid], grid
            g.households += n
            g.contacted += contacted
            g.priority += prio_n
            if member is None:
                u = unassigned[grid]
                u.households += n
                u.contacted += contacted
                u.priority += prio_n
                continue
            g.assigned += n
            g.overdue += n - contacted
            g.priority_overdue += prio_overdue
            m = member_acc.get(member)
            if m is None:  # most members hold households in one grid only
                member_acc[member] = _Acc(n, n, contacted, n - contacted, prio_n, prio_overdue)
                continue
            m.households += n
            m.assigned += n
            m.contacted += contacted
            m.overdue += n - contacted
            m.priority += prio_n
            m.priority_overdue += prio_overdue

    all_members = _load_members(db, idx)
    members = {
        pid: m
        for pid, m in all_members.items()
        if (m.branch_id in units) or (m.grid_id in grid_set)
    }
    load = {pid: acc.households for pid, acc in member_acc.items()}
    if grids is not None and members:
        # A partial read may miss households a member holds in grids outside it.
        load = dict(
            db.execute(
                "SELECT responsible_member_id, count(*) FROM households WHERE status = 'active' "
                "AND responsible_member_id IN (SELECT value FROM json_each(?)) GROUP BY 1",
                [msgspec.json.encode(sorted(members)).decode()],
            ).fetchall()
        )

    if with_kinds:
        by_cycle = _cycle_grids(groups, sorted(all_grids))
        _grid_kinds(db, by_cycle, kinds, now_ms, grid_acc)
        if member_kinds if member_kinds is not None else not _wide(idx, units):
            _member_kinds(db, by_cycle, kinds, now_ms, member_acc)
    return Tally(
        idx=idx,
        scope_id=unit_id,
        now_ms=now_ms,
        units=units,
        grids=grids,
        default=default,
        policies=policies,
        kinds=kinds,
        members=members,
        grid_acc=grid_acc,
        member_acc=member_acc,
        unassigned_by_grid=unassigned,
        load=load,
        groups=groups,
    )


_kinds_decoder = msgspec.json.Decoder(list[str])


def _cycle_grids(
    groups: list[tuple[_PolicyGroup, list[str] | None]], all_grids: list[str]
) -> dict[int, list[str] | None]:
    """The grids read, by cycle length (None: every grid, one cycle)."""
    if len(groups) == 1 and groups[0][1] is None:
        return {groups[0][0].cycle_days: None}
    by_cycle: dict[int, list[str] | None] = {}
    for group, group_grids in groups:
        by_cycle.setdefault(group.cycle_days, []).extend(  # type: ignore[union-attr]
            all_grids if group_grids is None else group_grids
        )
    return by_cycle


def _grid_kinds(
    db: sqlite_utils.Database,
    by_cycle: dict[int, list[str] | None],
    kinds: list[str],
    now_ms: int,
    grid_acc: dict[str, _Acc],
) -> None:
    """Which kinds each grid's visits covered this cycle: the kept newest visit per (grid, kind)
    (``gridsync/service_kinds.py``) at or after the cycle's start."""
    bit = {k: 1 << i for i, k in enumerate(kinds)}
    masks: dict[str, int] = {}  # a grid's kinds as a JSON list -> mask (few distinct lists)
    for cycle_days, grids in by_cycle.items():
        if grids is not None and not grids:
            continue
        cond, params = _grid_cond(grids)
        for grid, raw in db.execute(
            "SELECT grid_id, json_group_array(kind) FROM coverage_grid_kinds "
            f"WHERE {cond} AND last_ms >= ? GROUP BY grid_id",
            [*params, now_ms - cycle_days * DAY_MS],
        ):
            mask = masks.get(raw)
            if mask is None:
                mask = masks[raw] = sum(bit.get(k, 0) for k in _kinds_decoder.decode(raw))
            grid_acc[grid].mask |= mask


def _member_kinds(
    db: sqlite_utils.Database,
    by_cycle: dict[int, list[str] | None],
    kinds: list[str],
    now_ms: int,
    member_acc: dict[str, _Acc],
) -> None:
    """Which kinds each member's visits covered this cycle, in the grids read: the kept newest
    visit per (grid, member, kind), one row per (grid, member) with its kinds as a JSON list
    (few distinct lists, so each list's mask is computed once)."""
    bit = {k: 1 << i for i, k in enumerate(kinds)}
    masks: dict[str, int] = {}
    by_member: dict[str, int] = defaultdict(int)
    for cycle_days, grids in by_cycle.items():
        if grids is not None and not grids:
            continue
        cond, params = _grid_cond(grids)
        for member, raw in db.execute(
            "SELECT member_id, json_group_array(kind) FROM coverage_member_kinds "
            f"WHERE {cond} AND last_ms >= ? GROUP BY grid_id, member_id",
            [*params, now_ms - cycle_days * DAY_MS],
        ):
            try:
                mask = masks[raw]
            except KeyError:
                mask = masks[raw] = sum(bit.get(k, 0) for k in set(_kinds_decoder.decode(raw)))
            by_member[member] |= mask
    for member, mask in by_member.items():
        if mask:
            member_acc[member].mask |= mask


def _rate(num: int, den: int) -> float | None:
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


def _kind_mask(t: Tally, policy_kinds: list[str]) -> int:
    return sum(1 << t.kinds.index(k) for k in policy_kinds if k in t.kinds)


def _figures_maker(t: Tally) -> Callable[[_Acc, int], tuple]:
    """A row's fields after ``parent_id``, in CoverageRow's order, from its accumulator and the
    mask of the service kinds its policy configures. The household part is computed once per
    distinct set of household figures (a branch has its grid's), and rows with the same covered
    kinds share one ``kinds_covered`` list (rows are read-only)."""
    kinds = t.kinds
    covered_lists: dict[int, list[str]] = {0: []}
    household_parts: dict[tuple, tuple[tuple, tuple, float | None]] = {}

    def figures(acc: _Acc, allowed_mask: int) -> tuple:
        covered = acc.mask & allowed_mask
        key = (
            acc.households,
            acc.assigned,
            acc.contacted,
            acc.overdue,
            acc.priority,
            acc.priority_overdue,
            covered,
            allowed_mask,
        )
        part = household_parts.get(key)
        if part is None:
            households, assigned, contacted, overdue, priority, priority_overdue = key[:6]
            kinds_covered = covered_lists.get(covered)
            if kinds_covered is None:
                kinds_covered = covered_lists[covered] = [
                    k for i, k in enumerate(kinds) if covered >> i & 1
                ]
            total = allowed_mask.bit_count()
            part = household_parts[key] = (
                (
                    households,
                    assigned,
                    households - assigned,
                    contacted,
                    overdue,
                    priority,
                    priority_overdue,
                ),
                (
                    kinds_covered,
                    total,
                    _rate(assigned, households),
                    _rate(contacted, households),
                    _rate(overdue, assigned),
                    _rate(priority_overdue, priority),
                ),
                _rate(len(kinds_covered), total),
            )
        members, under, over = acc.members, acc.under, acc.over
        return (
            *part[0],
            members,
            under,
            over,
            *part[1],
            _rate(under, members),
            _rate(over, members),
            part[2],
        )

    return figures


def _unit_tally(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None,
    now_ms: int,
    *,
    with_kinds: bool = True,
    idx: OrgIndex | None = None,
    by_grid: bool = True,
    scoped: tuple[frozenset[str], frozenset[str]] | None = None,
) -> Tally:
    """The unit levels only (no member rows), from the aggregates the writers keep (migration
    ``0005_coverage_aggregates``: per-grid household counts by tags, per-member loads) plus one
    pass over the not-recently-visited part of the covering index for what depends on "now",
    so that no per-household or per-member row reaches Python."""
    idx = idx or OrgIndex.of(db)
    units, grid_set = scoped or _scope_units(idx, scope, unit_id)
    all_grids = idx.grids()
    grids = None if grid_set == all_grids else sorted(grid_set)
    policies = _policies(db, settings, idx)
    default = default_policy(settings)
    kinds: list[str] = []
    for p in [default, *policies.values()]:
        kinds.extend(k for k in p.service_kinds if k not in kinds)
    grid_acc: dict[str, _Acc] = defaultdict(_Acc)
    groups = _groups(idx, policies, grids, default)
    for group, group_grids in groups:
        if group_grids is not None and not group_grids:
            continue
        cond, params = _grid_cond(group_grids)
        prio = _tag_expr(group.priority_tags)
        # households, assigned, priority households: kept counts (a few rows per grid)
        for grid, n, assigned, prio_n in db.execute(
            f"""SELECT grid_id, sum(households),
                           coalesce(sum(households) FILTER (WHERE assigned), 0),
                           coalesce(sum(households) FILTER (WHERE {prio}), 0)
                    FROM coverage_grid_counts WHERE households > 0 AND {cond}
                    GROUP BY grid_id""",
            params,
        ):
            acc = grid_acc[grid]
            acc.households, acc.assigned, acc.priority = n, assigned, prio_n
        # not contacted and overdue: only households not visited within the cycle pass the
        # WHERE, as in the floor; priority overdue: only tagged households, on their own index
        # (``households_tagged``). (``by_grid=False``, for the violations' counts: one total,
        # kept under grid None; not grouping saves about a sixth of each pass.)
        cycle_start = now_ms - group.cycle_days * DAY_MS
        prio_start = now_ms - group.priority_cycle_days * DAY_MS
        key, grouped = ("grid_id", "GROUP BY grid_id") if by_grid else ("NULL", "")
        for grid, not_contacted, overdue in db.execute(
            f"""SELECT {key}, count(*), count(responsible_member_id)
                    FROM households INDEXED BY households_coverage
                    WHERE status = 'active' AND coalesce(last_visit_ms, 0) < ? AND {cond}
                    {grouped}""",
            [cycle_start, *params],
        ):
            acc = grid_acc[grid]
            acc.contacted -= not_contacted  # households are added below
            acc.overdue += overdue
        if group.priority_tags:
            # ``tags <> '[]'`` is spelled out (``prio`` holds it too) so that the partial
            # index stays usable, and INDEXED BY cannot fail, whatever ``_tag_expr`` becomes
            for grid, prio_overdue in db.execute(
                f"""SELECT {key}, count(responsible_member_id)
                        FROM households INDEXED BY households_tagged
                        WHERE status = 'active' AND tags <> '[]'
                          AND coalesce(last_visit_ms, 0) < ? AND {prio} AND {cond}
                        {grouped}""",
                [prio_start, *params],
            ):
                grid_acc[grid].priority_overdue += prio_overdue
    for acc in grid_acc.values():
        acc.contacted += acc.households
    if with_kinds:
        by_cycle = _cycle_grids(groups, sorted(all_grids))
        _grid_kinds(db, by_cycle, kinds, now_ms, grid_acc)

    # Members per home with their loads (active households anywhere), from the kept
    # (branch, load) histogram: summed per branch in SQL when one minimum and one cap hold
    # everywhere; members without a branch (rare) one by one.
    if scope.everything and unit_id is None:
        branch_cond, bparams = "1", []
    else:
        branches = sorted(
            {u for u in units if idx.kind[u] == "branch"}
            | {b for b, g in idx.branch_grid.items() if g in grid_set}
        )
        branch_cond = "branch_id IN (SELECT value FROM json_each(?))"
        bparams = [msgspec.json.encode(branches).decode()]
    limits = {
        (p.min_households_per_member, p.max_households_per_member)
        for p in [default, *policies.values()]
    }
    rows: list[tuple] = []
    if len(limits) == 1:
        ((low, high),) = limits
        rows += db.execute(
            f"""SELECT branch_id, NULL, sum(members),
                       coalesce(sum(members) FILTER (WHERE households < ?), 0),
                       coalesce(sum(members) FILTER (WHERE households > ?), 0)
                FROM coverage_load_histogram WHERE members > 0 AND {branch_cond}
                GROUP BY branch_id""",
            [low, high, *bparams],
        ).fetchall()
    else:
        rows += [
            (branch, None, members, load)
            for branch, load, members in db.execute(
                f"""SELECT branch_id, households, members FROM coverage_load_histogram
                WHERE members > 0 AND {branch_cond}""",
                bparams,
            )
        ]
    rows += [
        (None, pid, 1, load)
        for pid, load in db.execute(
            "SELECT person_id, households FROM coverage_members INDEXED BY coverage_members_load "
            "WHERE is_member = 1 AND branch_id IS NULL"
        )
    ]
    home_grid = _home_grids(db, idx, [row[1] for row in rows if row[0] is None])
    homes: dict[tuple[str | None, str | None, str | None], list[int]] = defaultdict(
        lambda: [0, 0, 0]
    )
    for row in rows:
        branch, pid, count = row[0], row[1], row[2]
        grid = idx.branch_grid.get(branch) if branch else home_grid.get(pid)  # type: ignore[arg-type]
        if not ((branch in units) or (grid in grid_set)):
            continue
        community = idx.community_of(branch) if branch else idx.community_of(grid)
        home = homes[(branch, grid, community)]
        home[0] += count
        if len(row) == 5:
            home[1] += row[3]
            home[2] += row[4]
        else:
            policy = policies.get(community or "", default)
            load = row[3]
            home[1] += count * (load < policy.min_households_per_member)
            home[2] += count * (load > policy.max_households_per_member)
    return Tally(
        idx=idx,
        scope_id=unit_id,
        now_ms=now_ms,
        units=units,
        grids=grids,
        default=default,
        policies=policies,
        kinds=kinds,
        members={},
        grid_acc=grid_acc,
        member_acc={},
        unassigned_by_grid={},
        load={},
        homes=homes,
        groups=groups,
    )


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
    only if it lies at or below ``unit_id`` (default: the caller's scope)."""
    idx = OrgIndex.of(db)
    scoped = _scope_units(idx, scope, unit_id)
    with_members = not _wide(idx, scoped[0]) if levels is None else "member" in levels
    if with_members:
        t = tally(db, settings, scope, unit_id, now_ms, member_kinds=True)
    else:
        t = _unit_tally(db, settings, scope, unit_id, now_ms, idx=idx, scoped=scoped)
    return CoverageReport(scope_id=unit_id, at=iso_ms(now_ms), rows=rows_of(t, levels))


def default_levels(t: Tally) -> tuple[str, ...]:
    """Every level, except members when the report spans a street or the district: tens of
    thousands of member rows belong in an export or a narrower scope (``level=member`` still
    asks for them). Members are counted in every unit row either way."""
    if _wide(t.idx, t.units):
        return tuple(level for level in LEVELS if level != "member")
    return LEVELS


def rows_of(t: Tally, levels: list[str] | None = None) -> list[CoverageRow]:
    idx = t.idx
    wanted = set(levels or default_levels(t))
    bad = wanted - set(LEVELS)
    if bad:
        raise Invalid(
            f"unknown level {sorted(bad)[0]!r}; one of {', '.join(LEVELS)}", field="level"
        )
    member_rows: list[CoverageRow] = []
    masks: dict[tuple[str, ...], int] = {}
    figures_of = _figures_maker(t)

    def kinds_mask(kinds: list[str]) -> int:
        key = tuple(kinds)
        if key not in masks:
            masks[key] = _kind_mask(t, kinds)
        return masks[key]

    # Members: their own households and visits; judged by their community's policy. Their
    # counts travel up the branch and the administrative tree (summed per home first).
    homes: dict[tuple[str | None, str | None, str | None], list[int]] = defaultdict(
        lambda: [0, 0, 0]
    )
    limits = {
        cid: (p.min_households_per_member, p.max_households_per_member)
        for cid, p in t.policies.items()
    }
    default_limits = (t.default.min_households_per_member, t.default.max_households_per_member)
    show_members = "member" in wanted
    load = t.load
    if t.homes is not None:
        homes = t.homes
    # A member row's figures depend on a few small numbers: rows with the same ones share
    # their figures (rates, kinds), computed once per call.
    figures: dict[tuple, tuple] = {}
    allowed_of: dict[str | None, int] = {}
    no_households = _Acc()
    member_acc = t.member_acc
    for pid in sorted(t.members) if show_members else t.members:
        m = t.members[pid]
        n = load.get(pid, 0)
        low, high = limits.get(m.community_id, default_limits)  # type: ignore[arg-type]
        under = n < low
        over = n > high
        home = homes[(m.branch_id, m.grid_id, m.community_id)]
        home[0] += 1
        home[1] += under
        home[2] += over
        if show_members:
            try:
                allowed = allowed_of[m.community_id]
            except KeyError:
                allowed = allowed_of[m.community_id] = kinds_mask(
                    t.policies.get(m.community_id or "", t.default).service_kinds
                )
            own = member_acc.get(pid, no_households)
            key = (
                own.households,
                own.assigned,
                own.contacted,
                own.overdue,
                own.priority,
                own.priority_overdue,
                own.mask & allowed,
                under,
                over,
                allowed,
            )
            try:
                tail = figures[key]
            except KeyError:
                acc = _Acc(members=1, under=int(under), over=int(over))
                acc.add(own)
                tail = figures[key] = figures_of(acc, allowed)
            member_rows.append(CoverageRow("member", pid, m.name, m.branch_id, *tail))
    # Unit figures bottom-up: each unit's own part (a grid's households, the members whose home
    # it is), then every unit of the administrative tree adds its total into its parent's. A
    # branch has its grid's households and its own members, and is not summed upwards (its
    # members are counted at their grid already).
    unit_acc: dict[str, _Acc] = {}

    def own(uid: str) -> _Acc:
        acc = unit_acc.get(uid)
        if acc is None:
            acc = unit_acc[uid] = _Acc()
        return acc

    for grid, acc in t.grid_acc.items():
        unit_acc[grid] = acc.households_only()
    for branch, grid in idx.branch_grid.items():
        acc = t.grid_acc.get(grid) if grid else None  # type: ignore[arg-type]
        if acc is not None:
            unit_acc[branch] = acc.households_only()
    for (branch, grid, community), (n, under, over) in homes.items():
        for uid in (branch, grid if grid is not None else community):
            if uid is not None:
                u = own(uid)
                u.members += n
                u.under += under
                u.over += over
    allowed_of_unit: dict[str, int] = {}
    for uid in idx.bottom_up():
        parent = idx.parent[uid]
        if idx.kind[uid] == "community":
            allowed_of_unit[uid] = allowed_of_unit.get(uid, 0) | kinds_mask(
                t.policies[uid].service_kinds
            )
        if parent is None or parent not in idx.kind:
            continue
        acc = unit_acc.get(uid)
        if acc is not None:
            own(parent).add(acc)
        if uid in allowed_of_unit:
            allowed_of_unit[parent] = allowed_of_unit.get(parent, 0) | allowed_of_unit[uid]

    rows: list[CoverageRow] = []
    by_level: dict[str, list[str]] = defaultdict(list)
    units = t.units
    for uid, kind in idx.kind.items():  # in id order (OrgIndex.load)
        if uid in units:
            by_level[kind].append(uid)
    empty = _Acc()
    for level in reversed(LEVELS):
        if level not in wanted:
            continue
        if level == "member":
            rows.extend(member_rows)
            continue
        for uid in by_level[level]:
            community = idx.community_of(uid)
            allowed = allowed_of_unit.get(community if community else uid, 0)
            rows.append(
                CoverageRow(
                    level,
                    uid,
                    idx.name[uid],
                    idx.parent[uid],  # type: ignore[arg-type]
                    *figures_of(unit_acc.get(uid, empty), allowed),
                )
            )
    return rows


# -- violations -------------------------------------------------------------------------------


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
    """Every household or member at fault, in kind order (unassigned, overdue, priority overdue,
    members under the minimum, members over the cap). Households within a kind: by grid, then
    responsible member, never-visited and longest-ago first (the order of the covering index,
    so a page streams instead of sorting); members by grid and id. Counts come from the roll-up's
    tally (pass ``tallied`` to reuse one). Phones are as ``scope.phones`` may read them."""
    phones = scope.phones
    wanted = list(kinds or VIOLATION_KINDS)
    bad = set(wanted) - set(VIOLATION_KINDS)
    if bad:
        raise Invalid(
            f"unknown violation kind {sorted(bad)[0]!r}; one of {', '.join(VIOLATION_KINDS)}",
            field="kind",
        )
    wanted = [k for k in VIOLATION_KINDS if k in wanted]
    # Counts from the kept aggregates (no per-member rows); member items only when the page
    # reaches them (after every household violation of the kinds asked for).
    t = tallied or _unit_tally(
        db, settings, scope, unit_id, now_ms, with_kinds=False, by_grid=False
    )
    counts = dict.fromkeys(wanted, 0)
    for acc in t.grid_acc.values():
        if "unassigned" in counts:
            counts["unassigned"] += acc.households - acc.assigned
        if "overdue" in counts:
            counts["overdue"] += acc.overdue
        if "priority_overdue" in counts:
            counts["priority_overdue"] += acc.priority_overdue
    member_items: list[Violation] | None = None
    if t.homes is None:
        member_items = _member_violations(t, wanted, phones)
        for v in member_items:
            counts[v.kind] += 1
    else:
        for _, under, over in t.homes.values():
            if "member_under_min" in counts:
                counts["member_under_min"] += under
            if "member_over_cap" in counts:
                counts["member_over_cap"] += over
    items: list[Violation] = []
    skip = offset
    for kind in (k for k in wanted if k in HOUSEHOLD_VIOLATIONS):
        if len(items) >= limit:
            break
        if skip >= counts[kind]:
            skip -= counts[kind]
            continue
        items += _household_violations(db, t, kind, limit - len(items), skip, phones)
        skip = 0
    rest = limit - len(items)
    member_total = sum(counts.get(k, 0) for k in ("member_under_min", "member_over_cap"))
    if rest > 0 and skip < member_total:
        if member_items is None:
            full = tally(db, settings, scope, unit_id, now_ms, with_kinds=False)
            member_items = _member_violations(full, wanted, phones)
        items.extend(member_items[skip : skip + rest])
    return ViolationPage(
        items=items, total=sum(counts.values()), limit=limit, offset=offset, counts=counts
    )


def _household_violations(
    db: sqlite_utils.Database, t: Tally, kind: str, limit: int, offset: int, phones: PhoneView
) -> list[Violation]:
    groups = [
        (g, grids)
        for g, grids in (t.groups or _groups(t.idx, t.policies, t.grids, t.default))
        if grids is None or grids
    ]
    fetched: list[tuple] = []
    for group, grids in groups:
        cond, params = _grid_cond(grids)
        if kind == "unassigned":
            sql, kparams = "responsible_member_id IS NULL", []
        elif kind == "overdue":
            sql = "responsible_member_id IS NOT NULL AND coalesce(last_visit_ms, 0) < ?"
            kparams = [t.now_ms - group.cycle_days * DAY_MS]
        else:
            sql = (
                f"responsible_member_id IS NOT NULL AND {_tag_expr(group.priority_tags)} "
                "AND coalesce(last_visit_ms, 0) < ?"
            )
            kparams = [t.now_ms - group.priority_cycle_days * DAY_MS]
        # one policy group: the page itself; several: each group's first offset+limit rows,
        # merged below in the same order
        page = [limit, offset] if len(groups) == 1 else [limit + offset, 0]
        fetched += db.execute(
            "SELECT grid_id, responsible_member_id, coalesce(last_visit_ms, -1), id, building, "
            "unit, room, head_name, phone FROM households "
            f"WHERE status = 'active' AND {cond} AND {sql} "
            "ORDER BY grid_id, responsible_member_id, last_visit_ms, id LIMIT ? OFFSET ?",
            [*params, *kparams, *page],
        ).fetchall()
    if len(groups) > 1:
        fetched = sorted(fetched, key=lambda r: (r[0], r[1] or "", r[2], r[3]))
        fetched = fetched[offset : offset + limit]
    out = []
    for grid, member, last, hid, building, unit, room, name, phone in fetched:
        visited = last >= 0
        out.append(
            Violation(
                kind=kind,
                subject="household",
                id=hid,
                name=name,  # type: ignore[arg-type]
                phone=shown_phone(phones, phone, grid, member),
                grid_id=grid,
                address="".join(p for p in (building, unit, room) if p),
                member_id=member,
                last_visit_at=iso_ms(last) if visited else None,
                days_since_visit=(t.now_ms - last) // DAY_MS if visited else None,
            )
        )
    return out


def _member_violations(t: Tally, kinds: list[str], phones: PhoneView) -> list[Violation]:
    out: dict[str, list[Violation]] = {"member_under_min": [], "member_over_cap": []}
    for pid in sorted(t.members, key=lambda p: (t.members[p].grid_id or "", p)):
        m = t.members[pid]
        policy = t.policies.get(m.community_id or "") or t.policy_of_grid(m.grid_id)
        load = t.load.get(pid, 0)
        phone = member_phone(phones, m)
        if "member_under_min" in kinds and load < policy.min_households_per_member:
            out["member_under_min"].append(
                Violation(
                    kind="member_under_min",
                    subject="member",
                    id=pid,
                    name=m.name,
                    phone=phone,
                    grid_id=m.grid_id,
                    member_id=pid,
                    households=load,
                    limit=policy.min_households_per_member,
                )
            )
        if "member_over_cap" in kinds and load > policy.max_households_per_member:
            out["member_over_cap"].append(
                Violation(
                    kind="member_over_cap",
                    subject="member",
                    id=pid,
                    name=m.name,
                    phone=phone,
                    grid_id=m.grid_id,
                    member_id=pid,
                    households=load,
                    limit=policy.max_households_per_member,
                )
            )
    return out["member_under_min"] + out["member_over_cap"]


# -- assignments ------------------------------------------------------------------------------


def _member_allows_grid(
    db: sqlite_utils.Database, member_id: str, branch_id: str | None, grid_id: str
) -> bool:
    if branch_id:
        row = db.execute("SELECT grid_id FROM org_units WHERE id = ?", [branch_id]).fetchone()
        if row and row[0] == grid_id:
            return True
    return resolve_scope(db, member_id).allows_grid(grid_id)


def assign(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    roles: frozenset[str],
    scope: Scope,
    household_id: str,
    member_id: str,
    *,
    replace: bool = False,
    override_cap: bool = False,
    reason: str = "",
    clock: Clock = SYSTEM_CLOCK,
) -> Assignment:
    """Make ``member_id`` the household's responsible member (the "1" of 1-5-N).

    Refusals: ``forbidden`` (not a secretary or admin), ``not_found``, ``out_of_scope`` (the
    household is outside the caller's scope), ``household_inactive``, ``not_a_member``,
    ``member_inactive``, ``member_out_of_grid`` (the member's scope does not hold the household's
    grid), ``already_assigned`` (another member is responsible: pass ``replace`` to move it),
    ``over_cap`` (pass ``override_cap``, which is logged). Bumps the household's seq so phones
    receive the change."""
    if not roles.intersection(ASSIGNER_ROLES):
        raise Forbidden(f"assigning households needs one of the roles: {', '.join(ASSIGNER_ROLES)}")
    row = db.execute(
        "SELECT grid_id, status, responsible_member_id FROM households WHERE id = ?", [household_id]
    ).fetchone()
    if row is None:
        raise NotFound(f"no household {household_id}")
    grid_id, status, current = row
    if not scope.allows_grid(grid_id):
        raise OutOfScope(f"household {household_id} is outside your scope")
    if status != "active":
        raise Conflict(
            f"household {household_id} is {status}; only active households are assigned",
            code="household_inactive",
        )
    person = db.execute(
        "SELECT name, roles, active, branch_id FROM people WHERE id = ?", [member_id]
    ).fetchone()
    if person is None:
        raise NotFound(f"no person {member_id}", field="member_id")
    if RESPONSIBLE_ROLE not in msgspec.json.decode(person[1]):
        raise Invalid(
            f"{member_id} is not a party member (role '{RESPONSIBLE_ROLE}')",
            code="not_a_member",
            field="member_id",
        )
    if not person[2]:
        raise Invalid(
            f"member {member_id} is not active", code="member_inactive", field="member_id"
        )
    if not _member_allows_grid(db, member_id, person[3], grid_id):
        raise Invalid(
            f"member {member_id} does not serve grid {grid_id} of household {household_id}",
            code="member_out_of_grid",
            field="member_id",
        )
    idx_community = db.execute("SELECT parent_id FROM org_units WHERE id = ?", [grid_id]).fetchone()
    community = idx_community[0] if idx_community else None
    policy = (
        policy_for(db, settings, community)
        if community
        and db.execute(
            "SELECT 1 FROM org_units WHERE id = ? AND kind = 'community'", [community]
        ).fetchone()
        else default_policy(settings)
    )
    cap = policy.max_households_per_member
    load = db.execute(
        "SELECT count(*) FROM households WHERE status = 'active' AND responsible_member_id = ?",
        [member_id],
    ).fetchone()[0]
    if current == member_id:
        return Assignment(
            household_id=household_id,
            member_id=member_id,
            previous_member_id=current,
            status="unchanged",
            seq=None,
            load=load,
            cap=cap,
        )
    if current is not None and not replace:
        raise Conflict(
            f"household {household_id} already has responsible member {current}; "
            "move it explicitly (replace / --move)",
            code="already_assigned",
            current_member_id=current,
        )
    if load + 1 > cap and not override_cap:
        raise Conflict(
            f"member {member_id} already holds {load} households (cap {cap}); "
            "override the cap explicitly to exceed it",
            code="over_cap",
            load=load,
            cap=cap,
        )
    seq = next_seq(db)
    now = iso_ms(clock.now_ms())
    db.execute(
        "UPDATE households SET responsible_member_id = ?, seq = ?, updated_at = ? WHERE id = ?",
        [member_id, seq, now, household_id],
    )
    over = load + 1 > cap
    db.execute(
        "INSERT INTO assignment_log (at, household_id, previous_member_id, member_id, person_id, "
        "device_id, override_cap, load_after, cap, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            now,
            household_id,
            current,
            member_id,
            actor.person_id,
            actor.device_id,
            int(over),
            load + 1,
            cap,
            reason,
        ],
    )
    detail = {"member_id": member_id, "previous_member_id": current, "load": load + 1, "cap": cap}
    if over:
        detail["override_cap"] = True
    audit.record(db, actor, "household.assign", target=household_id, detail=detail, clock=clock)
    return Assignment(
        household_id=household_id,
        member_id=member_id,
        previous_member_id=current,
        status="moved" if current else "assigned",
        seq=seq,
        load=load + 1,
        cap=cap,
        override_cap=over,
    )


def assignment_log(
    db: sqlite_utils.Database, household_id: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where, params = ("WHERE household_id = ?", [household_id]) if household_id else ("", [])
    cursor = db.execute(
        f"SELECT * FROM assignment_log {where} ORDER BY id DESC LIMIT ?", [*params, limit]
    )
    keys = [d[0] for d in cursor.description]
    return [dict(zip(keys, r)) for r in cursor.fetchall()]


# -- rebalancing ------------------------------------------------------------------------------


def rebalance(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None = None,
    *,
    now_ms: int,
) -> RebalancePlan:
    """Suggest a member for every unassigned active household: a member of the same grid and
    branch (the branch maps to the household's grid) below their cap; neighbours first (already
    responsible for a household in the same building), then the least loaded, then by id.
    Suggestions are made in address order and count earlier suggestions, so applying them all
    never passes a cap. Nothing is written."""
    t = tally(db, settings, scope, unit_id, now_ms, with_kinds=False)
    cond, params = _grid_cond(t.grids)
    rows = db.execute(
        "SELECT id, grid_id, building FROM households WHERE status = 'active' AND "
        f"responsible_member_id IS NULL AND {cond} ORDER BY grid_id, building, unit, room, id",
        params,
    ).fetchall()
    if not rows:
        return RebalancePlan(scope_id=unit_id, suggestions=[], unplaced=[])
    by_grid: dict[str, list[_Member]] = defaultdict(list)
    for m in t.members.values():
        if m.branch_id and m.grid_id:
            by_grid[m.grid_id].append(m)
    load = dict(t.load)
    building_count: dict[tuple[str, str, str], int] = defaultdict(int)
    for member, grid, building, n in db.execute(
        "SELECT responsible_member_id, grid_id, building, count(*) FROM households "
        f"WHERE status = 'active' AND responsible_member_id IS NOT NULL AND {cond} "
        "GROUP BY 1, 2, 3",
        params,
    ):
        building_count[(member, grid, building)] = n
    suggestions, unplaced = [], []
    for hid, grid, building in rows:
        cap = t.policy_of_grid(grid).max_households_per_member
        candidates = [m for m in by_grid.get(grid, []) if load.get(m.id, 0) < cap]
        if not candidates:
            unplaced.append(hid)
            continue
        best = min(
            candidates,
            key=lambda m: (building_count[(m.id, grid, building)] == 0, load.get(m.id, 0), m.id),
        )
        neighbour = building_count[(best.id, grid, building)] > 0
        suggestions.append(
            Suggestion(
                id=f"{hid}>{best.id}",
                household_id=hid,
                member_id=best.id,
                member_name=best.name,
                grid_id=grid,
                building=building,
                reason="neighbour" if neighbour else "least_loaded",
                member_load=load.get(best.id, 0),
                cap=cap,
            )
        )
        load[best.id] = load.get(best.id, 0) + 1
        building_count[(best.id, grid, building)] += 1
    return RebalancePlan(scope_id=unit_id, suggestions=suggestions, unplaced=unplaced)


def apply_suggestions(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    roles: frozenset[str],
    scope: Scope,
    picks: list[SuggestionPick],
    clock: Clock = SYSTEM_CLOCK,
) -> ApplyResult:
    """Apply confirmed suggestions through :func:`assign` (no move, no cap override); each one
    that is refused is reported with its code and the rest still apply."""
    if not roles.intersection(ASSIGNER_ROLES):
        raise Forbidden(f"applying suggestions needs one of the roles: {', '.join(ASSIGNER_ROLES)}")
    from gridsync.errors import GridsyncError

    outcomes = []
    for pick in picks:
        try:
            done = assign(
                db,
                settings,
                actor,
                roles,
                scope,
                pick.household_id,
                pick.member_id,
                reason="rebalance",
                clock=clock,
            )
            outcomes.append(
                ApplyOutcome(
                    household_id=pick.household_id, member_id=pick.member_id, status=done.status
                )
            )
        except GridsyncError as exc:
            outcomes.append(
                ApplyOutcome(
                    household_id=pick.household_id,
                    member_id=pick.member_id,
                    status="refused",
                    code=exc.code,
                    message=exc.message,
                )
            )
    refused = sum(o.status == "refused" for o in outcomes)
    return ApplyResult(applied=len(outcomes) - refused, refused=refused, items=outcomes)


# -- the assessors' sample --------------------------------------------------------------------


def sample(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    n: int,
    seed: str,
    *,
    visits: int = 3,
) -> Sample:
    """``n`` random active households of a unit with their last ``visits`` non-voided visits,
    phones as ``scope.phones`` may read them.

    Reproducible: ``random.Random(seed)`` draws from the household ids in id order, so the same
    seed over the same households gives the same sample."""
    if n < 1:
        raise Invalid("n must be at least 1", field="n")
    idx = OrgIndex.of(db)
    _, grid_set = _scope_units(idx, scope, unit_id)
    all_grids = idx.grids()
    cond, params = _grid_cond(None if grid_set == all_grids else sorted(grid_set))
    ids = [
        r[0]
        for r in db.execute(
            f"SELECT id FROM households WHERE status = 'active' AND {cond} ORDER BY id", params
        )
    ]
    chosen = random.Random(str(seed)).sample(ids, min(n, len(ids)))
    items = []
    for hid in chosen:
        row = db.execute(
            f"SELECT {HOUSEHOLD_SELECT} FROM households h WHERE h.id = ?", [hid]
        ).fetchone()
        household = household_from_row(row, scope.phones)
        last = [
            visit_from_row(r)
            for r in db.execute(
                f"SELECT {VISIT_SELECT} FROM visits v WHERE v.household_id = ? AND v.voided = 0 "
                "ORDER BY v.at_ms DESC, v.id DESC LIMIT ?",
                [hid, visits],
            )
        ]
        items.append(SampledHousehold(household=household, last_visits=last))
    return Sample(scope_id=unit_id, seed=str(seed), n=n, population=len(ids), items=items)

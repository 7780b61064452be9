"""Assignments (SPEC section 4): a secretary makes a party member a household's responsible
member (the "1" of 1-5-N), checked against the policy and logged; and rebalancing, which
suggests a member for every unassigned household and applies the pairs a secretary confirms
through the same assignment.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import Settings
from gridsync.coverage.members import require_may_serve, standing
from gridsync.coverage.policy import policy_of_grid
from gridsync.coverage.tallying import Member, grid_filter, tally
from gridsync.db import next_seq
from gridsync.errors import Conflict, Forbidden, GridsyncError, NotFound, OutOfScope
from gridsync.models import (
    ApplyOutcome,
    ApplyResult,
    Assignment,
    RebalancePlan,
    Suggestion,
    SuggestionPick,
)
from gridsync.org import Scope

# Who may assign households: secretaries and admins, each within their scope.
ASSIGNER_ROLES = ("admin", "street", "community_secretary", "branch_secretary")


def _require_assigner(roles: frozenset[str], doing: str) -> None:
    if not roles.intersection(ASSIGNER_ROLES):
        raise Forbidden(f"{doing} needs one of the roles: {', '.join(ASSIGNER_ROLES)}")


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
    ``member_inactive``, ``member_out_of_grid`` (the member may not serve the household's grid:
    :mod:`gridsync.coverage.members`), ``already_assigned`` (another member is responsible: pass ``replace`` to move it),
    ``over_cap`` (pass ``override_cap``, which is logged). Bumps the household's seq so phones
    receive the change."""
    _require_assigner(roles, "assigning households")
    grid_id, current = _assignable_household(db, scope, household_id)
    require_may_serve(db, member_id, grid_id, household_id)
    cap = policy_of_grid(db, settings, grid_id).max_households_per_member
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
    _require_explicit(household_id, current, member_id, load, cap, replace, override_cap)
    seq = _write_assignment(
        db, actor, household_id, current, member_id, load + 1, cap, reason, clock
    )
    return Assignment(
        household_id=household_id,
        member_id=member_id,
        previous_member_id=current,
        status="moved" if current else "assigned",
        seq=seq,
        load=load + 1,
        cap=cap,
        override_cap=load + 1 > cap,
    )


def _require_explicit(
    household_id: str,
    current: str | None,
    member_id: str,
    load: int,
    cap: int,
    replace: bool,
    override_cap: bool,
) -> None:
    """Moving a household from another member, and passing a member's cap, are explicit."""
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


def _assignable_household(
    db: sqlite_utils.Database, scope: Scope, household_id: str
) -> tuple[str, str | None]:
    """(grid, current responsible member) of an active household in the scope."""
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
    return grid_id, current


def _write_assignment(
    db: sqlite_utils.Database,
    actor: Actor,
    household_id: str,
    previous: str | None,
    member_id: str | None,
    load_after: int,
    cap: int,
    reason: str,
    clock: Clock,
) -> int:
    """The household's new responsible member with a new seq (phones receive it), a line in
    ``assignment_log`` and one in the audit log; returns the seq. ``member_id`` None unassigns
    the household (``load_after`` is then the previous member's load after it)."""
    seq = next_seq(db)
    now = iso_ms(clock.now_ms())
    db.execute(
        "UPDATE households SET responsible_member_id = ?, seq = ?, updated_at = ? WHERE id = ?",
        [member_id, seq, now, household_id],
    )
    over = load_after > cap
    db.execute(
        "INSERT INTO assignment_log (at, household_id, previous_member_id, member_id, person_id, "
        "device_id, override_cap, load_after, cap, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
        [
            now,
            household_id,
            previous,
            member_id,
            actor.person_id,
            actor.device_id,
            int(over),
            load_after,
            cap,
            reason,
        ],
    )
    detail = {
        "member_id": member_id,
        "previous_member_id": previous,
        "load": load_after,
        "cap": cap,
    }
    if over:
        detail["override_cap"] = True
    if reason:
        detail["reason"] = reason
    action = "household.assign" if member_id is not None else "household.unassign"
    audit.record(db, actor, action, target=household_id, detail=detail, clock=clock)
    return seq


def unassign_member(
    db: sqlite_utils.Database,
    settings: Settings,
    actor: Actor,
    member_id: str,
    reason: str,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> list[str]:
    """Every household ``member_id`` is responsible for loses them at once (a member who left,
    ``gridsync/lifecycle.py``): each through :func:`_write_assignment`, so the assignment log
    and the audit log record it and phones receive the change. The households then appear in
    :func:`rebalance`'s suggestions like any unassigned household. Returns their ids."""
    rows = db.execute(
        "SELECT id, grid_id, status FROM households WHERE responsible_member_id = ? ORDER BY id",
        [member_id],
    ).fetchall()
    load = sum(1 for r in rows if r[2] == "active")
    caps: dict[str, int] = {}
    for household_id, grid_id, status in rows:
        if grid_id not in caps:
            caps[grid_id] = policy_of_grid(db, settings, grid_id).max_households_per_member
        if status == "active":
            load -= 1
        _write_assignment(
            db, actor, household_id, member_id, None, load, caps[grid_id], reason, clock
        )
    return [r[0] for r in rows]


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
    branch (the branch maps to the household's grid) who may serve it
    (:mod:`gridsync.coverage.members`) and is below their cap; neighbours first (already
    responsible for a household in the same building), then the least loaded, then by id.
    Suggestions are made in address order and count earlier suggestions, so applying them all
    never passes a cap. Nothing is written."""
    t = tally(db, settings, scope, unit_id, now_ms, with_kinds=False)
    cond, params = grid_filter(t.grids)
    unassigned = db.execute(
        "SELECT id, grid_id, building FROM households WHERE status = 'active' AND "
        f"responsible_member_id IS NULL AND {cond} ORDER BY grid_id, building, unit, room, id",
        params,
    ).fetchall()
    if not unassigned:
        return RebalancePlan(scope_id=unit_id, suggestions=[], unplaced=[])
    by_grid: dict[str, list[Member]] = defaultdict(list)
    for m in t.members.values():
        # home grid and branch, and the one rule of who may serve a grid (its scope)
        if m.home.branch_id and m.home.grid_id and standing(db, m.id).serves(m.home.grid_id):
            by_grid[m.home.grid_id].append(m)
    load = {pid: m.load for pid, m in t.members.items()}
    in_building = _held_per_building(db, cond, params)
    suggestions, unplaced = [], []
    for hid, grid, building in unassigned:
        cap = t.policy_of_grid(grid).max_households_per_member
        candidates = [m for m in by_grid.get(grid, []) if load[m.id] < cap]
        if not candidates:
            unplaced.append(hid)
            continue
        best = min(
            candidates,
            key=lambda m: (in_building[(m.id, grid, building)] == 0, load[m.id], m.id),
        )
        neighbour = in_building[(best.id, grid, building)] > 0
        suggestions.append(
            Suggestion(
                id=f"{hid}>{best.id}",
                household_id=hid,
                member_id=best.id,
                member_name=best.name,
                grid_id=grid,
                building=building,
                reason="neighbour" if neighbour else "least_loaded",
                member_load=load[best.id],
                cap=cap,
            )
        )
        load[best.id] += 1
        in_building[(best.id, grid, building)] += 1
    return RebalancePlan(scope_id=unit_id, suggestions=suggestions, unplaced=unplaced)


def _held_per_building(
    db: sqlite_utils.Database, cond: str, params: list[Any]
) -> defaultdict[tuple[str, str, str], int]:
    """(member, grid, building) -> how many active households there the member is responsible
    for."""
    held: defaultdict[tuple[str, str, str], int] = defaultdict(int)
    for member, grid, building, n in db.execute(
        "SELECT responsible_member_id, grid_id, building, count(*) FROM households "
        f"WHERE status = 'active' AND responsible_member_id IS NOT NULL AND {cond} "
        "GROUP BY 1, 2, 3",
        params,
    ):
        held[(member, grid, building)] = n
    return held


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
    _require_assigner(roles, "applying suggestions")
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

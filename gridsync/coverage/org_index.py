"""The org tree as a report reads it, loaded once per version of the tree, and which units and
grids a report covers within the reader's scope.

Levels: member -> branch -> grid -> community -> street -> district. A branch maps to one grid
(its households and kinds are its grid's) and belongs to a community; it is reported beside the
administrative tree, not summed into it (its members are counted at their grid already).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import NamedTuple

import sqlite_utils

from gridsync.db import epoch
from gridsync.errors import NotFound, OutOfScope
from gridsync.org import Scope


class ReportUnits(NamedTuple):
    """What a report covers: the org units it has rows for, and the grids whose households it
    reads (both within the reader's scope)."""

    units: frozenset[str]
    grids: frozenset[str]


class Home(NamedTuple):
    """Where a member's counts go: their branch, its grid and community (without a branch,
    which is rare: the first grid of their scope and its community)."""

    branch_id: str | None
    grid_id: str | None
    community_id: str | None


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
    _everything: ReportUnits | None = None  # memo: report_units of a whole-district read
    _grids: frozenset[str] | None = None  # memo
    _homes: dict[tuple[str | None, str | None], Home] = field(default_factory=dict)  # memo

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
        found: str | None = None
        if unit_id is not None:
            kind = self.kind.get(unit_id)
            if kind == "community":
                found = unit_id
            elif kind is not None:
                found = self.community_of(self.parent[unit_id])
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

    def home(self, branch: str | None, grid: str | None) -> Home:
        """The home of a member of ``branch``, or (no branch) of one whose home grid is
        ``grid``; one Home per place, memoised (district reads look up thousands)."""
        key = (branch, grid)
        found = self._homes.get(key)
        if found is None:
            if branch:
                found = Home(branch, self.branch_grid.get(branch), self.community_of(branch))
            else:
                found = Home(branch, grid, self.community_of(grid))
            self._homes[key] = found
        return found

    def wide(self, units: frozenset[str]) -> bool:
        """Whether a report spans a street or the district (tens of thousands of members)."""
        return any(self.kind[u] in ("street", "district") for u in units)


# (database file, epoch) -> ((newest org unit seq, count), its OrgIndex); a few databases
_ORG_INDEXES: dict[tuple[str, str], tuple[tuple[int | None, int], OrgIndex]] = {}
_ORG_INDEXES_LOCK = threading.Lock()


def report_units(idx: OrgIndex, scope: Scope, unit_id: str | None) -> ReportUnits:
    """The org units a report on ``unit_id`` (default: the reader's whole scope) covers and the
    grids it reads, within the reader's scope. ``not_found`` for an unknown unit,
    ``out_of_scope`` for a unit the scope does not hold."""
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
            idx._everything = _within(idx, scope, set(idx.kind))
        return idx._everything
    else:
        units = set(scope.unit_ids) | set(scope.grid_ids)
    return _within(idx, scope, units)


def _within(idx: OrgIndex, scope: Scope, units: set[str]) -> ReportUnits:
    """Departments have no households; a branch's report includes its grid."""
    units = {u for u in units if idx.kind[u] != "department"}
    for uid in list(units):
        grid = idx.branch_grid.get(uid)
        if grid and scope.allows_grid(grid):
            units.add(grid)
    grids = {u for u in units if idx.kind[u] == "grid" and scope.allows_grid(u)}
    return ReportUnits(frozenset(units), frozenset(grids))

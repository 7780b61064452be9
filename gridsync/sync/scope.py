"""Scope over time, for sync: which grids a person's scope version covered, and whether a
household was in a person's scope at a past instant (an offline edit made before a
reassignment is accepted, SPEC 3.1). The current scope always comes from
:func:`gridsync.org.resolve_scope`; this module only remembers past ones."""

from __future__ import annotations

import msgspec
import sqlite_utils

from gridsync.org import Scope

_json = msgspec.json.Encoder()
_grids = msgspec.json.Decoder(list[str])


def remember(db: sqlite_utils.Database, scope: Scope) -> None:
    """Record the grids of the scope's version, and those where it reads every phone number in
    full (inside a write transaction)."""
    db.execute(
        "INSERT OR IGNORE INTO scope_versions (person_id, version, everything, grid_ids, "
        "phone_grids) VALUES (?, ?, ?, ?, ?)",
        [
            scope.person_id,
            scope.version,
            int(scope.everything),
            _json.encode(sorted(scope.grid_ids)).decode(),
            _json.encode(sorted(scope.phones.grids)).decode(),
        ],
    )


def is_remembered(db: sqlite_utils.Database, scope: Scope) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM scope_versions WHERE person_id = ? AND version = ?",
            [scope.person_id, scope.version],
        ).fetchone()
        is not None
    )


def grids_of_version(
    db: sqlite_utils.Database, person_id: str, version: int
) -> tuple[bool, frozenset[str]] | None:
    """(everything, grid ids) of a remembered scope version, or None when unknown."""
    row = db.execute(
        "SELECT everything, grid_ids FROM scope_versions WHERE person_id = ? AND version = ?",
        [person_id, version],
    ).fetchone()
    if row is None:
        return None
    return bool(row[0]), frozenset(_grids.decode(row[1]))


def phone_grids_of_version(
    db: sqlite_utils.Database, person_id: str, version: int
) -> frozenset[str] | None:
    """The grids where a remembered scope version read every phone number in full, or None when
    unknown (a version recorded before migration 0011, or never recorded)."""
    row = db.execute(
        "SELECT phone_grids FROM scope_versions WHERE person_id = ? AND version = ?",
        [person_id, version],
    ).fetchone()
    if row is None or row[0] is None:
        return None
    return frozenset(_grids.decode(row[0]))


def was_in_scope(db: sqlite_utils.Database, scope: Scope, household_id: str, at_ms: int) -> bool:
    """Whether the household was in the person's scope at ``at_ms`` (the mutation's HLC time).

    False for a time before the history the server still keeps (``gridsync.retention``): the
    moves and scope changes that would show it are forgotten."""
    row = db.execute("SELECT value FROM meta WHERE key = 'sync_horizon_ms'").fetchone()
    if row is not None and at_ms < int(row[0]):
        return False
    move = db.execute(
        "SELECT from_grid FROM household_moves WHERE household_id = ? AND at_ms > ? "
        "ORDER BY at_ms, id LIMIT 1",
        [household_id, at_ms],
    ).fetchone()
    if move is not None:
        grid = move[0]
    else:
        row = db.execute("SELECT grid_id FROM households WHERE id = ?", [household_id]).fetchone()
        if row is None:
            return False
        grid = row[0]
    change = db.execute(
        "SELECT old_version FROM scope_changes WHERE person_id = ? AND at_ms > ? "
        "ORDER BY at_ms, id LIMIT 1",
        [scope.person_id, at_ms],
    ).fetchone()
    if change is None:
        return scope.allows_grid(grid)
    past = grids_of_version(db, scope.person_id, change[0])
    if past is None:
        return False
    everything, grids = past
    return everything or grid in grids

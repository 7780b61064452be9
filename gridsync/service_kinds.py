"""Service kinds covered by visits, kept per (grid, kind) and per (grid, member, kind) as the time
of the newest non-voided visit (migration ``0007_coverage_kinds``).

A report asks "which kinds did this grid's (this member's) visits cover since the start of the
cycle?"; with the newest visit time kept, that is ``last_ms >= cycle_start`` over a few thousand
rows instead of a stream over the cycle's visits (about 940,000 in a district).

The tables are kept by the code that writes visits, not by triggers: a per-row trigger has to
split each visit's ``kinds`` JSON (``json_each``) and costs the push more than the push budget
allows (bench/README.md, section 3), whereas one batch of 500 visits touches a handful of keys.
Every writer of visits calls one of the two functions below:

- :func:`note_visits` after inserting new visits (sync's ``visit.create``);
- :func:`visit_voided` after voiding a visit (sync's ``visit.void``): a recount of its grid,
  only when the visit was the newest of one of its keys;
- :func:`recount` after moving visits to another grid (a household's grid move) and after bulk
  loads (the demo, the migration), for the grids touched (or all).

``tests/test_service_kinds.py`` checks the kept rows against :func:`recount` after each path.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
import sqlite_utils

_kinds = msgspec.json.Decoder(list[str])

_UPSERT_MEMBER = (
    "INSERT INTO coverage_member_kinds (grid_id, member_id, kind, last_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (grid_id, member_id, kind) DO UPDATE SET last_ms = excluded.last_ms "
    "WHERE excluded.last_ms > last_ms"
)
_UPSERT_GRID = (
    "INSERT INTO coverage_grid_kinds (grid_id, kind, last_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (grid_id, kind) DO UPDATE SET last_ms = excluded.last_ms "
    "WHERE excluded.last_ms > last_ms"
)


def note_visits(
    db: sqlite_utils.Database, visits: Iterable[tuple[str, str, Iterable[str], int]]
) -> None:
    """Keep the kinds of newly inserted, non-voided visits: ``(grid_id, member_id, kinds,
    at_ms)`` each. One upsert per distinct key of the batch, the newest time winning."""
    by_member: dict[tuple[str, str, str], int] = {}
    for grid, member, kinds, at_ms in visits:
        for kind in kinds:
            key = (grid, member, kind)
            if at_ms > by_member.get(key, -1):
                by_member[key] = at_ms
    if not by_member:
        return
    by_grid: dict[tuple[str, str], int] = {}
    for (grid, _, kind), at_ms in by_member.items():
        if at_ms > by_grid.get((grid, kind), -1):
            by_grid[(grid, kind)] = at_ms
    db.conn.executemany(_UPSERT_MEMBER, [(*key, ms) for key, ms in by_member.items()])
    db.conn.executemany(_UPSERT_GRID, [(*key, ms) for key, ms in by_grid.items()])


def visit_voided(
    db: sqlite_utils.Database, grid_id: str, member_id: str, kinds: str, at_ms: int
) -> None:
    """After voiding a visit (``kinds`` as stored): its grid is recounted only if the visit was
    the newest of one of its keys; otherwise a newer visit keeps every kept time as it is."""
    listed = _kinds.decode(kinds)
    if not listed:
        return
    newest = db.execute(
        "SELECT 1 FROM coverage_member_kinds WHERE grid_id = ? AND member_id = ? AND last_ms = ? "
        "AND kind IN (SELECT value FROM json_each(?)) LIMIT 1",
        [grid_id, member_id, at_ms, kinds],
    ).fetchone()
    if newest is not None:
        recount(db, [grid_id])


def recount(db: sqlite_utils.Database, grid_ids: Iterable[str] | None = None) -> None:
    """Recount the kept kinds of ``grid_ids`` (default: every grid) from their visits."""
    if grid_ids is None:
        cond, params = "1", []
    else:
        cond = "grid_id IN (SELECT value FROM json_each(?))"
        params = [msgspec.json.encode(sorted(set(grid_ids))).decode()]
    db.execute(f"DELETE FROM coverage_member_kinds WHERE {cond}", params)
    db.execute(f"DELETE FROM coverage_grid_kinds WHERE {cond}", params)
    # (grid, member, kinds JSON) first: a kinds list has few distinct values, so each is split
    # once per member instead of once per visit
    rows = db.execute(
        f"""SELECT grid_id, member_id, kinds, max(at_ms) FROM visits
            WHERE voided = 0 AND kinds <> '[]' AND {cond}
            GROUP BY grid_id, member_id, kinds""",
        params,
    )
    decoded: dict[str, list[str]] = {}

    def kinds_of(raw: str) -> list[str]:
        if raw not in decoded:
            decoded[raw] = _kinds.decode(raw)
        return decoded[raw]

    note_visits(db, ((grid, member, kinds_of(raw), at_ms) for grid, member, raw, at_ms in rows))

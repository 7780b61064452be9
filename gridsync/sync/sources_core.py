"""Pull sources of the sync area: ``org_unit``, ``person``, ``household``, ``visit``.

Each lists the changes of its type in a scope with ``after_seq < seq <= upto_seq``, ordered by
``seq``, at most ``limit``. Households that left the scope by moving to another grid come as
``remove`` (from ``household_moves``); a household's phone is masked unless the scope's reader
may read it (``Scope.phones``, gridsync/privacy.py). Visits are those of the current and
previous coverage cycle (``at`` within ``2 * cycle_days`` of now), taken from
:data:`PULL_WINDOW`, which pull sets for the read; a device drops older visits itself.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import NamedTuple

import msgspec
import sqlite_utils

from gridsync import org
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.models import OrgUnit
from gridsync.org import Scope
from gridsync.sync.sources import SourceChange, register_source

_json = msgspec.json.Encoder()


class PullWindow(NamedTuple):
    visits_since_ms: int


PULL_WINDOW: ContextVar[PullWindow] = ContextVar("PULL_WINDOW", default=PullWindow(0))  # noqa: B039 (a NamedTuple)


@register_source("org_unit")
def org_unit_changes(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    cond, params = scope.unit_filter("id")
    rows = db.execute(
        f"SELECT id, kind, name, parent_id, grid_id, seq FROM org_units "
        f"WHERE seq > ? AND seq <= ? AND {cond} ORDER BY seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    return [
        SourceChange(
            r[5], r[0], "put", OrgUnit(id=r[0], kind=r[1], name=r[2], parent_id=r[3], grid_id=r[4])
        )
        for r in rows
    ]


@register_source("person")
def person_changes(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    cond, params = org._people_scope_filter(scope)
    rows = db.execute(
        f"SELECT {org._PERSON_COLS}, p.seq FROM people p "
        f"WHERE p.seq > ? AND p.seq <= ? AND {cond} ORDER BY p.seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    people = org._people_with_scope(db, [r[:5] for r in rows])
    return [SourceChange(r[5], p.id, "put", p) for r, p in zip(rows, people)]


@register_source("household")
def household_changes(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    cond, params = scope.grid_filter("h.grid_id")
    rows = db.execute(
        f"SELECT {HOUSEHOLD_SELECT}, h.seq FROM households h "
        f"WHERE h.seq > ? AND h.seq <= ? AND {cond} ORDER BY h.seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    phones = scope.phones  # each household's phone as this reader may read it
    changes = [SourceChange(r[-1], r[0], "put", household_from_row(r, phones)) for r in rows]
    if not scope.everything:
        from_cond, from_params = scope.grid_filter("m.from_grid")
        to_cond, to_params = scope.grid_filter("m.to_grid")
        # Left the scope by this move (a later move back in comes as a put at a later seq).
        moves = db.execute(
            f"SELECT m.household_id, m.seq FROM household_moves m "
            f"WHERE m.seq > ? AND m.seq <= ? AND {from_cond} AND NOT ({to_cond}) "
            f"ORDER BY m.seq LIMIT ?",
            [after_seq, upto_seq, *from_params, *to_params, limit],
        ).fetchall()
        if moves:
            changes += [SourceChange(seq, hid, "remove", None) for hid, seq in moves]
            changes.sort(key=lambda c: c.seq)
            changes = changes[:limit]
    return changes


@register_source("visit", bulk=True)
def visit_changes(
    db: sqlite_utils.Database, scope: Scope, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    """Visits ordered by seq across the scope's grids, read in seq windows.

    One ``grid_id IN (...) AND seq > after ORDER BY seq LIMIT n`` query reads and sorts every
    remaining visit of the scope on each page, so a snapshot would cost the square of its size
    (bench/README.md). Instead the page is read in windows ``(lo, hi]`` of seq: SQLite reads
    each grid's range of the window on ``visits_grid_seq`` and sorts only the window's rows. The
    first window spans ``limit`` seqs; the next ones are sized from the density seen so far, so
    a dense scope (a street's snapshot) takes one or two queries a page and a sparse one (a
    member's single grid in a district) a few growing probes.
    """
    since = PULL_WINDOW.get().visits_since_ms
    grids = (
        sorted(r[0] for r in db.execute("SELECT id FROM org_units WHERE kind = 'grid'"))
        if scope.everything
        else sorted(scope.grid_ids)
    )
    if not grids or after_seq >= upto_seq:
        return []
    grid_list = _json.encode(grids).decode()
    sql = (
        f"SELECT {VISIT_SELECT}, v.seq FROM visits v INDEXED BY visits_grid_seq "
        "WHERE v.grid_id IN (SELECT value FROM json_each(?)) AND v.seq > ? AND v.seq <= ? "
        "AND v.at_ms >= ? ORDER BY v.seq LIMIT ?"
    )
    rows: list[tuple] = []
    lo, width = after_seq, limit
    while lo < upto_seq:
        hi = min(upto_seq, lo + width)
        got = db.execute(sql, [grid_list, lo, hi, since, limit - len(rows)]).fetchall()
        rows += got
        if len(rows) >= limit:
            break
        # Next window: eight times wider after an empty one, else sized from the density seen
        # (a quarter more, so that the page is usually complete after it).
        width = width * 8 if not got else (limit - len(rows)) * (hi - lo) * 5 // (4 * len(got)) + 1
        lo = hi
    return [SourceChange(r[-1], r[0], "put", visit_from_row(r)) for r in rows]

"""The conflict log for secretaries: list the losing values of their scope, restore one, or
dismiss it.

A restore is a new change: the value is written with a fresh server HLC (newer than anything the
server accepted), the household gets a new change seq, and phones receive it by pull. The value
it displaces is not dropped either: it is logged as a conflict already resolved (``dismissed``,
resolved by the restorer), so the log still holds every value that ever lost.

The log keeps phone numbers whole; a reader gets the two sides of a ``phone`` conflict as they
may read that household's number (gridsync/privacy.py). A restore writes the stored value, not
the masked one the reader saw.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.auth import Principal
from gridsync.clock import Clock, iso_ms
from gridsync.db import and_given, next_seq, paged
from gridsync.errors import Conflict, NotFound, OutOfScope
from gridsync.models import ConflictEntry
from gridsync.org import Scope
from gridsync.privacy import shown_phone
from gridsync.sync import merge
from gridsync.sync.hlc import ServerClock
from gridsync.sync.merge import Lost, Stamp

_COLS = (
    "id, household_id, grid_id, field, value, winner, lost_hlc, lost_person_id, "
    "lost_device_id, winner_hlc, winner_person_id, winner_device_id, mid, created_ms, "
    "status, resolved_ms, resolved_by"
)
_any = msgspec.json.Decoder()


def _entry(r: tuple) -> ConflictEntry:
    return ConflictEntry(
        id=r[0],
        household_id=r[1],
        grid_id=r[2],
        field=r[3],
        value=_any.decode(r[4]),
        winner=_any.decode(r[5]),
        lost_hlc=r[6],
        lost_person_id=r[7],
        lost_device_id=r[8],
        winner_hlc=r[9],
        winner_person_id=r[10],
        winner_device_id=r[11],
        mid=r[12],
        created_at=iso_ms(r[13]),
        status=r[14],
        resolved_at=iso_ms(r[15]) if r[15] else None,
        resolved_by=r[16],
    )


def list_conflicts(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    status: str | None = "open",
    household_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[ConflictEntry], int]:
    where, params = and_given(
        *scope.grid_filter("grid_id"), ("status = ?", status), ("household_id = ?", household_id)
    )
    rows, total = paged(
        db,
        _COLS,
        "sync_conflicts WHERE " + where,
        params,
        order_by="id DESC",
        limit=limit,
        offset=offset,
    )
    return _as_read(db, scope, [_entry(r) for r in rows]), total


def _as_read(
    db: sqlite_utils.Database, scope: Scope, entries: list[ConflictEntry]
) -> list[ConflictEntry]:
    """Phone conflicts with both sides as the scope's reader may read that household's number
    (by its grid and responsible member now)."""
    ids = sorted({e.household_id for e in entries if e.field == "phone"})
    if not ids or scope.phones.everything:
        return entries
    now = {
        r[0]: (r[1], r[2])
        for r in db.execute(
            "SELECT id, grid_id, responsible_member_id FROM households "
            "WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(ids).decode()],
        )
    }
    for e in entries:
        if e.field != "phone":
            continue
        grid, responsible = now.get(e.household_id, (e.grid_id, None))
        if isinstance(e.value, str):
            e.value = shown_phone(scope.phones, e.value, grid, responsible)
        if isinstance(e.winner, str):
            e.winner = shown_phone(scope.phones, e.winner, grid, responsible)
    return entries


def pending_count(db: sqlite_utils.Database, scope: Scope) -> int:
    cond, params = scope.grid_filter("grid_id")
    return db.execute(
        f"SELECT count(*) FROM sync_conflicts WHERE status = 'open' AND {cond}", params
    ).fetchone()[0]


def _stored(db: sqlite_utils.Database, scope: Scope, conflict_id: int) -> ConflictEntry:
    """A conflict in the scope with its values as stored (restore writes these)."""
    row = db.execute(f"SELECT {_COLS} FROM sync_conflicts WHERE id = ?", [conflict_id]).fetchone()
    if row is None or not scope.allows_grid(row[2]):
        raise NotFound(f"no conflict {conflict_id}")
    return _entry(row)


def get_conflict(db: sqlite_utils.Database, scope: Scope, conflict_id: int) -> ConflictEntry:
    """A conflict as the scope's reader may read it."""
    return _as_read(db, scope, [_stored(db, scope, conflict_id)])[0]


def _open(db: sqlite_utils.Database, principal: Principal, conflict_id: int) -> ConflictEntry:
    entry = _stored(db, principal.scope, conflict_id)
    if entry.status != "open":
        raise Conflict(f"conflict {conflict_id} is {entry.status} already", code="conflict_closed")
    return entry


def restore(
    db: sqlite_utils.Database, principal: Principal, conflict_id: int, note: str, clock: Clock
) -> ConflictEntry:
    entry = _open(db, principal, conflict_id)
    state = merge.load(db, entry.household_id)
    if state is None:
        raise NotFound(f"no household {entry.household_id}")
    if not principal.scope.allows_grid(state.values["grid_id"]):
        raise OutOfScope(f"household {entry.household_id} is outside your scope now")
    now_ms = clock.now_ms()
    server = ServerClock(db, now_ms)
    seq = next_seq(db)
    writer = Stamp(server.tick(), seq, principal.device_id, principal.person_id)
    displaced: Any
    if entry.field.startswith("tags:"):
        tag = entry.field[5:]
        displaced = tag in state.tags
        if bool(entry.value):
            merge.add_tag(state, tag, writer, seq)
        else:
            merge.remove_tag(state, tag, writer, seq)
        current_stamp = None
    else:
        if entry.field not in merge.MERGED_FIELDS or entry.field == "responsible_member_id":
            raise Conflict(f"field {entry.field} cannot be restored", code="not_restorable")
        if entry.field == "grid_id" and not principal.scope.allows_grid(entry.value):
            raise OutOfScope(f"grid {entry.value} is outside your scope")
        displaced = state.values[entry.field]
        current_stamp = state.stamp(entry.field)
        state.values[entry.field] = entry.value
        state.stamps[entry.field] = writer
        state.changed.add(entry.field)
    merge.save(db, state, seq, iso_ms(now_ms))
    if displaced != entry.value:
        ids = merge.record_conflicts(
            db,
            state,
            [
                Lost(
                    entry.field,
                    displaced,
                    entry.value,
                    lost=current_stamp or Stamp("", state.seq),
                    won=writer,
                )
            ],
            None,
            now_ms,
        )
        db.execute(
            "UPDATE sync_conflicts SET status = 'dismissed', resolved_ms = ?, "
            "resolved_by = ? WHERE id = ?",
            [now_ms, principal.person_id, ids[0]],
        )
    db.execute(
        "UPDATE sync_conflicts SET status = 'restored', resolved_ms = ?, resolved_by = ? "
        "WHERE id = ?",
        [now_ms, principal.person_id, conflict_id],
    )
    server.save()
    audit.record(
        db,
        principal.actor,
        "sync.conflict.restore",
        target=entry.household_id,
        detail={
            "conflict_id": conflict_id,
            "field": entry.field,
            "note": note,
            "hlc": writer.hlc,
            "seq": seq,
        },
        clock=clock,
    )
    return get_conflict(db, principal.scope, conflict_id)


def dismiss(
    db: sqlite_utils.Database, principal: Principal, conflict_id: int, note: str, clock: Clock
) -> ConflictEntry:
    _open(db, principal, conflict_id)
    now_ms = clock.now_ms()
    db.execute(
        "UPDATE sync_conflicts SET status = 'dismissed', resolved_ms = ?, resolved_by = ? "
        "WHERE id = ?",
        [now_ms, principal.person_id, conflict_id],
    )
    audit.record(
        db,
        principal.actor,
        "sync.conflict.dismiss",
        target=str(conflict_id),
        detail={"note": note},
        clock=clock,
    )
    return get_conflict(db, principal.scope, conflict_id)

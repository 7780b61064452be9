"""Pull (SPEC 3.2): paged changes of a person's scope behind an opaque cursor.

The cursor is ``base64url(msgpack([1, epoch, scope_version, after, upto, old_version, resume,
removed_upto, removes_done, exhausted]))``, trailing fields at their default left out:

* ``after``: the server change seq the device has applied up to (written in the same
  transaction as the change, never wall time);
* ``upto`` > 0: the device is in a *snapshot*, pinned at this seq when it began, so every page
  of it reads the same state: a row changed meanwhile has a seq above ``upto`` and comes in the
  incremental phase that follows. No cursor starts the initial snapshot;
* ``old_version`` > 0: the person's scope changed from that version while the device was synced:
  first ``remove`` for every household of the grids that left the scope (paged by household id:
  ``removed_upto``/``removes_done``), then a snapshot of the grids that entered it and of those
  whose phone numbers the person now reads otherwise (gridsync/privacy.py), then the
  incremental phase resumes at ``resume``;
* ``exhausted``: while ``upto`` is fixed (a snapshot, or the grids that entered the scope), the
  change types whose source had nothing left up to ``upto``: later pages do not ask them again
  (rows of a source in ``(after, upto]`` can only leave that range: a change takes a new seq above
  ``upto``). A cursor without it (older servers) asks every source;
* ``epoch`` and ``scope_version``: a cursor of another database (restored, re-initialised), one
  older than the tombstone horizon (``meta.sync_horizon_seq``), one that does not decode, or a
  scope version that this server never recorded, gets ``reset: true`` and a new snapshot.

Each page is read inside one read transaction (``Store.aread``): one consistent snapshot.
"""

from __future__ import annotations

import base64
import dataclasses
from dataclasses import dataclass
from typing import Annotated

import msgspec
import sqlite_utils

from gridsync import coverage
from gridsync.clock import DAY_MS
from gridsync.config import Settings
from gridsync.db import current_seq, epoch
from gridsync.models import Change, ChangeType, PullResponse
from gridsync.org import Scope
from gridsync.sync import hlc
from gridsync.sync import scope as sync_scope
from gridsync.sync.registry import ordered_sources
from gridsync.sync.sources import SourceChange, SourceContext

CURSOR_VERSION = 1


# A cursor comes back from the phone: every number is a seq or a scope version (well inside
# SQLite's 64-bit integers; 2**64 - 1 overflowed the query, a 500), every string an id. A
# cursor outside these bounds does not decode, so the pull answers ``reset: true``.
Seq = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
CursorId = Annotated[str, msgspec.Meta(max_length=64)]


class Cursor(msgspec.Struct, array_like=True):
    v: Seq
    epoch: CursorId
    sv: Seq
    after: Seq
    upto: Seq = 0
    old_sv: Seq = 0
    resume: Seq = 0
    rm: CursorId = ""
    rm_done: bool = False
    exhausted: Annotated[
        tuple[Annotated[str, msgspec.Meta(max_length=32)], ...], msgspec.Meta(max_length=16)
    ] = ()


_cursor_decoder = msgspec.msgpack.Decoder(Cursor)
_cursor_encoder = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()


_REQUIRED = 4  # v, epoch, sv, after
_TAIL_DEFAULTS = msgspec.structs.astuple(Cursor(CURSOR_VERSION, "", 0, 0))


def encode_cursor(c: Cursor) -> str:
    fields = list(msgspec.structs.astuple(c))
    while len(fields) > _REQUIRED and fields[-1] == _TAIL_DEFAULTS[len(fields) - 1]:
        fields.pop()  # the decoder fills them in (msgspec keeps them on array_like Structs)
    return base64.urlsafe_b64encode(_cursor_encoder.encode(fields)).rstrip(b"=").decode()


def decode_cursor(value: str) -> Cursor | None:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        cursor = _cursor_decoder.decode(raw)
    except (ValueError, msgspec.DecodeError, RecursionError):
        return None  # ValueError covers bad base64 and invalid UTF-8 (UnicodeDecodeError)
    if cursor.v != CURSOR_VERSION:
        return None
    return cursor


@dataclass
class PullResult:
    response: PullResponse
    snapshot_started: bool  # the first page of an initial snapshot (audited as a bulk read)
    scope_known: bool  # the person's current scope version is recorded


def _collect(
    ctx: SourceContext,
    after: int,
    upto: int,
    limit: int,
    removes: bool,
    exhausted: tuple[str, ...] = (),
) -> tuple[list[Change], int, bool, tuple[str, ...]]:
    """One page of changes in ``(after, upto]``: (changes, new after, more to come, the types
    whose source has nothing left up to ``upto`` after this page).

    The page is the ``limit`` lowest seqs over all sources. Once the sources asked so far hold
    ``limit`` changes at or below some seq, no later source can contribute above it, so each
    source is asked only up to that running bound (the bulk ``visit`` source last): sources do
    not read and convert rows that the merge would throw away. Sources of ``exhausted`` types
    are not asked; a source asked up to ``upto`` itself that returned fewer than ``limit``
    changes is exhausted once the page holds all of them (checked against the final bound).
    """
    parts: list[tuple[ChangeType, list[SourceChange]]] = []
    seqs: list[int] = []
    bound = upto
    done = set(exhausted)
    complete: list[tuple[str, int]] = []  # (type, highest seq) of the sources that gave all
    for type_name, source in ordered_sources():
        if type_name in done:
            continue
        asked = bound
        listed = source(ctx, after, bound, limit)[:limit]
        if asked == upto and len(listed) < limit:
            complete.append((type_name, listed[-1].seq if listed else 0))
        got = [c for c in listed if c.seq <= bound]
        if not got:
            continue
        parts.append((type_name, got))
        seqs += [c.seq for c in got]
        if len(seqs) >= limit:
            seqs.sort()
            bound = seqs[limit - 1]
    if len(parts) == 1:  # one source (the common case): its changes are in seq order already
        type_name, got = parts[0]
        merged = [(type_name, c) for c in got if c.seq <= bound]
    else:
        merged = sorted(((t, c) for t, got in parts for c in got if c.seq <= bound), key=_seq)
    more = bound < upto
    if len(merged) > limit:
        cut = merged[limit - 1][1].seq
        if merged[limit][1].seq == cut:
            kept = [x for x in merged if x[1].seq < cut]
            merged = kept or [x for x in merged if x[1].seq <= cut]
        else:
            merged = merged[:limit]
        more = True
        bound = merged[-1][1].seq
    changes = [
        Change(type=t, id=c.id, seq=c.seq, op=c.op, data=c.data)
        for t, c in merged
        if removes or c.op != "remove"
    ]
    done.update(t for t, last in complete if last <= bound)
    return changes, bound, more, tuple(sorted(done))


def _seq(item: tuple[str, SourceChange]) -> int:
    return item[1].seq


def _restricted(scope: Scope, grid_ids: frozenset[str]) -> Scope:
    return dataclasses.replace(scope, everything=False, grid_ids=grid_ids)


def _resent_grids(
    db: sqlite_utils.Database, scope: Scope, old_sv: int, old_grids: frozenset[str]
) -> frozenset[str]:
    """The grids a scope change sends again: those that entered the scope, and those whose
    phone numbers the person now reads otherwise (full <-> masked: a new or lost community
    secretary or grid worker role; gridsync/privacy.py). All of them when the old version's
    phone grids are unknown (recorded before migration 0011)."""
    old_phones = sync_scope.phone_grids_of_version(db, scope.person_id, old_sv)
    if old_phones is None:
        return scope.grid_ids
    return (scope.grid_ids - old_grids) | ((old_phones ^ scope.phones.grids) & scope.grid_ids)


def pull(
    db: sqlite_utils.Database,
    scope: Scope,
    cursor_value: str | None,
    limit: int,
    now_ms: int,
    cycle_days: int,
) -> PullResult:
    """One page for ``scope`` after ``cursor_value``, from the first phase the cursor has not
    finished: the removes of grids that left the scope, a pinned snapshot (of the whole scope,
    or of the grids that entered it), then the changes since. ``now_ms`` is the request's
    clock, read once: every source of the page gets it in one :class:`SourceContext` (with the
    visit window, two of ``cycle_days`` back from it)."""
    ctx = SourceContext(db, scope, now_ms, visits_since_ms=now_ms - 2 * cycle_days * DAY_MS)
    ep = epoch(db)
    head = current_seq(db)
    cursor, reset = _usable_cursor(db, scope, cursor_value, ep, head)
    started = cursor is None
    if cursor is None:
        cursor = Cursor(CURSOR_VERSION, ep, scope.version, 0, head)
    known = sync_scope.is_remembered(db, scope)
    server_hlc = hlc.current(db, now_ms)

    def done(changes: list[Change], nxt: Cursor, more: bool) -> PullResult:
        return PullResult(
            PullResponse(
                changes=changes,
                cursor=encode_cursor(nxt),
                has_more=more,
                reset=reset,
                server_hlc=server_hlc,
            ),
            started,
            known,
        )

    if cursor.old_sv and not cursor.rm_done:
        changes, last_id, finished = _removes(db, scope, cursor, limit)
        nxt = msgspec.structs.replace(cursor, rm=last_id, rm_done=finished)
        return done(changes, nxt, True)
    if cursor.old_sv or cursor.upto:
        return done(*_snapshot_page(ctx, cursor, ep, head, limit))
    changes, after, more, _ = _collect(ctx, cursor.after, head, limit, True)
    return done(changes, Cursor(CURSOR_VERSION, ep, scope.version, after), more)


def _usable_cursor(
    db: sqlite_utils.Database, scope: Scope, cursor_value: str | None, ep: str, head: int
) -> tuple[Cursor | None, bool]:
    """The cursor to go on from (None: start a snapshot), and whether the phone must reset:
    a cursor that does not read, of another database epoch, older than the tombstone horizon,
    of a scope changed in the middle of a snapshot, or of a scope version never recorded. A
    cursor of a finished sync under an older scope moves to the new one (removes first)."""
    reset = False
    cursor = decode_cursor(cursor_value) if cursor_value else None
    if cursor_value and (cursor is None or cursor.epoch != ep or _too_old(db, cursor)):
        cursor, reset = None, True
    if cursor is not None and cursor.sv != scope.version:
        if cursor.upto == 0:  # synced under an older scope: move to the new one
            if sync_scope.grids_of_version(db, scope.person_id, cursor.sv) is None:
                cursor, reset = None, True
            else:
                cursor = Cursor(
                    CURSOR_VERSION,
                    ep,
                    scope.version,
                    0,
                    head,
                    old_sv=cursor.sv,
                    resume=cursor.after,
                )
        else:  # the scope changed in the middle of a snapshot: start over
            cursor, reset = None, True
    if (
        cursor is not None
        and cursor.old_sv
        and sync_scope.grids_of_version(db, scope.person_id, cursor.old_sv) is None
    ):
        cursor, reset = None, True  # a transition from a scope version never recorded
    return cursor, reset


def _snapshot_page(
    ctx: SourceContext, cursor: Cursor, ep: str, head: int, limit: int
) -> tuple[list[Change], Cursor, bool]:
    """A page of a pinned snapshot (after, upto]: of the whole scope, or of the grids that
    entered it, after which the old position resumes. (changes, next cursor, has_more)."""
    db, scope = ctx.db, ctx.scope
    if cursor.old_sv:
        old = sync_scope.grids_of_version(db, scope.person_id, cursor.old_sv)
        pinned = (
            scope
            if scope.everything or old is None or old[0]
            else _restricted(scope, _resent_grids(db, scope, cursor.old_sv, old[1]))
        )
        then, more_then = Cursor(CURSOR_VERSION, ep, scope.version, cursor.resume), True
    else:
        pinned = scope
        then = Cursor(CURSOR_VERSION, ep, scope.version, cursor.upto)
        more_then = head > cursor.upto
    changes, after, more, exhausted = _collect(
        dataclasses.replace(ctx, scope=pinned),
        cursor.after,
        cursor.upto,
        limit,
        False,
        cursor.exhausted,
    )
    if more:
        return changes, msgspec.structs.replace(cursor, after=after, exhausted=exhausted), True
    return changes, then, more_then


def pull_page(
    db: sqlite_utils.Database,
    scope: Scope,
    cursor_value: str | None,
    limit: int,
    now_ms: int,
    settings: Settings,
) -> PullResult:
    """:func:`pull` with the visit window of the scope: two of the longest visit cycle among its
    communities' policies (:func:`gridsync.coverage.longest_cycle_days`)."""
    return pull(
        db, scope, cursor_value, limit, now_ms, coverage.longest_cycle_days(db, settings, scope)
    )


def _too_old(db: sqlite_utils.Database, cursor: Cursor) -> bool:
    if cursor.upto:
        return False
    row = db.execute("SELECT value FROM meta WHERE key = 'sync_horizon_seq'").fetchone()
    return row is not None and cursor.after < int(row[0])


def _removes(
    db: sqlite_utils.Database, scope: Scope, cursor: Cursor, limit: int
) -> tuple[list[Change], str, bool]:
    """``remove`` for each household in a grid that left the scope, paged by id."""
    if scope.everything:
        return [], cursor.rm, True
    old = sync_scope.grids_of_version(db, scope.person_id, cursor.old_sv)
    assert old is not None
    everything_before, old_grids = old
    new_cond, new_params = scope.grid_filter("grid_id")
    if everything_before:
        cond, params = f"NOT ({new_cond})", new_params
    else:
        left = sorted(old_grids - scope.grid_ids)
        if not left:
            return [], cursor.rm, True
        cond, params = "grid_id IN (SELECT value FROM json_each(?))", [_json.encode(left).decode()]
    rows = db.execute(
        f"SELECT id, seq FROM households WHERE {cond} AND id > ? ORDER BY id LIMIT ?",
        [*params, cursor.rm, limit],
    ).fetchall()
    changes = [Change(type="household", id=r[0], seq=r[1], op="remove") for r in rows]
    return changes, rows[-1][0] if rows else cursor.rm, len(rows) < limit


def set_horizon(db: sqlite_utils.Database, seq: int) -> None:
    """Cursors older than ``seq`` get ``reset`` (call after pruning tombstones up to it)."""
    db.execute("UPDATE meta SET value = ? WHERE key = 'sync_horizon_seq'", [str(seq)])

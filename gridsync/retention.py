"""Retention: what the server forgets, and when (``Settings.retention_days``, default 180).

Forgotten once older than the retention period:

- notifications that are done (outbox rows ``sent`` or ``failed``) and the marks of digest runs;
- people's notices (their inbox), read or not: phones no longer receive them either (they get
  the last 30 days, ``NOTICE_VISIBLE_DAYS``), and a ``notice.read`` of a pruned one is
  ``rejected``/``unknown_notice``;
- the sync's tombstones: household moves between grids (``household_moves``) and changes of a
  person's scope (``scope_changes``).

What that costs, kept honest by two marks in ``meta``:

- ``sync_horizon_seq``: a pull cursor older than the newest forgotten move could miss that move's
  ``remove``, so it gets ``reset: true`` and the phone re-syncs (SPEC 3.2).
- ``sync_horizon_ms``: an edit dated before the forgotten history can no longer show that its
  household was in the phone's scope when it was made, so an edit of a household outside the
  scope that old is ``out_of_scope`` like any foreign edit (:func:`gridsync.sync.scope.was_in_scope`).

Never pruned: households, visits, people and org units, whistle cases, the audit log, the conflict
log and the mutation log.

``gridsync serve`` prunes once a day (:func:`run_daily`, from the periodic work);
``gridsync prune`` does it at once. Deletes go in chunks of short write transactions, so a first
prune of a large database never holds the writer (and the phones' pushes) for long.
"""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import DAY_MS
from gridsync.db import Store

CHUNK = 5_000


class PruneReport(msgspec.Struct, kw_only=True):
    cutoff_ms: int  # rows older than this were forgotten
    outbox: int = 0
    notices: int = 0
    notify_runs: int = 0
    household_moves: int = 0
    scope_changes: int = 0
    horizon_seq: int = 0  # pull cursors below this get reset
    horizon_ms: int = 0  # edits dated before this cannot prove an earlier scope


def _meta_int(db: sqlite_utils.Database, key: str) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return int(row[0]) if row else 0


def _raise_meta(db: sqlite_utils.Database, key: str, value: int) -> int:
    """Set a monotonic mark in ``meta`` to at least ``value``; returns the mark."""
    value = max(value, _meta_int(db, key))
    db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, str(value)],
    )
    return value


def horizon_ms(db: sqlite_utils.Database) -> int:
    """Edits dated before this cannot prove they were made while in scope (0: never pruned)."""
    return _meta_int(db, "sync_horizon_ms")


def prune_chunk(db: sqlite_utils.Database, cutoff_ms: int, limit: int = CHUNK) -> PruneReport:
    """Forget up to ``limit`` rows of each kind older than ``cutoff_ms``, in the caller's write
    transaction, and raise the horizons to match."""
    report = PruneReport(cutoff_ms=cutoff_ms)
    report.outbox = db.execute(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state IN ('sent', 'failed') "
        "AND created_ms < ? LIMIT ?)",
        [cutoff_ms, limit],
    ).rowcount
    report.notices = db.execute(
        "DELETE FROM notices WHERE id IN (SELECT id FROM notices WHERE created_ms < ? LIMIT ?)",
        [cutoff_ms, limit],
    ).rowcount
    report.notify_runs = db.execute(
        "DELETE FROM notify_runs WHERE key IN (SELECT key FROM notify_runs WHERE at_ms < ? "
        "LIMIT ?)",
        [cutoff_ms, limit],
    ).rowcount
    moved = db.execute(
        "SELECT id, seq FROM household_moves WHERE at_ms < ? ORDER BY id LIMIT ?",
        [cutoff_ms, limit],
    ).fetchall()
    if moved:
        db.execute(
            "DELETE FROM household_moves WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode([r[0] for r in moved]).decode()],
        )
        report.household_moves = len(moved)
    report.scope_changes = db.execute(
        "DELETE FROM scope_changes WHERE id IN (SELECT id FROM scope_changes WHERE at_ms < ? "
        "LIMIT ?)",
        [cutoff_ms, limit],
    ).rowcount
    # Order matters to nobody here: both marks only ever go up.
    report.horizon_seq = _raise_meta(db, "sync_horizon_seq", max((r[1] for r in moved), default=0))
    report.horizon_ms = _raise_meta(db, "sync_horizon_ms", cutoff_ms)
    return report


COUNTED = ("outbox", "notices", "notify_runs", "household_moves", "scope_changes")
SWEEP = Actor(person_id=None, device_id="sweep")


def prune(store: Store, *, now_ms: int, keep_days: int, actor: Actor = SWEEP) -> PruneReport:
    """Forget everything older than ``keep_days`` days, chunk by chunk; audited."""
    cutoff = now_ms - keep_days * DAY_MS
    total = PruneReport(cutoff_ms=cutoff)
    while True:
        step = store.write(prune_chunk, cutoff)
        for name in COUNTED:
            setattr(total, name, getattr(total, name) + getattr(step, name))
        total.horizon_seq, total.horizon_ms = step.horizon_seq, step.horizon_ms
        if max(getattr(step, name) for name in COUNTED) < CHUNK:
            break
    store.write(
        lambda db: audit.record(
            db,
            actor,
            "retention.prune",
            detail={"keep_days": keep_days, **msgspec.structs.asdict(total)},
        )
    )
    return total


def run_daily(store: Store, *, now_ms: int, keep_days: int) -> PruneReport | None:
    """:func:`prune` once per UTC day (the periodic work calls this every round)."""
    day = datetime.fromtimestamp(now_ms / 1000, tz=UTC).date().isoformat()
    key = f"prune:{day}"
    claimed = store.write(
        lambda db: (
            db.execute(
                "INSERT INTO notify_runs (key, at_ms) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
                [key, now_ms],
            ).rowcount
            == 1
        )
    )
    if not claimed:
        return None
    return prune(store, now_ms=now_ms, keep_days=keep_days)

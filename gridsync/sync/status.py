"""``GET /api/v1/sync/status`` and the bookkeeping after a pull page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlite_utils

from gridsync import audit, coverage, org
from gridsync.auth import Principal
from gridsync.clock import DAY_MS, Clock
from gridsync.config import Settings
from gridsync.db import current_seq
from gridsync.models import SyncStatus
from gridsync.sync import conflicts, hlc
from gridsync.sync import scope as sync_scope

if TYPE_CHECKING:  # pull and status are siblings in the import contract: no import at run time
    from gridsync.sync.pull import PullResult

# Average gzip bytes per record in a full sync, measured on demo-like data (tests check the
# estimate against a real first sync within a factor of two).
GZIP_BYTES = {"org_unit": 30, "person": 40, "household": 45, "visit": 40}


def after_pull(
    db: sqlite_utils.Database, principal: Principal, result: PullResult, clock: Clock
) -> None:
    """Remember the scope version the device now syncs under; audit a snapshot's start."""
    sync_scope.remember(db, principal.scope)
    if result.snapshot_started:
        audit.record(
            db,
            principal.actor,
            "sync.snapshot",
            target=principal.device_id,
            detail={"reset": result.response.reset, "first_page": len(result.response.changes)},
            clock=clock,
        )


def sync_status(
    db: sqlite_utils.Database, principal: Principal, now_ms: int, settings: Settings
) -> SyncStatus:
    scope = principal.scope
    cycle_days = coverage.longest_cycle_days(db, settings, scope)  # the pull's visit window
    grid_cond, grid_params = scope.grid_filter("grid_id")
    unit_cond, unit_params = scope.unit_filter("id")
    people_cond, people_params = org._people_scope_filter(scope)
    counts = {
        "org_unit": db.execute(
            f"SELECT count(*) FROM org_units WHERE {unit_cond}", unit_params
        ).fetchone()[0],
        "person": db.execute(
            f"SELECT count(*) FROM people p WHERE {people_cond}", people_params
        ).fetchone()[0],
        "household": db.execute(
            f"SELECT count(*) FROM households WHERE {grid_cond}", grid_params
        ).fetchone()[0],
        "visit": db.execute(
            f"SELECT count(*) FROM visits WHERE {grid_cond} AND at_ms >= ?",
            [*grid_params, now_ms - 2 * cycle_days * DAY_MS],
        ).fetchone()[0],
    }
    last_seq = db.execute(
        "SELECT last_seq FROM devices WHERE id = ?", [principal.device_id]
    ).fetchone()
    return SyncStatus(
        server_hlc=hlc.current(db, now_ms),
        server_seq=current_seq(db),
        device_last_seq=last_seq[0] if last_seq else 0,
        full_sync_changes=sum(counts.values()),
        full_sync_bytes=sum(GZIP_BYTES[k] * n for k, n in counts.items()),
        pending_conflicts=conflicts.pending_count(db, scope),
        draining=principal.draining,
    )

"""Readiness: can this process do its job now? (``GET /readyz``; ``/healthz`` only says that
the process answers.)

Checks, each named in the answer when it fails:

- ``database``: a real write commits through the Store's writer within
  ``PROBE_TIMEOUT_SECONDS`` (it upserts ``meta.ready_probe_ms``). It fails when the file cannot
  be written (read-only file system, full disk), when another process holds SQLite's write lock,
  or when the writer thread is stuck behind a long write. Concurrent probes share one write, so
  a flood of /readyz calls costs one small commit at a time.
- ``migrations``: every migration of this code is applied and the database has none this code
  does not know (a database written by a newer gridsync).
- ``sweep`` and ``dispatcher``: the periodic loops (gridsync/sweep.py) are running, their last
  round did not fail, and neither is more than ``ready_max_lag_seconds`` behind its schedule on
  the app's clock. A process that runs no periodic work (``run_periodic=False``) skips them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import sqlite_utils

from gridsync.config import Settings
from gridsync.db import Store
from gridsync.metrics import LOOPS
from gridsync.migrations import migrations
from gridsync.sweep import PeriodicWorker

PROBE_TIMEOUT_SECONDS = 2.0


@dataclass
class Readiness:
    checks: dict[str, str] = field(default_factory=dict)  # name -> "ok" or what is wrong

    @property
    def failing(self) -> list[str]:
        return [name for name, state in self.checks.items() if state != "ok"]

    @property
    def ready(self) -> bool:
        return not self.failing

    def as_dict(self) -> dict:
        return {
            "status": "ready" if self.ready else "unready",
            "checks": self.checks,
            "failing": self.failing,
        }


def write_probe(db: sqlite_utils.Database, now_ms: int) -> None:
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('ready_probe_ms', ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [str(now_ms)],
    )


def migration_state(db: sqlite_utils.Database) -> str:
    pending = [m.name for m in migrations.pending(db)]
    known = {m.name for m in migrations._migrations}
    unknown = [m.name for m in migrations.applied(db) if m.name not in known]
    if pending:
        return f"pending: {', '.join(pending)}"
    if unknown:
        return f"the database has migrations this code does not know: {', '.join(unknown)}"
    return "ok"


class ReadinessProbe:
    """One per app. :meth:`check` never waits longer than ``PROBE_TIMEOUT_SECONDS``."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._write: asyncio.Future | None = None  # the probe write in flight, shared

    async def _database(self, store: Store, now_ms: int) -> str:
        if self._write is None or self._write.done():
            self._write = asyncio.ensure_future(store.awrite(write_probe, now_ms))
        try:
            await asyncio.wait_for(asyncio.shield(self._write), PROBE_TIMEOUT_SECONDS)
        except TimeoutError:
            return (
                f"no write committed within {PROBE_TIMEOUT_SECONDS:g} s (the database is "
                f"locked by another process or the writer is stuck; "
                f"{store.queue_length} writes waiting)"
            )
        except Exception as exc:
            return f"write failed: {type(exc).__name__}: {exc}"[:300]
        return "ok"

    async def check(self, store: Store, worker: PeriodicWorker | None, now_ms: int) -> Readiness:
        result = Readiness()
        result.checks["database"] = await self._database(store, now_ms)
        try:
            result.checks["migrations"] = await store.aread(migration_state)
        except Exception as exc:
            result.checks["migrations"] = f"cannot read: {type(exc).__name__}: {exc}"[:300]
        if worker is not None:
            max_lag_ms = self.settings.ready_max_lag_seconds * 1000
            for loop, name in LOOPS.items():
                beat = worker.heartbeats.get(loop)
                if beat is None or not worker.alive(loop):
                    result.checks[name] = "not running"
                elif beat.last_error is not None:
                    result.checks[name] = f"last round failed: {beat.last_error}"
                elif beat.lag_ms(now_ms) > max_lag_ms:
                    result.checks[name] = (
                        f"{beat.lag_ms(now_ms) / 1000:.0f} s behind schedule "
                        f"(limit {self.settings.ready_max_lag_seconds:g} s)"
                    )
                else:
                    result.checks[name] = "ok"
        return result

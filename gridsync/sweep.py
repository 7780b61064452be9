"""Periodic work: deadline checks, digests due, outbox delivery.

``run_once`` does one round at the clock's time; ``gridsync sweep [--now ISO-TIME]`` calls it
once (for cron, and to test at a chosen time), and ``gridsync serve`` runs it every
``Settings.sweep_interval_seconds`` on a worker thread (:class:`PeriodicWorker`), because a grid
case's accept deadline is one minute.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

import anyio.to_thread

from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.notify import digests
from gridsync.notify.dispatcher import Dispatcher
from gridsync.notify.routing import router_for
from gridsync.whistle import check_deadlines

log = logging.getLogger("gridsync.sweep")


@dataclass
class SweepReport:
    at_ms: int
    deadlines: dict[str, int] = field(default_factory=dict)
    digests: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"deadlines": self.deadlines, "digests": self.digests, "delivery": self.delivery}


def run_once(store: Store, settings: Settings, clock: Clock, *, dispatch: bool = True,
             with_digests: bool = True) -> SweepReport:
    """One round of periodic work at ``clock``'s time. Each step is its own transaction, so a
    crash between them loses nothing (the outbox rows are already committed)."""
    router = router_for(settings.notify.apprise_config, settings.notify.locale)
    now = clock.now_ms()
    report = SweepReport(at_ms=now)
    report.deadlines = store.write(
        lambda db: check_deadlines(db, now_ms=now, settings=settings, router=router))
    if with_digests:
        report.digests = {
            "daily": digests.run_daily(store, now_ms=now, settings=settings, router=router),
            "weekly": store.write(lambda db: digests.weekly_digests(db, now_ms=now,
                                                                    settings=settings,
                                                                    router=router)),
        }
    if dispatch:
        report.delivery = Dispatcher(store, settings, clock, router).run_once().as_dict()
    return report


class PeriodicWorker:
    """Runs the periodic work inside ``gridsync serve``, off the event loop, as two loops: the
    checks (deadlines, digests) and the delivery, so that a slow channel (Apprise waiting on its
    timeouts) never delays a one-minute deadline."""

    def __init__(self, store: Store, settings: Settings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self._tasks: list[asyncio.Task] = []
        self.rounds = 0
        self.ran = threading.Event()  # set after each round of checks (lets a caller wait)
        self.delivered = threading.Event()  # set after each delivery round

    def _checks(self) -> None:
        run_once(self.store, self.settings, self.clock, dispatch=False)

    def _delivery(self) -> None:
        router = router_for(self.settings.notify.apprise_config, self.settings.notify.locale)
        Dispatcher(self.store, self.settings, self.clock, router).run_once()

    async def _loop(self, work, done: threading.Event) -> None:  # noqa: ANN001
        while True:
            try:
                await anyio.to_thread.run_sync(work)
                if work == self._checks:
                    self.rounds += 1
                done.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # keep the loop alive; the error is a bug worth a log line
                log.exception("periodic work failed")
            await asyncio.sleep(self.settings.sweep_interval_seconds)

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(self._checks, self.ran), name="gridsync-checks"),
            loop.create_task(self._loop(self._delivery, self.delivered), name="gridsync-delivery"),
        ]

    async def stop(self) -> None:
        """Cancel and wait: work already running on its thread finishes first."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        self._tasks = []

"""Periodic work: deadline checks, digests due, outbox delivery, the daily prune.

``run_once`` does one round at the clock's time; ``gridsync sweep [--now ISO-TIME]`` calls it
once (for cron, and to test at a chosen time), and ``gridsync serve`` runs it every
``Settings.sweep_interval_seconds`` on a worker thread (:class:`PeriodicWorker`), because a grid
case's accept deadline is one minute.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio.to_thread

from gridsync import digests, retention
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.notify.dispatcher import Dispatcher
from gridsync.notify.routing import router_for
from gridsync.whistle import check_deadlines, next_due_ms

log = logging.getLogger("gridsync.sweep")


@dataclass
class SweepReport:
    at_ms: int
    deadlines: dict[str, int] = field(default_factory=dict)
    digests: dict[str, int] = field(default_factory=dict)
    delivery: dict[str, int] = field(default_factory=dict)
    pruned: retention.PruneReport | None = None  # the day's prune, in the round that ran it

    def as_dict(self) -> dict:
        return {
            "deadlines": self.deadlines,
            "digests": self.digests,
            "delivery": self.delivery,
            "pruned": self.pruned,
        }


def run_once(
    store: Store,
    settings: Settings,
    clock: Clock,
    *,
    dispatch: bool = True,
    with_digests: bool = True,
    steps: digests.Steps | None = None,
) -> SweepReport:
    """One round of periodic work at ``clock``'s time. Each step is its own transaction (the
    digests one per chunk), so a crash between them loses nothing (the outbox rows are already
    committed) and the phones' writes get the writer in between. ``steps`` (label, total) ->
    advance: a progress bar per long step (``gridsync sweep`` on a terminal)."""
    router = router_for(settings.notify.apprise_config, settings.notify.locale)
    now = clock.now_ms()
    report = SweepReport(at_ms=now)
    report.deadlines = store.write(
        lambda db: check_deadlines(db, now_ms=now, settings=settings, router=router)
    )
    if with_digests:
        report.digests = {
            "daily": digests.run_daily(
                store, now_ms=now, settings=settings, router=router, steps=steps
            ),
            "weekly": digests.run_weekly(
                store, now_ms=now, settings=settings, router=router, steps=steps
            ),
            "conflicts": store.write(
                lambda db: digests.conflict_digests(
                    db, now_ms=now, settings=settings, router=router
                )
            ),
        }
        report.pruned = retention.run_daily(store, now_ms=now, keep_days=settings.retention_days)
    if dispatch:
        report.delivery = Dispatcher(store, settings, clock, router).run_once(steps=steps).as_dict()
    return report


@dataclass
class Heartbeat:
    """What one loop of :class:`PeriodicWorker` last did, on the worker's clock: /readyz and
    /metrics read it (gridsync/health.py) to tell a loop that is alive from one that is stuck."""

    due_ms: int  # when the next round should start (the loop is late once the clock passes it)
    rounds: int = 0
    last_end_ms: int | None = None
    last_error: str | None = None  # the last round's exception; None once a round succeeds

    def lag_ms(self, now_ms: int) -> int:
        return max(0, now_ms - self.due_ms)


class PeriodicWorker:
    """Runs the periodic work inside ``gridsync serve``, off the event loop, as two loops: the
    checks (deadlines, digests) and the delivery, so that a slow channel (Apprise waiting on its
    timeouts) never delays a one-minute deadline.

    The checks wake every ``sweep_interval_seconds`` or just after the next whistle deadline,
    whichever comes first; a round that queued alerts wakes the delivery at once. So an
    escalation alert leaves about when its deadline passes, not up to two intervals later
    (measured by ``python -m bench storm``)."""

    def __init__(self, store: Store, settings: Settings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self._tasks: list[asyncio.Task] = []
        self.rounds = 0
        self.ran = threading.Event()  # set after each round of checks (lets a caller wait)
        self.delivered = threading.Event()  # set after each delivery round
        self._deliver_now: asyncio.Event | None = None  # set: deliver without waiting
        self._loop_ref: asyncio.AbstractEventLoop | None = None
        self.heartbeats: dict[str, Heartbeat] = {}
        self._digests_from_ms = 0  # set by start(): digests wait a while after the server starts

    def _checks(self) -> float:
        """One round of checks; returns the seconds to wait before the next one. The digests
        (and the day's prune) wait ``digests_after_start_seconds`` after :meth:`start`."""
        interval = self.settings.sweep_interval_seconds
        with_digests = self.clock.now_ms() >= self._digests_from_ms
        report = run_once(
            self.store, self.settings, self.clock, dispatch=False, with_digests=with_digests
        )
        if any(report.deadlines.values()) or any(report.digests.values()):
            self._wake_delivery()
        now = self.clock.now_ms()
        due = self.store.read(next_due_ms, now)
        if due is None:
            return interval
        return min(interval, max(0.0, (due + 1 - now) / 1000))

    def _delivery(self) -> float:
        router = router_for(self.settings.notify.apprise_config, self.settings.notify.locale)
        Dispatcher(self.store, self.settings, self.clock, router).run_once()
        return self.settings.sweep_interval_seconds

    def _wake_delivery(self) -> None:  # called on the checks' thread
        event, loop = self._deliver_now, self._loop_ref
        if event is not None and loop is not None:
            loop.call_soon_threadsafe(event.set)

    async def _run(
        self,
        name: str,
        work: Callable[[], float],
        done: threading.Event,
        wake: asyncio.Event | None,
    ) -> None:
        beat = self.heartbeats[name]
        while True:
            wait = self.settings.sweep_interval_seconds
            try:
                if wake is not None:
                    wake.clear()
                wait = await anyio.to_thread.run_sync(work)
                if work == self._checks:
                    self.rounds += 1
                beat.last_error = None
                done.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the loop alive; the error is a bug worth a log line
                log.exception("periodic work failed")
                beat.last_error = f"{type(exc).__name__}: {exc}"[:300]
            now = self.clock.now_ms()
            beat.rounds += 1
            beat.last_end_ms = now
            beat.due_ms = now + int(wait * 1000)
            if wake is None:
                await asyncio.sleep(wait)
            else:
                try:
                    await asyncio.wait_for(wake.wait(), timeout=wait)
                except TimeoutError:
                    pass

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def alive(self, name: str) -> bool:
        """The loop's task is running (it ends only when cancelled or on a bug in the loop)."""
        task = next((t for t in self._tasks if t.get_name() == f"gridsync-{name}"), None)
        return task is not None and not task.done()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._loop_ref = loop
        self._deliver_now = asyncio.Event()
        now = self.clock.now_ms()
        self._digests_from_ms = now + int(self.settings.digests_after_start_seconds * 1000)
        self.heartbeats = {"checks": Heartbeat(due_ms=now), "delivery": Heartbeat(due_ms=now)}
        self._tasks = [
            loop.create_task(
                self._run("checks", self._checks, self.ran, None), name="gridsync-checks"
            ),
            loop.create_task(
                self._run("delivery", self._delivery, self.delivered, self._deliver_now),
                name="gridsync-delivery",
            ),
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

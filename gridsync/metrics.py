"""The Prometheus metrics of one app: what an operator watches (README "Operations").

Each app gets its own :class:`prometheus_client.CollectorRegistry` (never the process-wide
default), so that tests running several apps in one process, or two apps over two databases,
never add to each other's figures. Two kinds of figures:

- events, counted where they happen: requests (by route and status), the time of pushes and
  pulls, bytes in and out (the ASGI wrapper in ``gridsync/api/observe.py``), push mutations by
  op and status (the push controller calls :meth:`Metrics.observe_push`);
- state, read when Prometheus scrapes (:class:`_StateCollector`): the writer queue and the
  group commit sizes of the Store, the outbox backlog, the lag of the periodic loops, open
  whistle cases by level. A scrape costs two indexed queries.

Labels are bounded: ``route`` is the route's path template (``/api/v1/households/{id:str}``,
never the raw path), ``op`` is a registered push op or ``other``, ``status`` an HTTP status.
``tests/test_ops_health.py`` checks that the counters move with traffic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

import gridsync
from gridsync.db import GROUP_MAX, Store
from gridsync.notify import outbox
from gridsync.sync.registry import OPS

if TYPE_CHECKING:
    from gridsync.models import PushRequest, PushResponse
    from gridsync.sweep import PeriodicWorker

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

PUSH_ROUTE = "/api/v1/sync/push"
PULL_ROUTE = "/api/v1/sync/pull"
# seconds: a push of one visit takes milliseconds, a 1,000-mutation batch about a second
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
GROUP_BUCKETS = tuple(b for b in (1, 2, 4, 8, 16, 32, 64) if b <= GROUP_MAX)

# the periodic loops' names in metrics and /readyz, by their name in sweep.PeriodicWorker
LOOPS = {"checks": "sweep", "delivery": "dispatcher"}


class Metrics:
    """The metric objects of one app. ``state`` returns what the scrape reads: the Store (None
    before startup) and the periodic worker (None when this process runs no periodic work)."""

    def __init__(
        self,
        state: Callable[[], tuple[Store | None, PeriodicWorker | None]],
        now_ms: Callable[[], int],
    ):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "gridsync_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.push_seconds = Histogram(
            "gridsync_sync_push_duration_seconds",
            "Time to answer a sync push (body read, applied, committed, answered).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pull_seconds = Histogram(
            "gridsync_sync_pull_duration_seconds",
            "Time to answer a sync pull page.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.mutations = Counter(
            "gridsync_sync_mutations",
            "Pushed mutations by op and result status (applied, merged, duplicate, rejected).",
            ["op", "status"],
            registry=r,
        )
        self.bytes_in = Counter(
            "gridsync_http_received_bytes",
            "Request body bytes received (as sent: gzip bodies count compressed).",
            ["route"],
            registry=r,
        )
        self.bytes_out = Counter(
            "gridsync_http_sent_bytes",
            "Response body bytes sent (after gzip).",
            ["route"],
            registry=r,
        )
        r.register(_StateCollector(state, now_ms))
        self._known_ops = set(OPS)

    def observe_request(
        self, route: str, method: str, status: int, seconds: float, received: int, sent: int
    ) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.bytes_in.labels(route).inc(received)
        self.bytes_out.labels(route).inc(sent)
        if route == PUSH_ROUTE:
            self.push_seconds.observe(seconds)
        elif route == PULL_ROUTE:
            self.pull_seconds.observe(seconds)

    def observe_push(self, request: PushRequest, response: PushResponse) -> None:
        op_of = {m.mid: m.op for m in request.mutations}
        for result in response.results:
            op = op_of.get(result.mid, "other")
            self.mutations.labels(op if op in self._known_ops else "other", result.status).inc()

    def render(self) -> bytes:
        """The text exposition format; reads the database (call it off the event loop)."""
        return generate_latest(self.registry)


def serve_on(metrics: Metrics, listen: str) -> Callable[[], None]:
    """Serve ``metrics`` without authentication on ``host:port`` (``metrics_listen``) from a
    thread of prometheus_client's own HTTP server; returns the function that stops it."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"metrics_listen must be host:port, not {listen!r}")
    server, thread = start_http_server(int(port), addr=host.strip("[]"), registry=metrics.registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)

    return stop


class _StateCollector(Collector):
    def __init__(
        self,
        state: Callable[[], tuple[Store | None, PeriodicWorker | None]],
        now_ms: Callable[[], int],
    ):
        self.state = state
        self.now_ms = now_ms

    def describe(self) -> Iterator[Any]:
        return iter(())  # figures depend on the state at scrape time: nothing to pre-register

    def collect(self) -> Iterator[Any]:
        info = InfoMetricFamily("gridsync_build", "The running gridsync version.")
        info.add_metric([], {"version": gridsync.__version__})
        yield info
        store, worker = self.state()
        if store is None:
            return
        yield GaugeMetricFamily(
            "gridsync_store_write_queue_length",
            "Writes waiting for the single writer thread.",
            value=store.queue_length,
        )
        sizes = list(store.group_sizes)  # a copy: the writer thread keeps counting
        buckets, running = [], 0
        for bound in GROUP_BUCKETS:
            running = sum(sizes[: bound + 1])
            buckets.append((str(bound), running))
        total = sum(sizes)
        buckets.append(("+Inf", total))
        yield HistogramMetricFamily(
            "gridsync_store_group_commit_size",
            "Writes committed together in one transaction (group commit).",
            buckets=buckets,
            sum_value=sum(n * count for n, count in enumerate(sizes)),
        )
        now = self.now_ms()
        backlog = store.read(outbox.pending_stats)
        yield GaugeMetricFamily(
            "gridsync_outbox_pending",
            "Notifications queued or being sent.",
            value=backlog.pending,
        )
        yield GaugeMetricFamily(
            "gridsync_outbox_oldest_pending_age_seconds",
            "Age of the oldest notification not yet delivered (0 when none).",
            value=max(0, now - backlog.oldest_created_ms) / 1000
            if backlog.oldest_created_ms
            else 0,
        )
        from gridsync.whistle import open_cases_by_level

        cases = GaugeMetricFamily(
            "gridsync_whistle_open_cases",
            "Whistle cases not yet resolved or closed, by the level that holds them.",
            labels=["level"],
        )
        for level, count in store.read(open_cases_by_level).items():
            cases.add_metric([level], count)
        yield cases
        if worker is None or not worker.heartbeats:
            return
        lag = GaugeMetricFamily(
            "gridsync_periodic_lag_seconds",
            "How far a periodic loop is behind its schedule: sweep (whistle deadlines, "
            "digests) and dispatcher (outbox delivery). 0 when on time.",
            labels=["loop"],
        )
        last = GaugeMetricFamily(
            "gridsync_periodic_last_round_timestamp_seconds",
            "When a periodic loop last finished a round (Unix time).",
            labels=["loop"],
        )
        for name, beat in worker.heartbeats.items():
            lag.add_metric([LOOPS.get(name, name)], beat.lag_ms(now) / 1000)
            if beat.last_end_ms is not None:
                last.add_metric([LOOPS.get(name, name)], beat.last_end_ms / 1000)
        yield lag
        yield last

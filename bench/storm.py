"""Morning sync storm, with the whistle deadline latency measured while it runs.

    python -m bench storm [--runs N] [--quick]

A street of ``COMMUNITIES`` demo communities; one phone (reference client) for each of
``PHONES`` members, all synced the evening before (untimed). Offline overnight each phone logs
``VISITS`` visits and ``EDITS`` household edits (the first households of its grid: phones of the
same grid edit the same ones, so merges and conflicts happen). Then every phone, on its own
thread, released together, syncs: push, then pull until nothing more (bounded: 200 threads, each
does one sync and stops). Measured: requests/s over the storm, p50/p99 latency of every HTTP
request (as the phones see it: client-side queueing on the GIL included), errors (any 4xx/5xx
or exception; budget 0), lost or duplicated mutations (checked afterwards in the database: every
visit exactly once, every edit logged exactly once in ``sync_mutations``, each device's
``last_seq`` = its mutations; budget 0), the server's peak memory (VmHWM; budget < 300 MB).

Whistle: grid accept deadlines of ``ACCEPT_SECONDS`` (TOML ``--config``) and an Apprise YAML
routing ``community:<id>:secretary`` to ``json://127.0.0.1:PORT/`` of a receiver running in its
own process (it stamps arrival times; the GIL of 200 phone threads would delay it in this one).
From ``ACCEPT_SECONDS`` before the storm to its end, a community secretary raises a grid case
every ``RAISE_EVERY`` seconds through the REST API; the storm is released as the first case
falls due. Every case whose accept deadline passed during the storm must have exactly one
escalation alert at the receiver, none before its deadline (budgets 0); the latency from the
deadline (the server's ``received_at`` + the accept window) to the alert's arrival: < 5 s
(worst).

Time: the full run (:class:`SystemTime`) runs ``gridsync serve`` in its own process on the
system clock, so the deadlines fall due in real time and the latency is measured. ``--quick``
(:class:`FixedTime`, what the test suite runs) serves the real app in this process with a
``FixedClock`` and moves it instead of waiting: the cases are raised half a second apart on that
clock, and at each step of the storm a round of the server's periodic work (``sweep.run_once``,
what its worker runs) checks the deadlines and delivers to the same receiver. So the suite checks
that every due case is alerted once and no other is, under a storm, without sleeping through an
8-second window; the latency and the server's memory are figures of the full run only.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.common import Budget, Report, build_demo, enroll, members, serve, serve_in_process
from gridsync.clock import FixedClock, parse_ms
from gridsync.sync.client import DeviceClient

ACCEPT_SECONDS = 8.0
RAISE_EVERY = 0.5
ALERT_WAIT_SECONDS = 30.0
FIXED_STEPS = 4  # steps of RAISE_EVERY on the fixed clock while the quick storm runs
CASE_ID = re.compile(r"案件编号：(\S+)")

ERRORS = Budget("storm.errors", "errors (all runs)", "<=", 0)
LOST = Budget("storm.lost", "lost mutations (all runs)", "<=", 0)
DUPLICATED = Budget("storm.duplicated", "duplicated mutations (all runs)", "<=", 0)
UNALERTED = Budget("storm.unalerted", "cases due in the storm without an alert (all runs)", "<=", 0)
EARLY = Budget("storm.early-alerts", "alerts sent before their deadline (all runs)", "<=", 0)
REPEATED = Budget("storm.repeated-alerts", "alerts sent twice for one case (all runs)", "<=", 0)
MEMORY = Budget(
    "storm.memory-mb",
    "server peak memory, MB (max of runs)",
    "<=",
    300,
    quick="the quick run's app shares this process; 12 phones say nothing of 200",
)
ALERT_LATENCY = Budget(
    "storm.alert-seconds",
    "whistle deadline -> alert at the receiver, s (worst of runs)",
    "<=",
    5,
    quick="on the quick run's fixed clock no time passes between a deadline and its alert",
)
BUDGETS = (ERRORS, LOST, DUPLICATED, UNALERTED, EARLY, REPEATED, MEMORY, ALERT_LATENCY)

RECEIVER = textwrap.dedent("""
    import sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    out = open(sys.argv[1], "a", buffering=1)
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            out.write(f"{time.time()!r} {body.decode()}\\n")
            self.send_response(200)
            self.end_headers()
        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


class Phone:
    def __init__(self, url: str, person: str, device: str, token: str):
        self.client = DeviceClient.connect(
            url,
            token=token,
            device_id=device,
            person_id=person,
            encoding="msgpack",
            gzip=True,
            backoff_seconds=0.05,
        )
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.transport_errors: list[str] = []  # retried by the client with the same bytes
        self.error: str | None = None
        request = self.client.http.request

        def timed_request(*args, **kwargs):
            start = time.perf_counter()
            try:
                response = request(*args, **kwargs)
            except httpx.TransportError as exc:
                self.transport_errors.append(repr(exc))
                raise
            finally:
                self.latencies.append(time.perf_counter() - start)
            self.statuses.append(response.status_code)
            return response

        self.client.http.request = timed_request  # type: ignore[method-assign]

    def sync(self, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            report = self.client.sync()
            if report.push.rejected:
                self.error = f"{report.push.rejected} rejected"
        except Exception as exc:  # counted as an error of the storm
            self.error = f"{type(exc).__name__}: {exc}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def start_receiver(log: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(log)], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, port


class Secretary:
    """A community secretary raising grid cases through the REST API: ``cases`` holds (case id,
    accept deadline in ms on the server's clock) in the order raised."""

    def __init__(self, url: str, token: str, grids: list[str]):
        self.http = httpx.Client(
            base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
        )
        self.grids = grids
        self.cases: list[tuple[str, int]] = []

    def raise_case(self) -> None:
        n = len(self.cases)
        response = self.http.post(
            "/api/v1/whistle/cases",
            json={
                "category": "safety",
                "grid_id": self.grids[n % len(self.grids)],
                "location": f"{n + 1}号楼",
                "description": "楼道堆放杂物，堵塞消防通道",
            },
        )
        response.raise_for_status()
        case = response.json()
        self.cases.append((case["id"], parse_ms(case["deadlines"]["accept"])))

    def close(self) -> None:
        self.http.close()


def read_alerts(log: Path) -> dict[str, list[float]]:
    """The escalation alerts at the receiver so far: case id -> arrival times (ms, the
    receiver's clock), in the order they arrived."""
    arrived: dict[str, list[float]] = {}
    text = log.read_text() if log.exists() else ""
    for line in text.splitlines():
        at, body = line.split(" ", 1)
        alert = json.loads(body)
        match = CASE_ID.search(alert.get("message", ""))
        if match and "案件已上报" in alert.get("title", ""):
            arrived.setdefault(match.group(1), []).append(float(at) * 1000)
    return arrived


class SystemTime:
    """The benchmark: ``gridsync serve`` in its own process on the system clock. The secretary
    raises a case every RAISE_EVERY seconds on a thread, the storm is released as the first case
    falls due (never before: a storm shorter than any lead would end with no deadline passed in
    it), and the alerts are awaited at the receiver (up to ALERT_WAIT_SECONDS)."""

    def __init__(self) -> None:
        self.rss_mb = float("nan")

    @contextmanager
    def serving(self, db: Path, config: Path, log: Path) -> Iterator[str]:
        self.log = log
        with serve(db, "--config", str(config)) as server:
            yield server.url
            self.rss_mb = server.peak_rss_mb()

    def storm(
        self, secretary: Secretary, release: Callable[[], object], join: Callable[[], None]
    ) -> tuple[float, float]:
        """Runs the storm; returns its seconds and its end (ms on the server's clock)."""
        stop = threading.Event()

        def raise_cases() -> None:
            while not stop.is_set():
                secretary.raise_case()
                stop.wait(RAISE_EVERY)

        raiser = threading.Thread(target=raise_cases)
        raiser.start()
        try:
            while not secretary.cases:
                time.sleep(0.01)
            while (wait := (secretary.cases[0][1] - time.time() * 1000) / 1000) > 0:
                time.sleep(wait)
            release()
            start = time.perf_counter()
            join()
            seconds = time.perf_counter() - start
            end_ms = time.time() * 1000
        finally:
            stop.set()
            raiser.join()
        return seconds, end_ms

    def alerts(self, due: set[str]) -> dict[str, list[float]]:
        """Arrival times (ms) of the escalation alerts, once every due case has one or
        ALERT_WAIT_SECONDS have passed."""
        deadline = time.monotonic() + ALERT_WAIT_SECONDS
        while True:
            arrived = read_alerts(self.log)
            if due <= set(arrived) or time.monotonic() > deadline:
                return arrived
            time.sleep(0.2)


class FixedTime:
    """``--quick`` (the test suite): the real app served in this process (uvicorn on a thread,
    the same Store and Litestar app as ``gridsync serve``) with a ``FixedClock`` that the storm
    moves instead of waiting, and the server's periodic work run as rounds at chosen times
    (``sweep.run_once``: the deadline checks and the delivery, what the server's worker runs).
    An alert's time is that of the round that sent it, on the same clock as the deadlines."""

    def __init__(self) -> None:
        self.sent: dict[str, list[float]] = {}
        self.rss_mb = float("nan")  # not the server's alone: it shares this process

    @contextmanager
    def serving(self, db: Path, config: Path, log: Path) -> Iterator[str]:
        from gridsync.app import create_app
        from gridsync.config import load_settings
        from gridsync.db import Store

        self.log = log
        self.clock = FixedClock(time.time_ns() // 1_000_000)  # the phones' clocks: near it
        self.settings = load_settings(config, db=str(db))
        with Store(
            db,
            synchronous=self.settings.synchronous,
            wal_autocheckpoint=self.settings.wal_autocheckpoint,
        ) as store:
            self.store = store
            app = create_app(self.settings, store=store, clock=self.clock, run_periodic=False)
            with serve_in_process(app) as url:
                yield url

    def _round(self) -> None:
        from gridsync.sweep import run_once

        now = self.clock.now_ms()
        run_once(self.store, self.settings, self.clock)
        for case_id, arrivals in read_alerts(self.log).items():
            sent = self.sent.setdefault(case_id, [])
            sent.extend([now] * (len(arrivals) - len(sent)))

    def storm(
        self, secretary: Secretary, release: Callable[[], object], join: Callable[[], None]
    ) -> tuple[float, float]:
        for _ in range(round(ACCEPT_SECONDS / RAISE_EVERY)):  # the lead-in
            secretary.raise_case()
            self.clock.advance(seconds=RAISE_EVERY)
        # deadlines fall on the raising steps: 1 ms past one, the first case is overdue
        self.clock.advance(seconds=0.001)
        release()
        start = time.perf_counter()
        for _ in range(FIXED_STEPS):  # while the phones sync (or after, on a fast machine)
            self._round()
            self.clock.advance(seconds=RAISE_EVERY)
            secretary.raise_case()
        join()
        seconds = time.perf_counter() - start
        self._round()
        return seconds, self.clock.now_ms()

    def alerts(self, due: set[str]) -> dict[str, list[float]]:
        return self.sent


def run(quick: bool = False, runs: int = 1) -> Report:
    communities, phones_n, visits, edits = (1, 12, 10, 2) if quick else (3, 200, 50, 3)
    report = Report(
        f"storm: {phones_n} phones x ({visits} visits + {edits} household edits, "
        f"then pull) at once; whistle deadlines during the storm "
        f"({'fixed clock, app in this process' if quick else 'system clock'})"
    )
    rates, p50s, p99s, rss, worst_alerts = [], [], [], [], []
    errors = lost = duplicated = unalerted = early = repeated = requests_total = 0
    for run_no in range(runs):
        timeline = FixedTime() if quick else SystemTime()
        with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
            work = Path(tmp)
            db = work / "server.db"
            build_demo(db, communities=communities)
            people = members(db)[:phones_n]
            people = (people * (phones_n // len(people) + 1))[:phones_n]
            devices = enroll(db, people)
            conn = sqlite3.connect(db)
            secretary_id = conn.execute(
                "SELECT id FROM people WHERE roles LIKE '%community_secretary%' ORDER BY id"
            ).fetchone()[0]
            community = conn.execute(
                "SELECT unit_id FROM person_scope WHERE person_id = ?", [secretary_id]
            ).fetchone()[0]
            grids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM org_units WHERE kind = 'grid' AND parent_id = ?", [community]
                )
            ]
            conn.close()
            [(_, _, secretary_token)] = enroll(db, [secretary_id])
            log = work / "alerts.log"
            receiver, port = start_receiver(log)
            (work / "apprise.yml").write_text(
                f"version: 1\nurls:\n  - json://127.0.0.1:{port}/secretary:\n"
                f"      - tag: community:{community}:secretary\n"
            )
            (work / "gridsync.toml").write_text(
                textwrap.dedent(f"""
                [notify]
                apprise_config = "{work / "apprise.yml"}"
                [whistle_deadlines.grid]
                accept_minutes = {ACCEPT_SECONDS / 60}
                arrive_minutes = 10
                resolve_minutes = 30
            """)
            )
            try:
                with timeline.serving(db, work / "gridsync.toml", log) as url:
                    phones = [Phone(url, *d) for d in devices]
                    evening = threading.Barrier(len(phones))
                    threads = [threading.Thread(target=p.sync, args=(evening,)) for p in phones]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    expected_visits: set[str] = set()
                    expected_mids: set[str] = set()
                    for p in phones:
                        if p.error:
                            raise RuntimeError(f"evening sync failed: {p.error}")
                        p.latencies.clear()
                        p.statuses.clear()
                        p.transport_errors.clear()
                        mine = sorted(p.client.households())
                        for i in range(visits):
                            q = p.client.log_visit(
                                mine[i % len(mine)], "door", ["policy"], "入户走访"
                            )
                            expected_visits.add(q.id)
                        for i in range(edits):
                            q = p.client.update_household(
                                mine[i % len(mine)],
                                fields={"notes": f"{p.client.device_id} {i}"},
                                tags_add=["renter"] if i % 2 else [],
                            )
                            expected_mids.add(q.mid)
                    morning = threading.Barrier(len(phones) + 1)
                    threads = [threading.Thread(target=p.sync, args=(morning,)) for p in phones]
                    for t in threads:
                        t.start()

                    def join(threads=threads) -> None:
                        for t in threads:
                            t.join()

                    secretary = Secretary(url, secretary_token, grids)
                    try:
                        seconds, storm_end_ms = timeline.storm(secretary, morning.wait, join)
                    finally:
                        secretary.close()
                    deadlines = dict(secretary.cases)
                    due = {cid: ms for cid, ms in deadlines.items() if ms < storm_end_ms}
                    arrived = timeline.alerts(set(due))
            finally:
                receiver.terminate()
                receiver.wait()
                receiver.stdout.close()  # type: ignore[union-attr]
            rss.append(timeline.rss_mb)
            latencies = [x for p in phones for x in p.latencies]
            statuses = Counter(s for p in phones for s in p.statuses)
            requests_total = len(latencies)
            transport = Counter(e.split("(")[0] for p in phones for e in p.transport_errors)
            errors += sum(1 for p in phones if p.error) + sum(
                n for s, n in statuses.items() if s >= 400
            )
            rates.append(len(latencies) / seconds)
            p50s.append(percentile(latencies, 0.50) * 1000)
            p99s.append(percentile(latencies, 0.99) * 1000)
            run_lost, run_dup = check_database(
                db, expected_visits, expected_mids, {d[1]: visits + edits for d in devices}
            )
            lost += run_lost
            duplicated += run_dup
            late = [(arrived[cid][0] - ms) / 1000 for cid, ms in due.items() if cid in arrived]
            unalerted += len(due) - len(late)
            early += sum(
                1 for cid, at in arrived.items() if cid in deadlines and at[0] < deadlines[cid]
            )
            repeated += sum(len(at) - 1 for at in arrived.values())
            worst_alerts.append(max(late, default=float("inf")))
            for p in phones:
                p.client.close()
            if run_no == runs - 1:
                report.add("storm wall time (last run)", seconds, "s")
                report.add(
                    "requests (last run)",
                    f"{requests_total:,} "
                    f"({', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))})",
                )
                report.add(
                    "transport errors retried by the client (last run)",
                    ", ".join(f"{e}: {n}" for e, n in transport.items()) or "none",
                )
                report.add(
                    "whistle cases raised / due in the storm / alerted (last run)",
                    f"{len(deadlines)} / {len(due)} / {len(late)}",
                )
                if late and not quick:
                    report.add(
                        "alert latency after the deadline, median (last run)",
                        sorted(late)[len(late) // 2],
                        "s",
                    )
    report.add("requests per second", sorted(rates)[len(rates) // 2], "req/s")
    report.add("latency p50", sorted(p50s)[len(p50s) // 2], "ms")
    report.add("latency p99", sorted(p99s)[len(p99s) // 2], "ms")
    report.measure(ERRORS, float(errors))
    report.measure(LOST, float(lost))
    report.measure(DUPLICATED, float(duplicated))
    report.measure(UNALERTED, float(unalerted))
    report.measure(EARLY, float(early))
    report.measure(REPEATED, float(repeated))
    if not quick:
        report.measure(MEMORY, max(rss))
        report.measure(ALERT_LATENCY, max(worst_alerts))
    report.add("runs", str(runs))
    return report


def check_database(
    db: Path, visits: set[str], mids: set[str], per_device: dict[str, int]
) -> tuple[int, int]:
    """(lost, duplicated) mutations of the storm, from the server's database."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("CREATE TEMP TABLE want (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO want VALUES (?)", [(v,) for v in visits])
        found = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT v.id) FROM visits v JOIN want w ON w.id = v.id"
        ).fetchone()
        storm_devices = list(per_device)
        marks = ", ".join("?" * len(storm_devices))
        by_devices = conn.execute(
            f"SELECT COUNT(*) FROM visits WHERE device_id IN ({marks}) AND received_at IS NOT NULL",
            storm_devices,
        ).fetchone()[0]
        conn.execute("DELETE FROM want")
        conn.executemany("INSERT INTO want VALUES (?)", [(m,) for m in mids])
        logged = conn.execute(
            "SELECT COUNT(*) FROM sync_mutations s JOIN want w "
            "ON w.id = s.mid WHERE s.status IN ('applied', 'merged')"
        ).fetchone()[0]
        last_seq = dict(
            conn.execute(
                f"SELECT id, last_seq FROM devices WHERE id IN ({marks})", storm_devices
            ).fetchall()
        )
    finally:
        conn.close()
    lost = (len(visits) - found[1]) + (len(mids) - logged)
    lost += sum(max(0, n - last_seq.get(d, 0)) for d, n in per_device.items())
    duplicated = (found[0] - found[1]) + max(0, by_devices - len(visits))
    duplicated += sum(max(0, last_seq.get(d, 0) - n) for d, n in per_device.items())
    return lost, duplicated

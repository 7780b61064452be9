"""Cold start: the first minutes of ``gridsync serve`` on the district, with the day's digests due.

    python -m bench coldstart [--runs 3] [--quick]

Data: a private copy, per run, of the district demo of ``bench/coverage.py``
(``$GRIDSYNC_BENCH_DISTRICT_DB``, built once and reused; ``--quick``: the tiny district). The
server is a real ``gridsync serve`` process with a settings file that makes the daily and weekly
digests due at once (``quiet_hours = [0, 0]``, ``daily_digest_hour = 0``): its first periodic
pass then goes through every member (36,000) and every branch and community (1,077), which is
what the first start after the demo did at 08:00 (issue 15: 17-27 s of CPU, a coverage call
meanwhile 10 s). The demo's people have no channels, as in the issue: the pass computes every
digest and queues none (delivery is not part of the figure).

The server holds the digests ``digests_after_start_seconds`` (30 by default, as here; 1 in the
quick run) after it starts, and rolls the district up once before it answers (README "Cold
start and the long jobs"). Each run, from the moment ``/healthz`` answers:

- the first ``GET /api/v1/coverage`` (an admin, the district's unit levels), then one every
  0.5 s until the pass is over ("during the pass": those begun once the digests were due);
- one phone pushing one visit at a time, back to back, until the pass is over (the pass is over
  when both digest runs are marked done in ``notify_runs``; "during": pushes begun once the
  digests were due);
- after the pass: 6 coverage calls (the median of the last 5 is "warm") and 20 pushes (idle).

Budgets: the first coverage call / warm <= 2 (issue 15); the slowest push during the pass <= 1 s
(the pass holds the writer one short transaction at a time: a chunk of 100 members or 20 units,
then steps aside; a push waits for at most one chunk). Also printed: the pass's duration, the
coverage calls during the pass against warm, push p50 and p99 during the pass and idle, and
``gridsync sweep`` running the same pass from the command line (first run only).
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.common import REPO, Budget, Report, enroll, members, serve
from bench.coverage import AS_OF, DISTRICT_DB, TINY, _build_district
from gridsync import demo
from gridsync.config import Settings
from gridsync.db import Store

DUE_NOW = "[notify]\nquiet_hours = [0, 0]\ndaily_digest_hour = 0\n"
DELAY = Settings().digests_after_start_seconds  # the digests wait this long after the start
# (as configured by default; the quick run waits 1 s)
WHY_QUICK = "a tiny district: the pass takes milliseconds, nothing to compare"
FIRST_COVERAGE = Budget(
    "coldstart.first-coverage",
    "first coverage call after start / warm",
    "<=",
    2.0,
    quick=WHY_QUICK,
)
PUSH_MAX = Budget(
    "coldstart.push-max",
    "slowest push of one visit during the daily pass (s)",
    "<=",
    1.0,
    quick=WHY_QUICK,
)
BUDGETS = (FIRST_COVERAGE, PUSH_MAX)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pass_done(db: Path) -> bool:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        (n,) = conn.execute(
            "SELECT count(*) FROM notify_runs "
            "WHERE key LIKE 'digest:daily:%' OR key LIKE 'digest:weekly:%'"
        ).fetchone()
        return n >= 2
    finally:
        conn.close()


def _household_of(db: Path, person: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT id FROM households WHERE responsible_member_id = ? LIMIT 1", [person]
        ).fetchone()[0]
    finally:
        conn.close()


class Pusher(threading.Thread):
    """One phone pushing one visit at a time until stopped; the latency of each push."""

    def __init__(self, url: str, device: tuple[str, str, str], household: str, path: Path):
        super().__init__(daemon=True)
        from gridsync.sync.client import DeviceClient

        person, device_id, token = device
        self.phone = DeviceClient.connect(
            url,
            token=token,
            device_id=device_id,
            person_id=person,
            path=str(path),
            sleep=lambda _s: None,
        )
        self.household = household
        self.latencies: list[float] = []
        self.began: list[float] = []  # perf_counter at the start of each push
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def push_one(self, i: int) -> None:
        self.phone.log_visit(self.household, "door", ["policy"], f"cold {i}")
        start = time.perf_counter()
        self.phone.push()
        self.latencies.append(time.perf_counter() - start)
        self.began.append(start)

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set():
                self.push_one(i)
                i += 1
        except BaseException as exc:
            self.error = exc


def one_run(
    source: Path, work: Path, measure_sweep: bool, delay: float
) -> dict[str, float | list[float]]:
    db = work / "cold.db"
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{db}{suffix}")
    member = members(db)[0]
    device, admin = enroll(db, [member, "admin"])
    household = _household_of(db, member)
    config = work / "gridsync.toml"
    config.write_text(f"digests_after_start_seconds = {delay}\n{DUE_NOW}")
    out: dict[str, float | list[float]] = {}
    launched = time.perf_counter()
    with (
        serve(db, "--config", str(config)) as server,
        httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {admin[2]}"}, timeout=300
        ) as http,
    ):

        def coverage() -> float:
            start = time.perf_counter()
            r = http.get("/api/v1/coverage")
            r.raise_for_status()
            return time.perf_counter() - start

        started = time.perf_counter()
        out["start"] = started - launched
        out["first"] = coverage()
        pusher = Pusher(server.url, device, household, work / "phone.db")
        pusher.start()
        during: list[float] = []
        deadline = time.monotonic() + 600
        while not _pass_done(db):
            if time.monotonic() > deadline:
                raise RuntimeError("the first periodic pass did not end within 10 minutes")
            took = coverage()
            if time.perf_counter() - started > delay + took:  # began once the pass was due
                during.append(took)
            time.sleep(0.5)
        out["pass"] = time.perf_counter() - started - delay
        pusher.stop.set()
        pusher.join(timeout=120)
        if pusher.error is not None:
            raise pusher.error
        out["during"] = during
        out["push_during"] = [
            took for took, began in zip(pusher.latencies, pusher.began) if began - started >= delay
        ]
        warm = [coverage() for _ in range(6)][1:]
        out["warm"] = statistics.median(warm)
        pusher.latencies.clear()
        try:
            for i in range(20):
                pusher.push_one(10_000 + i)
        finally:
            pusher.phone.close()
        out["push_idle"] = list(pusher.latencies)
    if measure_sweep:  # the same pass from the command line, on the same (now warm) file
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM notify_runs")
        conn.commit()
        conn.close()
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "gridsync", "sweep", "--db", str(db), "--config", str(config)],
            cwd=REPO,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        out["sweep"] = time.perf_counter() - start
    return out


def run(quick: bool, runs: int) -> Report:
    report = Report("cold start: the first periodic pass (daily and weekly digests) after serve")
    runs = min(runs, 3)  # a run copies the district and waits out a whole pass
    with tempfile.TemporaryDirectory(prefix="gridsync-bench-cold-") as tmp:
        delay = 1.0 if quick else DELAY
        if quick:
            source = Path(tmp) / "tiny.db"
            with Store(source, synchronous="NORMAL") as store:
                demo.build(store, TINY, seed=1, as_of=AS_OF)
        else:
            source = DISTRICT_DB
            if not source.exists():
                report.add("district demo build", _build_district(source), "s")
        results = []
        for i in range(runs):
            work = Path(tmp) / f"run{i}"
            work.mkdir()
            results.append(one_run(source, work, measure_sweep=i == 0, delay=delay))
            shutil.rmtree(work)
    firsts = [r["first"] / r["warm"] for r in results]  # type: ignore[operator]
    worst_push = [max(r["push_during"], default=0.0) for r in results]  # type: ignore[type-var]
    during = [x for r in results for x in r["during"]]  # type: ignore[union-attr]
    push_during = [x for r in results for x in r["push_during"]]  # type: ignore[union-attr]
    push_idle = [x for r in results for x in r["push_idle"]]  # type: ignore[union-attr]
    warm = statistics.median([r["warm"] for r in results])  # type: ignore[misc]
    report.add(
        "start, until /healthz answers", statistics.median([r["start"] for r in results]), "s"
    )  # type: ignore[misc]
    report.add(
        "first periodic pass (digests, from digests_after_start_seconds)",
        statistics.median([r["pass"] for r in results]),  # type: ignore[misc]
        "s",
    )
    report.add("passes of each run", ", ".join(f"{r['pass']:.1f} s" for r in results))
    report.add("first coverage call", statistics.median([r["first"] for r in results]), "s")  # type: ignore[misc]
    report.add("warm coverage call", warm, "s")
    report.add(
        "coverage calls during the pass / warm",
        f"{len(during)} calls, median {statistics.median(during) / warm:.2f}x, "
        f"max {max(during) / warm:.2f}x"
        if during
        else "none (the pass ended first)",
    )
    report.add(
        "pushes during the pass",
        f"{len(push_during)}, p50 {_pct(push_during, 0.5) * 1000:.0f} ms, "
        f"p99 {_pct(push_during, 0.99) * 1000:.0f} ms",
    )
    report.add(
        "pushes idle",
        f"{len(push_idle)}, p50 {_pct(push_idle, 0.5) * 1000:.0f} ms, "
        f"p99 {_pct(push_idle, 0.99) * 1000:.0f} ms",
    )
    report.add("gridsync sweep, the same pass (first run)", results[0]["sweep"], "s")  # type: ignore[arg-type]
    report.measure(FIRST_COVERAGE, statistics.median(firsts))
    report.measure(PUSH_MAX, max(worst_push))
    return report


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["coldstart", *sys.argv[1:]]))

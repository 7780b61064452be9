"""Ingest: visits and merged household updates pushed through the real server, against raw SQLite.

    python -m bench ingest [--runs N] [--quick]

Visits: the reference client (``gridsync.sync.client``) of the community secretary of the demo
community pushes ``VISITS`` visits in batches of 500 to a real ``gridsync serve`` process; only
``push()`` is timed (queueing the visits locally is not). The floor, in the same run: the same
rows, read back from the server's database, inserted with ``sqlite3`` ``executemany`` into a
fresh file with the visits table's own schema and indexes (WAL, synchronous as the server uses)
already holding the rows that were there before, once in 500-row transactions and once in one
transaction. Budget: >= 0.40 of the 500-row floor.

Household updates: two devices of the secretary; device A sets ``phone`` on every household and
pushes, then device B (which has not pulled A's edits) sets ``phone`` on half the households
(each one a conflict: the losing value goes to the conflict log) and ``notes`` on the other half
(a field merge without conflict). Only B's push is timed. Budget: >= 0.20 of the same floor.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from bench.common import SECRETARY, Budget, Report, build_demo, enroll, median, serve
from gridsync.sync.client import CHINA, DeviceClient

BATCH = 500
KINDS = ("policy", "opinion", "hardship", "safety")

TOO_SMALL = "1,000 visits and 60 households time fixed costs, not throughput"
VISITS = Budget("ingest.visits", "visits / floor (500-row tx)", ">=", 0.40, quick=TOO_SMALL)
UPDATES = Budget(
    "ingest.updates", "household updates / floor (500-row tx)", ">=", 0.20, quick=TOO_SMALL
)
BUDGETS = (VISITS, UPDATES)


def copy_schema(src: sqlite3.Connection, dst: sqlite3.Connection, table: str) -> None:
    for (sql,) in src.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY type DESC",
        [table],
    ):  # table first, then indexes
        dst.execute(sql)


def floor_insert(
    server_db: Path,
    before: list[tuple],
    rows: list[tuple],
    tx_rows: int,
    workdir: Path,
    synchronous: str = "FULL",
) -> float:
    """Seconds to insert ``rows`` with executemany in ``tx_rows``-row transactions into a fresh
    visits table (same schema and indexes) that already holds ``before``."""
    path = workdir / f"floor-{tx_rows}-{time.monotonic_ns()}.db"
    src = sqlite3.connect(server_db)
    dst = sqlite3.connect(path, isolation_level=None)
    try:
        dst.execute("PRAGMA journal_mode=WAL")
        dst.execute(f"PRAGMA synchronous={synchronous}")
        copy_schema(src, dst, "visits")
        marks = ", ".join("?" * len(rows[0]))
        sql = f"INSERT INTO visits VALUES ({marks})"
        dst.execute("BEGIN")
        dst.executemany(sql, before)
        dst.execute("COMMIT")
        start = time.perf_counter()
        for i in range(0, len(rows), tx_rows):
            dst.execute("BEGIN IMMEDIATE")
            dst.executemany(sql, rows[i : i + tx_rows])
            dst.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        src.close()
        dst.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def households(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [
            r[0]
            for r in conn.execute("SELECT id FROM households WHERE status = 'active' ORDER BY id")
        ]
    finally:
        conn.close()


def run(quick: bool = False, runs: int = 5) -> Report:
    visits = 1_000 if quick else 20_000
    report = Report(
        f"ingest: {visits:,} visits in batches of {BATCH}; household updates "
        f"(half conflicting), through a real server vs raw executemany"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        db = work / "server.db"
        build_demo(db)
        hh = households(db)
        if quick:
            hh = hh[:60]
        (_, dev, token), (_, dev_a, token_a), (_, dev_b, token_b) = enroll(db, [SECRETARY] * 3)
        visit_rate, floor_500, floor_one, update_rate, merged = [], [], [], [], 0
        with serve(db) as server:
            phone = DeviceClient.connect(server.url, token=token, device_id=dev)
            a = DeviceClient.connect(server.url, token=token_a, device_id=dev_a)
            b = DeviceClient.connect(server.url, token=token_b, device_id=dev_b)
            a.pull()
            b.pull()
            in_http = [0.0]  # seconds inside HTTP requests: the server's share of a push
            request = phone.http.request

            def timed_request(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return request(*args, **kwargs)
                finally:
                    in_http[0] += time.perf_counter() - start

            phone.http.request = timed_request  # type: ignore[method-assign]
            b.http.request = timed_request  # type: ignore[method-assign]
            http_rate, update_http_rate = [], []
            for run_no in range(runs):
                # -- visits --
                conn = sqlite3.connect(db)
                before = conn.execute("SELECT * FROM visits ORDER BY id").fetchall()
                conn.close()
                now = datetime.now(CHINA).replace(microsecond=0)
                for i in range(visits):
                    at = now - timedelta(minutes=(visits - i) % 600)
                    phone.log_visit(hh[i % len(hh)], "door", [KINDS[i % 4]], "入户走访", at=at)
                in_http[0] = 0.0
                start = time.perf_counter()
                pushed = phone.push()
                seconds = time.perf_counter() - start
                http_rate.append(visits / in_http[0])
                if pushed.applied != visits:
                    raise RuntimeError(f"pushed {visits} visits, {pushed.applied} applied")
                conn = sqlite3.connect(db)
                rows = conn.execute(
                    "SELECT * FROM visits WHERE device_id = ? AND seq > ? ORDER BY id",
                    [dev, max((r[12] for r in before), default=0)],
                ).fetchall()
                conn.close()
                assert len(rows) == visits, (len(rows), visits)
                visit_rate.append(visits / seconds)
                floor_500.append(visits / floor_insert(db, before, rows, BATCH, work))
                floor_one.append(visits / floor_insert(db, before, rows, len(rows), work))
                # -- household updates: A overwrites phone everywhere, B did not see it --
                for i, hid in enumerate(hh):
                    a.update_household(hid, fields={"phone": f"139{run_no:02d}{i:06d}"})
                a.push()
                for i, hid in enumerate(hh):
                    if i % 2 == 0:
                        b.update_household(hid, fields={"phone": f"138{run_no:02d}{i:06d}"})
                    else:
                        b.update_household(hid, fields={"notes": f"第{run_no}轮 核实 {i}"})
                in_http[0] = 0.0
                start = time.perf_counter()
                pushed_b = b.push()
                seconds = time.perf_counter() - start
                update_http_rate.append(len(hh) / in_http[0])
                merged = pushed_b.merged
                update_rate.append(len(hh) / seconds)
                a.pull()
                b.pull()
            rss = server.peak_rss_mb()
            for c in (phone, a, b):
                c.close()
        ratios = [v / f for v, f in zip(visit_rate, floor_500, strict=True)]
        update_ratios = [u / f for u, f in zip(update_rate, floor_500, strict=True)]
        report.add("visits pushed, reference client -> server", median(visit_rate), "rows/s")
        report.add("floor: executemany, 500-row transactions", median(floor_500), "rows/s")
        report.add("floor: executemany, one transaction", median(floor_one), "rows/s")
        report.add(
            "  spread over the runs: push / floor (500-row tx)",
            f"{min(visit_rate):,.0f}-{max(visit_rate):,.0f} / "
            f"{min(floor_500):,.0f}-{max(floor_500):,.0f} rows/s (the floor is bound by "
            "fsync, whose speed moves on a shared machine)",
        )
        report.add("  visits / floor of each run", " ".join(f"{r:.3f}" for r in ratios))
        report.measure(VISITS, median(ratios))
        report.add(
            "  the same counting only the time inside HTTP requests (server's share)",
            median([h / f for h, f in zip(http_rate, floor_500, strict=True)]),
            "x floor",
        )
        report.add("household updates pushed (field merge)", median(update_rate), "rows/s")
        report.add("of which merged with a conflict (last run)", f"{merged} of {len(hh)}")
        report.measure(UPDATES, median(update_ratios))
        report.add(
            "  the same counting only the time inside HTTP requests (server's share)",
            median([h / f for h, f in zip(update_http_rate, floor_500, strict=True)]),
            "x floor",
        )
        report.add("server peak memory (VmHWM)", rss, "MB")
        report.add("runs", str(runs))
    return report

"""Operations figures (README "Operations"), run on purpose, not by the test suite:

    python -m bench.ops backup [--db DEMO.db] [--seconds S]
    python -m bench.ops rpo [--runs N] [--sync-interval 1s] [--seconds S]

``backup``: against a real ``gridsync serve`` on a copy of the given database (default: a fresh
community demo) with one phone pushing 10-visit batches in a loop, the push latency with no
backup running, then while ``backup(method="api")`` runs, then while ``VACUUM INTO`` runs;
with the copy time and the size of each. Which one slows the writer less decides the default.

``rpo``: the recovery point of Litestream replication when the disk dies: a server with
``wal_autocheckpoint = 0`` and ``gridsync replicate --sync-interval`` to a directory, a phone
pushing one visit at a time; then the server and Litestream are both killed with SIGKILL at the
same instant (no final sync: the disk is gone), the replica is restored, and the acknowledged
visits missing from it give the window of writes lost (the oldest lost acknowledgement's age at
the kill). Repeated ``--runs`` times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import REPO, build_demo, enroll, members, serve


def _phone(url: str, device: tuple[str, str, str], path: str):
    from gridsync.sync.client import DeviceClient

    person, device_id, token = device
    return DeviceClient.connect(
        url, token=token, device_id=device_id, person_id=person, path=path, sleep=lambda _s: None
    )


def _household_of(db: str, person: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            "SELECT id FROM households WHERE responsible_member_id = ? LIMIT 1", [person]
        ).fetchone()[0]
    finally:
        conn.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class Writer(threading.Thread):
    """Pushes batches of ``batch`` visits until stopped; records (start, end) of each push."""

    def __init__(self, phone, household: str, batch: int):
        super().__init__(daemon=True)
        self.phone, self.household, self.batch = phone, household, batch
        self.pushes: list[tuple[float, float]] = []
        self.acked: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            i = 0
            while not self.stop.is_set() and i < 1_000_000:
                ids = [
                    self.phone.log_visit(self.household, "door", ["policy"], f"b{i}").id
                    for _ in range(self.batch)
                ]
                t0 = time.monotonic()
                self.phone.push()
                t1 = time.monotonic()
                self.pushes.append((t0, t1))
                self.acked.extend((t1, v) for v in ids)
                i += 1
        except BaseException as exc:
            self.error = exc


def _latency(w: Writer, start: float, end: float) -> str:
    ms = [(b - a) * 1000 for a, b in w.pushes if a >= start and b <= end]
    if not ms:
        return "no push completed"
    return (
        f"{len(ms)} pushes, p50 {_pct(ms, 0.5):.0f} ms, p95 {_pct(ms, 0.95):.0f} ms, "
        f"max {max(ms):.0f} ms"
    )


def bench_backup(db: str | None, seconds: float) -> None:
    from gridsync import backup

    work = Path(tempfile.mkdtemp(prefix="gridsync-bench-ops-"))
    try:
        path = str(work / "g.db")
        if db:
            backup.backup(db, path)  # a private copy: the benchmark writes to it
        else:
            build_demo(path)
        # the day's digests now, so that the server's first periodic round (minutes of work at
        # district scale, the cold-start issue) does not run during the measurement
        subprocess.run(
            [sys.executable, "-m", "gridsync", "sweep", "--db", path],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            check=True,
        )
        size = Path(path).stat().st_size
        device = enroll(path, [members(path)[0]])[0]
        household = _household_of(path, device[0])
        print(f"# backup while one phone pushes 10-visit batches ({size / 1e6:.0f} MB database)")
        with serve(path) as server:
            phone = _phone(server.url, device, str(work / "phone.db"))
            phone.sync()
            w = Writer(phone, household, 10)
            w.start()
            t0 = time.monotonic()
            threading.Event().wait(seconds)  # the baseline window: time is what is measured
            t1 = time.monotonic()
            print(f"no backup          : {_latency(w, t0, t1)}")
            for method in ("api", "vacuum"):
                out = work / f"copy-{method}.db"
                start = time.monotonic()
                report = backup.backup(path, out, method=method)
                end = time.monotonic()
                print(
                    f"backup {method:<6}      : copy {report.copy_seconds:.2f} s, check "
                    f"{report.check_seconds:.2f} s, {report.bytes / 1e6:.0f} MB; writer: "
                    f"{_latency(w, start, start + report.copy_seconds)}"
                )
                print(f"  whole command    : {end - start:.2f} s")
                out.unlink()
            w.stop.set()
            w.join(timeout=60)
            phone.close()
            if w.error:
                raise w.error
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _one_rpo(sync_interval: str, seconds: float) -> tuple[float, int, int]:
    from gridsync import backup

    work = Path(tempfile.mkdtemp(prefix="gridsync-bench-rpo-"))
    try:
        path = str(work / "g.db")
        build_demo(path)
        device = enroll(path, [members(path)[0]])[0]
        household = _household_of(path, device[0])
        config = work / "gridsync.toml"
        config.write_text("wal_autocheckpoint = 0\n")
        replica = work / "replica"
        with serve(path, "--config", str(config)) as server:
            litestream = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gridsync",
                    "replicate",
                    "--db",
                    path,
                    "--to",
                    str(replica),
                    "--sync-interval",
                    sync_interval,
                ],
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                phone = _phone(server.url, device, str(work / "phone.db"))
                phone.sync()
                w = Writer(phone, household, 1)
                w.start()
                threading.Event().wait(seconds)  # let it replicate under load for a while
                killed = time.monotonic()
                os.kill(server.proc.pid, signal.SIGKILL)  # the disk dies: both at once
                os.kill(litestream.pid, signal.SIGKILL)
                w.stop.set()
                w.join(timeout=120)
                phone.close()
            finally:
                if litestream.poll() is None:
                    litestream.kill()
                litestream.wait()
        restored = work / "restored.db"
        backup.restore_from_replica(str(replica), restored)
        conn = sqlite3.connect(restored)
        try:
            present = {r[0] for r in conn.execute("SELECT id FROM visits")}
        finally:
            conn.close()
        acked = [(t, v) for t, v in w.acked if t <= killed]
        lost = [t for t, v in acked if v not in present]
        window = (killed - min(lost)) if lost else 0.0
        return window, len(lost), len(acked)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_rpo(runs: int, sync_interval: str, seconds: float) -> None:
    print(f"# recovery point: SIGKILL of server and Litestream, sync-interval {sync_interval}")
    windows = []
    for i in range(runs):
        window, lost, acked = _one_rpo(sync_interval, seconds)
        windows.append(window)
        print(f"run {i + 1}: {lost} of {acked} acknowledged pushes lost; window {window:.2f} s")
    print(f"window: median {statistics.median(windows):.2f} s, max {max(windows):.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ops", description=__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    b = sub.add_parser("backup")
    b.add_argument("--db", default=None, help="a database to copy first (default: a demo)")
    b.add_argument("--seconds", type=float, default=5.0, help="baseline window")
    r = sub.add_parser("rpo")
    r.add_argument("--runs", type=int, default=5)
    r.add_argument("--sync-interval", default="1s")
    r.add_argument("--seconds", type=float, default=8.0, help="pushing before the kill")
    args = parser.parse_args(argv)
    if args.what == "backup":
        bench_backup(args.db, args.seconds)
    else:
        bench_rpo(args.runs, args.sync_interval, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

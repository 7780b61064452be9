"""Helpers of the operations tests: the CLI as a process, phones pushing in a loop, reading a
database file directly (the oracle: plain SQL, not the code under test)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from gridsync.clock import FixedClock
from gridsync.sync.client import DeviceClient
from tests.servers import REPO_ROOT

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


def gridsync_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gridsync", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def ids_in(path: str | Path, table: str, ids: list[str]) -> set[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT id FROM {table} WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(ids).decode()],
        ).fetchall()
    finally:
        conn.close()
    return {r[0] for r in rows}


def meta(path: str | Path, key: str) -> str:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()[0]
    finally:
        conn.close()


class Pusher(threading.Thread):
    """A phone that logs visits and pushes them in a loop; records each acknowledged visit id
    with the monotonic time its push was answered."""

    def __init__(self, url: str, tiny, person: str, path: str):
        super().__init__(daemon=True)
        self.phone = DeviceClient.connect(
            url,
            token=tiny.tokens[person],
            device_id=tiny.devices[person],
            person_id=person,
            path=path,
            clock=FixedClock(T0),
            sleep=lambda _s: None,
        )
        self.household = tiny.households["g1" if person == "m1" else "g2"][0]
        self.acked: list[tuple[float, str]] = []
        self.batches = 0
        self.progress = threading.Condition()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for i in range(5_000):  # bounded; stopped long before
                if self.stop.is_set():
                    break
                ids = [
                    self.phone.log_visit(self.household, "door", ["policy"], f"第{i}批{j}").id
                    for j in range(5)
                ]
                report = self.phone.push()
                answered = time.monotonic()
                assert report.applied == 5, report
                with self.progress:
                    self.acked.extend((answered, v) for v in ids)
                    self.batches += 1
                    self.progress.notify_all()
        except BaseException as exc:  # surfaced by the test (expected after a kill -9)
            self.error = exc
            with self.progress:
                self.progress.notify_all()
        finally:
            self.phone.close()

    def wait_batches(self, n: int) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: self.batches >= n or self.error, timeout=120)
        assert self.error is None, self.error

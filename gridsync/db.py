"""The SQLite store: one writer path, many readers, numbered migrations.

SQLite has one writer. Every write in this process goes through :meth:`Store.write` (or
:meth:`Store.awrite` from async code), which runs the given function on a single dedicated
writer thread inside ``BEGIN IMMEDIATE ... COMMIT``: writes never interleave, a failed write rolls
back whole, and an acknowledged write is committed (WAL, ``synchronous=FULL`` by default) before
the caller hears back. Other processes (the CLI while ``serve`` runs) are serialised by SQLite's
own lock and wait up to ``busy_timeout``.

Reads run on per-thread read-only connections, each inside its own read transaction, so one call
to :meth:`Store.read` sees one consistent snapshot however many queries it makes.

Domain functions take a :class:`sqlite_utils.Database` as their first argument and never open
connections themselves.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlite_utils

from gridsync.migrations import migrations

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0


def _connect(path: str, *, readonly: bool, synchronous: str) -> sqlite_utils.Database:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    conn.execute("PRAGMA temp_store=MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return sqlite_utils.Database(conn, execute_plugins=False)


class Store:
    """Owns the database file: the writer thread, the reader connections, the migrations."""

    def __init__(self, path: str | Path, *, synchronous: str = "FULL", migrate: bool = True):
        self.path = str(path)
        self.synchronous = synchronous.upper()
        if self.synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"bad synchronous setting {synchronous!r}")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridsync-writer")
        self._writer_ident: int | None = None
        self._wdb: sqlite_utils.Database | None = None
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._writer.submit(self._open_writer, migrate).result()

    # -- writer -----------------------------------------------------------------------------

    def _open_writer(self, migrate: bool) -> None:
        self._writer_ident = threading.get_ident()
        db = _connect(self.path, readonly=False, synchronous=self.synchronous)
        db.conn.execute("PRAGMA journal_mode=WAL")
        self._wdb = db
        if migrate:
            migrations.apply(db)

    def _run_write(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        db = self._wdb
        assert db is not None
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(db, *args, **kwargs)
        except BaseException:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            raise
        db.conn.execute("COMMIT")
        return result

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` in one write transaction on the writer thread."""
        if threading.get_ident() == self._writer_ident:
            raise RuntimeError("nested Store.write: call the domain function directly instead")
        return self._writer.submit(self._run_write, fn, args, kwargs).result()

    async def awrite(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`write` for async code: the event loop is never blocked by SQLite."""
        future = self._writer.submit(self._run_write, fn, args, kwargs)
        return await asyncio.wrap_future(future)

    def write_unsafe_outside_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db)`` on the writer thread without a wrapping transaction.

        For bulk loaders (demo data) that commit in chunks of their own and for VACUUM/ANALYZE.
        """
        return self._writer.submit(fn, self._wdb, *args).result()

    # -- readers ----------------------------------------------------------------------------

    def _reader(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = _connect(self.path, readonly=True, synchronous=self.synchronous)
            self._local.db = db
            with self._readers_lock:
                self._readers.append(db)
        return db

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` inside one read transaction (one snapshot)."""
        db = self._reader()
        db.conn.execute("BEGIN")
        try:
            return fn(db, *args, **kwargs)
        finally:
            db.conn.execute("COMMIT")

    async def aread(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`read` on a worker thread, for reads that may take more than a millisecond."""
        return await anyio.to_thread.run_sync(partial(self.read, fn, *args, **kwargs))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def _close_writer() -> None:
            if self._wdb is not None:
                self._wdb.conn.close()

        self._writer.submit(_close_writer).result()
        self._writer.shutdown(wait=True)
        with self._readers_lock:
            for db in self._readers:
                try:
                    db.conn.close()
                except sqlite3.ProgrammingError:  # closed from its own thread already
                    pass
            self._readers.clear()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def paged(db: sqlite_utils.Database, columns: str, from_where: str, params: list[Any], *,
          order_by: str, limit: int, offset: int) -> tuple[list[tuple], int]:
    """One page of ``SELECT columns FROM from_where`` and the total count, for list endpoints."""
    total = db.execute(f"SELECT count(*) FROM {from_where}", params).fetchone()[0]
    rows = db.execute(
        f"SELECT {columns} FROM {from_where} ORDER BY {order_by} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return rows, total


# -- the change sequence and the epoch ---------------------------------------------------------


def next_seq(db: sqlite_utils.Database, n: int = 1) -> int:
    """Allocate ``n`` consecutive change sequence numbers; returns the first.

    Must run inside the write transaction of the change it numbers, so that a pull cursor never
    passes a change that is not yet committed.
    """
    row = db.execute(
        "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'change_seq' "
        "RETURNING CAST(value AS INTEGER)",
        [n],
    ).fetchone()
    return row[0] - n + 1


def current_seq(db: sqlite_utils.Database) -> int:
    return int(db.execute("SELECT value FROM meta WHERE key = 'change_seq'").fetchone()[0])


def epoch(db: sqlite_utils.Database) -> str:
    """The database's epoch id: new for every new database (and after a restore with
    ``gridsync init --new-epoch``), so that cursors from another database are refused."""
    return db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]


def new_epoch(db: sqlite_utils.Database) -> str:
    value = uuid.uuid4().hex
    db.execute("UPDATE meta SET value = ? WHERE key = 'epoch'", [value])
    return value

"""The SQLite store: one writer path, many readers, numbered migrations.

SQLite has one writer. Every write in this process goes through :meth:`Store.write` (or
:meth:`Store.awrite` from async code), which runs the given function on a single dedicated
writer thread inside ``BEGIN IMMEDIATE ... COMMIT``: writes never interleave, a failed write rolls
back whole, and an acknowledged write is committed (WAL, ``synchronous=FULL`` by default) before
the caller hears back. Writes queued while the writer is busy are committed together (group
commit: one transaction, one savepoint per write, so a failing write still rolls back alone and
does not affect the others). Other processes (the CLI while ``serve`` runs) are serialised by SQLite's
own lock and wait up to ``busy_timeout``.

Reads run on per-thread read-only connections, each inside its own read transaction, so one call
to :meth:`Store.read` sees one consistent snapshot however many queries it makes.

Domain functions take a :class:`sqlite_utils.Database` as their first argument and never open
connections themselves.

A file that is not a database, or one written by a newer gridsync (a migration this code does not
know), is refused when the Store opens it (:class:`DatabaseUnusable`), before anything is written
to it: an older gridsync must not run on a schema it does not understand. :func:`check_database`
adds what the CLI refuses before it opens anything (a missing file or folder, an empty file, a
database of another program); ``tests/test_cli_db.py`` runs every command against each case.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache, partial
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import sqlite_utils

from gridsync.errors import GridsyncError
from gridsync.migrations import migrations

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 30.0
GROUP_MAX = 64  # writes committed together at most (see Store._commit_group)


class GroupRolledBack(GridsyncError):
    """A write that did nothing wrong was not stored: another write of its commit group ended
    the shared transaction. Nothing of it is stored, so the caller may send it again as it was:
    the API answers 503 ``retry`` (the reference client retries 5xx with the same bytes)."""

    status = 503
    code = "retry"


class DatabaseUnusable(GridsyncError):
    """The file named as the database cannot be used. Raised at startup (the CLI prints it as a
    one-line error, exit 1); it never reaches an HTTP client."""

    status = 500
    code = "not_a_database"


SQLITE_HEADER = b"SQLite format 3\x00"


@cache
def known_migrations() -> frozenset[str]:
    """Names of the migrations this code knows (all of them are pending on an empty database;
    sqlite-utils has no public list of a set's names)."""
    return frozenset(m.name for m in migrations.pending(sqlite_utils.Database(memory=True)))


def unknown_migrations(db: sqlite_utils.Database) -> list[str]:
    """Migrations applied to ``db`` that this code does not know: a newer gridsync wrote it."""
    known = known_migrations()
    return [m.name for m in migrations.applied(db) if m.name not in known]


def _refuse_newer(db: sqlite_utils.Database, path: str) -> None:
    newer = unknown_migrations(db)
    if newer:
        raise DatabaseUnusable(
            f"数据库版本高于本程序 (database {path} was written by a newer gridsync: "
            f"migration {', '.join(newer)} is unknown here): upgrade gridsync",
            code="schema_too_new",
        )


def check_database(path: str | Path, *, create: bool = False) -> None:
    """Refuse a database path an operator got wrong, before anything is opened or created.

    - a missing folder, a folder given as the file, a file that is not SQLite, a SQLite database
      of another program (tables, none of them gridsync's) or of a newer gridsync: always;
    - a missing file, or an empty one (0 bytes, what ``touch`` or a bare ``sqlite3 FILE``
      leaves; it holds no gridsync data either): unless ``create`` (``gridsync init`` and
      ``gridsync demo`` make the schema; everything else would serve or report an empty
      database, which is how ``serve --db dmeo.db`` used to start on nothing).

    Raises :class:`DatabaseUnusable` with a one-line message (code ``no_database``,
    ``not_a_database`` or ``schema_too_new``)."""
    p = Path(path)
    init = f"run 'gridsync init --db {path}' (or 'gridsync demo') first"
    if p.is_dir():
        raise DatabaseUnusable(f"{path} 是文件夹，不是数据库文件 (a folder, not a database file)")
    if not p.exists():
        folder = p.parent
        if not folder.is_dir():
            raise DatabaseUnusable(
                f"文件夹不存在 (no folder {folder} for the database {path})", code="no_database"
            )
        if not create:
            raise DatabaseUnusable(
                f"数据库不存在 (no database at {path}): {init}", code="no_database"
            )
        return
    try:
        with p.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise DatabaseUnusable(f"无法读取 {path} (cannot read it: {exc.strerror})") from None
    if not head:
        if create:
            return
        raise DatabaseUnusable(
            f"数据库文件是空的 (the database file {path} is empty): {init}", code="no_database"
        )
    if head != SQLITE_HEADER:
        raise DatabaseUnusable(f"{path} 不是数据库文件 (not a SQLite database)")
    try:
        conn = sqlite3.connect(
            f"{p.resolve().as_uri()}?mode=ro", uri=True, timeout=BUSY_TIMEOUT_SECONDS
        )
    except sqlite3.Error as exc:
        raise DatabaseUnusable(f"无法打开 {path} (cannot open it: {exc})") from None
    try:
        db = sqlite_utils.Database(conn, execute_plugins=False)
        tables = [
            t
            for t in db.table_names()
            if t != migrations.migrations_table and not t.startswith("sqlite_")
        ]
        applied = migrations.applied(db)
        _refuse_newer(db, str(path))
    except sqlite3.Error as exc:
        raise DatabaseUnusable(
            f"{path} 不是可用的数据库 (not a usable SQLite database: {exc})"
        ) from None
    finally:
        conn.close()
    if applied:
        return
    if tables:
        shown = ", ".join(tables[:3]) + (", ..." if len(tables) > 3 else "")
        raise DatabaseUnusable(
            f"{path} 不是 gridsync 的数据库 (a SQLite database of another program: {shown})"
        )
    if not create:
        raise DatabaseUnusable(
            f"数据库是空的 (the database {path} holds no gridsync data): {init}",
            code="no_database",
        )


def _connect(path: str, *, readonly: bool, synchronous: str) -> sqlite_utils.Database:
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_SECONDS, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    conn.execute("PRAGMA temp_store=MEMORY")
    if readonly:
        conn.execute("PRAGMA query_only=ON")
    return sqlite_utils.Database(conn, execute_plugins=False)


CLOSE_WAIT_SECONDS = 30  # how long close() waits for reads in flight


class Store:
    """Owns the database file: the writer thread, the reader connections, the migrations."""

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: str = "FULL",
        migrate: bool = True,
        wal_autocheckpoint: int | None = None,
    ):
        self.path = str(path)
        # None keeps SQLite's default (a PASSIVE checkpoint after a commit once the WAL holds
        # 1,000 pages); 0 leaves checkpoints to another process (Litestream: see backup.py).
        self.wal_autocheckpoint = wal_autocheckpoint
        self.synchronous = synchronous.upper()
        if self.synchronous not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"bad synchronous setting {synchronous!r}")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gridsync-writer")
        self._writer_ident: int | None = None
        self._wdb: sqlite_utils.Database | None = None
        self._local = threading.local()
        self._readers: list[sqlite_utils.Database] = []
        self._readers_lock = threading.Lock()
        # Reads in flight: close() waits for them, so that no connection is closed under a
        # thread still reading through it (SQLite would crash the process, not raise).
        self._reading = 0
        self._reads_done = threading.Condition(self._readers_lock)
        self._closed = False
        self._queue: deque[tuple[Callable[..., Any], tuple, dict, Future]] = deque()
        self._queue_lock = threading.Lock()
        self.commits = 0  # write transactions committed (a group of writes counts once)
        # group_sizes[n]: commits of a group of n writes (read by gridsync/metrics.py)
        self.group_sizes = [0] * (GROUP_MAX + 1)
        try:
            self._writer.submit(self._open_writer, migrate).result()
        except BaseException:
            self._writer.shutdown(wait=True)
            raise

    # -- writer -----------------------------------------------------------------------------

    def _open_writer(self, migrate: bool) -> None:
        """Open the writer's connection; refuse (:class:`DatabaseUnusable`) a file that is not
        a database or was written by a newer gridsync, before migrating anything."""
        self._writer_ident = threading.get_ident()
        db = None
        try:
            db = _connect(self.path, readonly=False, synchronous=self.synchronous)
            db.conn.execute("PRAGMA journal_mode=WAL")
            _refuse_newer(db, self.path)
        except (sqlite3.DatabaseError, DatabaseUnusable) as exc:
            if db is not None:
                db.conn.close()
            if isinstance(exc, DatabaseUnusable):
                raise
            raise DatabaseUnusable(
                f"{self.path} 不是可用的数据库 (not a usable SQLite database: {exc})"
            ) from exc
        if self.wal_autocheckpoint is not None:
            db.conn.execute(f"PRAGMA wal_autocheckpoint={int(self.wal_autocheckpoint)}")
        self._wdb = db
        if migrate:
            migrations.apply(db)

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``fn(db, *args, **kwargs)`` for the writer; its future resolves once the write
        is committed (or raises what ``fn`` raised, with nothing of it stored)."""
        future: Future[T] = Future()
        with self._queue_lock:
            self._queue.append((fn, args, kwargs, future))
        self._writer.submit(self._commit_group)
        return future

    def _commit_group(self) -> None:
        """Group commit: run the writes queued so far (at most ``GROUP_MAX``), in order, in one
        ``BEGIN IMMEDIATE .. COMMIT``, each inside its own SAVEPOINT. A write that raises is
        rolled back to its savepoint alone and its caller gets the exception; the others are
        committed together, and every caller hears back only after the COMMIT. One phone
        pushing alone gets a group of one; a storm of phones shares the commits (fsyncs)."""
        with self._queue_lock:
            group = [self._queue.popleft() for _ in range(min(len(self._queue), GROUP_MAX))]
        group = [item for item in group if item[3].set_running_or_notify_cancel()]
        if not group:
            return  # taken by an earlier round, or cancelled
        db = self._wdb
        assert db is not None
        done: list[tuple[Future, bool, Any]] = []  # (future, ok, result or exception)
        culprit: Future | None = None
        try:
            db.conn.execute("BEGIN IMMEDIATE")
            for fn, args, kwargs, future in group:
                db.conn.execute("SAVEPOINT store_write")
                try:
                    result = fn(db, *args, **kwargs)
                except BaseException as exc:
                    if not db.conn.in_transaction:
                        # The write ended the transaction (an error that rolls back everything,
                        # e.g. disk full): nothing of the group is stored.
                        culprit = future
                        raise
                    db.conn.execute("ROLLBACK TO store_write")
                    db.conn.execute("RELEASE store_write")
                    done.append((future, False, exc))
                    continue
                db.conn.execute("RELEASE store_write")
                done.append((future, True, result))
            db.conn.execute("COMMIT")
            self.commits += 1
            self.group_sizes[len(group)] += 1
        except BaseException as exc:  # nothing of the group is stored: all of it fails
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            for *_, future in group:
                if culprit is None or future is culprit:
                    future.set_exception(exc)
                else:
                    lost = GroupRolledBack(
                        "another write committed in the same group ended the "
                        "transaction: nothing of this write was stored, retry"
                    )
                    lost.__cause__ = exc
                    future.set_exception(lost)
            return
        for future, ok, value in done:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    @property
    def queue_length(self) -> int:
        """Writes waiting for the writer (not counting the group being committed)."""
        return len(self._queue)

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` in a write transaction on the writer thread; it is
        committed when this returns (see :meth:`_commit_group`)."""
        if threading.get_ident() == self._writer_ident:
            raise RuntimeError("nested Store.write: call the domain function directly instead")
        return self.submit(fn, *args, **kwargs).result()

    async def awrite(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """:meth:`write` for async code: the event loop is never blocked by SQLite."""
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    def write_unsafe_outside_transaction(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(db)`` on the writer thread without a wrapping transaction.

        For bulk loaders (demo data) that commit in chunks of their own and for VACUUM/ANALYZE.
        """
        return self._writer.submit(fn, self._wdb, *args).result()

    # -- readers ----------------------------------------------------------------------------

    def _reader(self) -> sqlite_utils.Database:
        db = getattr(self._local, "db", None)
        if db is None:
            if self._closed:  # e.g. a pull page read ahead after shutdown: open nothing new
                raise RuntimeError(f"the store of {self.path} is closed")
            db = _connect(self.path, readonly=True, synchronous=self.synchronous)
            with self._readers_lock:
                if self._closed:  # closed while connecting: close() has not seen this one
                    db.conn.close()
                    raise RuntimeError(f"the store of {self.path} is closed")
                self._readers.append(db)
            self._local.db = db
        return db

    def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(db, *args, **kwargs)`` inside one read transaction (one snapshot)."""
        with self._readers_lock:
            if self._closed:  # e.g. a pull page read ahead after shutdown
                raise RuntimeError(f"the store of {self.path} is closed")
            self._reading += 1
        try:
            db = self._reader()
            db.conn.execute("BEGIN")
            try:
                return fn(db, *args, **kwargs)
            finally:
                db.conn.execute("COMMIT")
        finally:
            with self._readers_lock:
                self._reading -= 1
                if self._reading == 0:
                    self._reads_done.notify_all()

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
            # Reads already running finish first (new ones are refused: _closed is set).
            self._reads_done.wait_for(lambda: self._reading == 0, timeout=CLOSE_WAIT_SECONDS)
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


def paged(
    db: sqlite_utils.Database,
    columns: str,
    from_where: str,
    params: list[Any],
    *,
    order_by: str,
    limit: int,
    offset: int,
) -> tuple[list[tuple], int]:
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

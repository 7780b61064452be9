"""The reference device client: what a phone does, in plain Python (SPEC section 3).

Tests, benchmarks and ``gridsync simulate`` drive the protocol through it, and it is the model a
phone app team can read. It keeps a local SQLite store per device with four parts:

- ``base``: the server's copy of every record the device has pulled, by ``(type, id)``, with the
  record's server ``seq`` (the ``base_seq`` of later edits).
- ``queue``: the offline queue. Every local edit becomes a mutation (``mid`` = UUIDv7, the next
  per-device ``seq``, an HLC) in the same local transaction that applies it, so a queued edit
  survives a restart. ``pending`` rows are unsent or unacknowledged; ``acked`` rows were answered
  ``applied``/``merged``/``duplicate`` and are kept only as an overlay until the next complete pull
  brings their effect back from the server (then they are deleted).
- ``view``: what the user sees: ``base`` with the acked overlay and the pending mutations applied
  on top, in queue order. Pulling rebuilds the view of every record it touches ("rebase"), so the
  user's unsent edits stay visible over fresh server data. Phone numbers are as the server sends
  them to this person, most masked (gridsync/privacy.py); edits never send a mask back.
- ``meta``: device id, person id, cursor, HLC state and the next ``seq``.

The person's inbox is pulled like any record (type ``notice``): :meth:`DeviceClient.notices`
lists it, :meth:`DeviceClient.mark_notice_read` queues ``notice.read``.

Push sends pending mutations oldest first in batches; a lost response is retried with exactly the
same bytes (same ``mid`` and ``seq``), and the server answers ``duplicate`` for what it already has.
Pull pages until ``has_more`` is false and moves the cursor in the same local transaction that
applies a page. ``sync()`` is push then pull.

The transport is any ``httpx.Client``: ``litestar.testing.TestClient`` runs the app in process,
``httpx.Client(base_url=...)`` talks to a real server (see :meth:`DeviceClient.connect`).
"""

from __future__ import annotations

import gzip as gzip_module
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import msgspec

import gridsync
from gridsync.clock import DAY_MS, SYSTEM_CLOCK, Clock, iso_ms, uuid7
from gridsync.models import MAX_GROUP_HOUSEHOLDS, NOTICE_VISIBLE_DAYS, is_masked
from gridsync.sync import hlc as hlc_clock

SCHEMA_VERSION = "1"
APP_VERSION = f"gridsync-reference-client/{gridsync.__version__}"
PUSH_PATH = "/api/v1/sync/push"
PULL_PATH = "/api/v1/sync/pull"
STATUS_PATH = "/api/v1/sync/status"
MAX_BATCH = 500
CHINA = timezone(timedelta(hours=8))

# Which record an op changes: household ops the household, visit ops the visit, and so on.
OP_RECORD_TYPE = {
    "household.create": "household",
    "household.update": "household",
    "household.move_out": "household",
    "visit.create": "visit",
    "visit.void": "visit",
    "whistle.raise": "whistle",
    "whistle.act": "whistle",
    "notice.read": "notice",
}

_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.decode
_msgpack_encode = msgspec.msgpack.Encoder().encode


# -- errors -------------------------------------------------------------------------------------


class SyncError(Exception):
    """Base of everything the client raises about syncing."""


class Unreachable(SyncError):
    """The server could not be reached (or kept answering 5xx) after all retries. Nothing is
    lost: the queue is intact and the next sync resends the same mutations."""


class ServerRefused(SyncError):
    """A 4xx answer: the client (or its user) has to change something."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.body = body


class DeviceRevokedError(ServerRefused):
    """The device was revoked: its local data (copy and queue) has been wiped."""


class DeviceDraining(ServerRefused):
    """``403 device_draining``: the device was revoked with drain. The client answers it by
    draining (:meth:`DeviceClient.drain`); callers see :class:`DeviceDrainedError`."""


class DeviceDrainedError(DeviceRevokedError):
    """The device was revoked with drain: it pushed what it held in its one last push and
    wiped itself. ``drained`` mutations went in that push; ``unsent`` were still queued when it
    was wiped (0 unless the queue was larger than one push may carry, or edits were made while
    the drain push was in flight)."""

    def __init__(self, drained: int, unsent: int):
        super().__init__(
            401,
            "device_revoked",
            f"this device was revoked with drain: {drained} unsent mutations were pushed, "
            f"{unsent} left unsent, and its local data wiped",
            {"wipe": True, "drained": drained, "unsent": unsent},
        )
        self.drained = drained
        self.unsent = unsent


# -- reports ------------------------------------------------------------------------------------


@dataclass
class PushReport:
    batches: int = 0
    sent: int = 0  # mutations sent, counting resends once per batch
    applied: int = 0
    merged: int = 0
    duplicate: int = 0
    rejected: int = 0
    clamped: int = 0
    lost: list[dict[str, Any]] = field(default_factory=list)  # lost values of merged results
    renumbered: int = 0  # times a seq_gap made the client renumber its queue


@dataclass
class PullReport:
    pages: int = 0
    changes: int = 0
    puts: int = 0
    removes: int = 0
    resets: int = 0


@dataclass
class SyncReport:
    push: PushReport
    pull: PullReport


@dataclass(frozen=True)
class Queued:
    """One mutation in the offline queue."""

    pos: int
    mid: str
    seq: int
    hlc: str
    op: str
    id: str
    base_seq: int | None
    fields: dict[str, Any] | None
    tags_add: list[str]
    tags_remove: list[str]
    data: dict[str, Any] | None
    state: str  # "pending" or "acked"

    def wire(self) -> dict[str, Any]:
        """The mutation as SPEC 3.1 spells it (empty optional parts left out: bytes cost)."""
        out: dict[str, Any] = {
            "mid": self.mid,
            "seq": self.seq,
            "hlc": self.hlc,
            "op": self.op,
            "id": self.id,
        }
        if self.base_seq is not None:
            out["base_seq"] = self.base_seq
        if self.fields is not None:
            out["fields"] = self.fields
        if self.tags_add:
            out["tags_add"] = self.tags_add
        if self.tags_remove:
            out["tags_remove"] = self.tags_remove
        if self.data is not None:
            out["data"] = self.data
        return out


_BATCH_COLUMNS = "pos, mid, seq, hlc, op, id, base_seq, fields, tags_add, tags_remove, data"


_OUTCOME_INSERT = (
    "INSERT OR REPLACE INTO outcomes (mid, seq, op, id, status, code, message, lost,"
    " mutation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _queued(row: tuple, state: str = "pending") -> Queued:
    """A :class:`Queued` from a row of :data:`_BATCH_COLUMNS` (its JSON parts decoded)."""
    pos, mid, seq, hlc, op, id_, base_seq, fields, tags_add, tags_remove, data = row
    return Queued(
        pos=pos,
        mid=mid,
        seq=seq,
        hlc=hlc,
        op=op,
        id=id_,
        base_seq=base_seq,
        fields=_json_decode(fields) if fields is not None else None,
        tags_add=_json_decode(tags_add),
        tags_remove=_json_decode(tags_remove),
        data=_json_decode(data) if data is not None else None,
        state=state,
    )


# -- the local store ----------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS base (
    type TEXT NOT NULL, id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL,
    PRIMARY KEY (type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS view (
    type TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (type, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue (
    pos INTEGER PRIMARY KEY AUTOINCREMENT,
    mid TEXT NOT NULL UNIQUE,
    seq INTEGER NOT NULL,
    hlc TEXT NOT NULL,
    op TEXT NOT NULL,
    rtype TEXT NOT NULL,
    id TEXT NOT NULL,
    base_seq INTEGER,
    fields TEXT,
    tags_add TEXT NOT NULL DEFAULT '[]',
    tags_remove TEXT NOT NULL DEFAULT '[]',
    data TEXT,
    state TEXT NOT NULL DEFAULT 'pending',
    lost_fields TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS queue_record ON queue (rtype, id);
-- The push reads the next batch of pending mutations: acked rows (kept as an overlay until the
-- next complete pull) must not be walked over on every batch.
CREATE INDEX IF NOT EXISTS queue_pending ON queue (pos) WHERE state = 'pending';
CREATE TABLE IF NOT EXISTS outcomes (
    mid TEXT PRIMARY KEY, seq INTEGER NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL,
    status TEXT NOT NULL, code TEXT, message TEXT, lost TEXT NOT NULL DEFAULT '[]',
    mutation TEXT NOT NULL
);
"""


class DeviceClient:
    """One phone: a local store, an offline queue, and push/pull over an ``httpx.Client``.

    ``path`` is the local SQLite file (``":memory:"`` for a throwaway device). Reopening the same
    file with the same ``device_id`` continues where the device stopped, queue included.
    ``sleep`` is how the client waits between retries (tests pass a recorder instead of sleeping).
    """

    def __init__(
        self,
        http: httpx.Client,
        *,
        token: str,
        device_id: str,
        path: str = ":memory:",
        person_id: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
        encoding: str = "json",
        gzip: bool = False,
        batch_size: int = MAX_BATCH,
        page_limit: int = 500,
        retries: int = 5,
        backoff_seconds: float = 0.2,
        max_backoff_seconds: float = 10.0,
        timeout_seconds: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        app_version: str = APP_VERSION,
        rng: random.Random | None = None,
    ):
        if encoding not in {"json", "msgpack"}:
            raise ValueError(f"encoding must be json or msgpack, not {encoding!r}")
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
        self.http = http
        self.token = token
        self.device_id = device_id
        self.clock = clock
        self.encoding = encoding
        self.gzip = gzip
        self.batch_size = batch_size
        self.page_limit = page_limit
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.timeout_seconds = timeout_seconds
        self.sleep = sleep
        self.app_version = app_version
        self.rng = rng or random.Random()
        self.bytes_up = 0
        self.bytes_down = 0
        self.requests = 0
        self._lock = threading.RLock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(_SCHEMA)
        with self._tx():
            known = self._meta("device_id")
            if known is None:
                self._set_meta("device_id", device_id)
                self._set_meta("next_seq", "1")
            elif known != device_id:
                raise ValueError(f"{path} belongs to device {known}, not {device_id}")
            if person_id is not None:
                self._set_meta("person_id", person_id)
        self.hlc: str | None = self._meta("hlc")  # the last HLC this device issued or saw

    @classmethod
    def connect(cls, base_url: str, *, token: str, device_id: str, **kwargs: Any) -> DeviceClient:
        """A client over its own ``httpx.Client`` to a real server (closed by :meth:`close`)."""
        http = httpx.Client(base_url=base_url, timeout=kwargs.get("timeout_seconds", 30.0))
        client = cls(http, token=token, device_id=device_id, **kwargs)
        client._owns_http = True
        return client

    _owns_http = False

    def close(self) -> None:
        pool, self._send_pool = self._send_pool, None
        if pool is not None:  # outside the lock: a request in flight may need it (a wipe)
            pool.shutdown(wait=True)
        with self._lock:
            self.db.close()
            if self._owns_http:
                self.http.close()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- local transactions and meta ---------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One local write transaction (edits, acknowledgements and pulled pages are atomic)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self.db.execute("DELETE FROM meta WHERE key = ?", [key])
        else:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO "
                "UPDATE SET value = excluded.value",
                [key, value],
            )

    @property
    def cursor(self) -> str | None:
        with self._lock:
            return self._meta("cursor")

    @property
    def person_id(self) -> str | None:
        with self._lock:
            return self._meta("person_id")

    @property
    def revoked(self) -> bool:
        with self._lock:
            return self._meta("revoked") == "1"

    # -- HLC ---------------------------------------------------------------------------------

    def _tick(self) -> str:
        """The HLC of a new local event (call inside a local transaction: it is persisted)."""
        self.hlc = hlc_clock.advance(self.hlc, self.clock.now_ms(), self.device_id)
        self._set_meta("hlc", self.hlc)
        return self.hlc

    def _observe(self, remote: str | None) -> None:
        """Advance the device's HLC past the server's (every push and pull answer carries it)."""
        if not remote:
            return
        with self._tx():
            self._observe_in_tx(remote)

    def _observe_in_tx(self, remote: str | None) -> None:
        if remote:
            self.hlc = hlc_clock.advance(self.hlc, self.clock.now_ms(), self.device_id, seen=remote)
            self._set_meta("hlc", self.hlc)

    # -- reading the local view ----------------------------------------------------------------

    def get(self, type_: str, id_: str) -> dict[str, Any] | None:
        """A record as the user sees it (server copy plus unsent local edits), or None."""
        with self._lock:
            row = self.db.execute(
                "SELECT data FROM view WHERE type = ? AND id = ?", [type_, id_]
            ).fetchone()
        return _json_decode(row[0]) if row else None

    def all(self, type_: str) -> dict[str, dict[str, Any]]:
        """Every record of a type in the local view, by id."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, data FROM view WHERE type = ? ORDER BY id", [type_]
            ).fetchall()
        return {r[0]: _json_decode(r[1]) for r in rows}

    def server_copy(self, type_: str) -> dict[str, dict[str, Any]]:
        """The server's copy as last pulled, without local edits."""
        with self._lock:
            rows = self.db.execute(
                "SELECT id, data FROM base WHERE type = ? ORDER BY id", [type_]
            ).fetchall()
        return {r[0]: _json_decode(r[1]) for r in rows}

    def household(self, household_id: str) -> dict[str, Any] | None:
        return self.get("household", household_id)

    def households(self) -> dict[str, dict[str, Any]]:
        return self.all("household")

    def visits(self, household_id: str | None = None) -> dict[str, dict[str, Any]]:
        visits = self.all("visit")
        if household_id is None:
            return visits
        return {
            k: v
            for k, v in visits.items()
            if v.get("household_id") == household_id
            or household_id in (v.get("household_ids") or ())
        }

    def notices(self, *, unread: bool = False) -> list[dict[str, Any]]:
        """The person's inbox, newest first: every notification to them (SPEC 3.2, type
        ``notice``), with ``read_at`` set once read here or on another of their phones."""
        items = sorted(
            self.all("notice").values(), key=lambda n: (n["created_at"], int(n["id"])), reverse=True
        )
        return [n for n in items if not (unread and n.get("read_at"))]

    def mark_notice_read(self, notice_id: str) -> Queued:
        """Queue ``notice.read``: the view shows it read at once, the server on the next push
        (and the person's other phones on their next pull)."""
        return self.enqueue("notice.read", notice_id, data={"notice_id": notice_id})

    def pending(self) -> list[Queued]:
        """Mutations not yet acknowledged by the server, oldest first."""
        return self._queue("state = 'pending'")

    def pending_count(self) -> int:
        with self._lock:
            return self.db.execute("SELECT count(*) FROM queue WHERE state = 'pending'").fetchone()[
                0
            ]

    def outcomes(self, status: str | None = None) -> list[dict[str, Any]]:
        """What the server answered other than ``applied``/``duplicate`` (``merged`` with its
        lost values, ``rejected`` with code and message), for the user to inspect."""
        sql = "SELECT mid, seq, op, id, status, code, message, lost, mutation FROM outcomes"
        params: list[Any] = []
        if status:
            sql += " WHERE status = ?"
            params.append(status)
        with self._lock:
            rows = self.db.execute(sql + " ORDER BY seq", params).fetchall()
        return [
            {
                "mid": r[0],
                "seq": r[1],
                "op": r[2],
                "id": r[3],
                "status": r[4],
                "code": r[5],
                "message": r[6],
                "lost": _json_decode(r[7]),
                "mutation": _json_decode(r[8]),
            }
            for r in rows
        ]

    def rejected(self) -> list[dict[str, Any]]:
        return self.outcomes("rejected")

    def _queue(
        self,
        where: str,
        params: Iterable[Any] = (),
        limit: int | None = None,
    ) -> list[Queued]:
        sql = f"SELECT {_BATCH_COLUMNS}, state FROM queue WHERE {where} ORDER BY pos"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            rows = self.db.execute(sql, list(params)).fetchall()
        return [_queued(r[:-1], r[-1]) for r in rows]

    # -- local edits -------------------------------------------------------------------------

    def enqueue(
        self,
        op: str,
        id_: str,
        *,
        fields: dict[str, Any] | None = None,
        tags_add: Iterable[str] = (),
        tags_remove: Iterable[str] = (),
        data: dict[str, Any] | None = None,
        base_seq: int | None = None,
        record_type: str | None = None,
    ) -> Queued:
        """Queue any op (``whistle.raise``, ``whistle.act``, ...) and apply it to the local view.

        ``base_seq`` defaults to the server seq of the record as this device last pulled it.
        """
        self._refuse_if_revoked()
        rtype = record_type or OP_RECORD_TYPE.get(op) or op.split(".", 1)[0]
        with self._tx() as db:
            if base_seq is None:
                row = db.execute(
                    "SELECT seq FROM base WHERE type = ? AND id = ?", [rtype, id_]
                ).fetchone()
                base_seq = row[0] if row else None
            seq = int(self._meta("next_seq") or "1")
            self._set_meta("next_seq", str(seq + 1))
            hlc = self._tick()
            mid = uuid7()
            db.execute(
                "INSERT INTO queue (mid, seq, hlc, op, rtype, id, base_seq, fields, tags_add,"
                " tags_remove, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    mid,
                    seq,
                    hlc,
                    op,
                    rtype,
                    id_,
                    base_seq,
                    _json_encode(fields).decode() if fields is not None else None,
                    _json_encode(sorted(set(tags_add))).decode(),
                    _json_encode(sorted(set(tags_remove))).decode(),
                    _json_encode(data).decode() if data is not None else None,
                ],
            )
            self._rebuild(rtype, id_)
        return self._queue("mid = ?", [mid])[0]

    def update_household(
        self,
        household_id: str,
        *,
        fields: dict[str, Any] | None = None,
        tags_add: Iterable[str] = (),
        tags_remove: Iterable[str] = (),
    ) -> Queued:
        """Queue an edit of some fields and tags. The view shows most phone numbers masked
        (gridsync/privacy.py): a ``phone`` equal to the masked number the view shows is no
        edit and is left out (a form sent back whole), and any other mask is refused
        (ValueError), so the client never sends a mask as the number."""
        fields = dict(fields or {})
        if "phone" in fields and is_masked(fields["phone"]):
            shown = (self.household(household_id) or {}).get("phone")
            if fields["phone"] != shown:
                raise ValueError(f"phone {fields['phone']!r} is a masked number, not a number")
            del fields["phone"]
        return self.enqueue(
            "household.update",
            household_id,
            fields=fields or None,
            tags_add=tags_add,
            tags_remove=tags_remove,
        )

    def create_household(
        self,
        grid_id: str,
        *,
        household_id: str | None = None,
        tags: Iterable[str] = (),
        **fields: Any,
    ) -> Queued:
        """A household the phone found (``fields``: building, unit, room, head_name, ...)."""
        if is_masked(fields.get("phone")):
            raise ValueError(f"phone {fields['phone']!r} is a masked number, not a number")
        data = {"grid_id": grid_id, **fields, "tags": sorted(set(tags))}
        return self.enqueue("household.create", household_id or uuid7(), data=data)

    def move_out(self, household_id: str) -> Queued:
        return self.enqueue("household.move_out", household_id)

    def log_visit(
        self,
        household_id: str,
        channel: str = "door",
        kinds: Iterable[str] = (),
        note: str = "",
        *,
        at: datetime | str | None = None,
        geo: dict[str, float] | None = None,
        visit_id: str | None = None,
    ) -> Queued:
        """Record a contact. ``at`` defaults to now on the device clock, in China time."""
        if at is None:
            at = datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=CHINA)
        at_text = at.isoformat(timespec="seconds") if isinstance(at, datetime) else at
        data: dict[str, Any] = {
            "household_id": household_id,
            "at": at_text,
            "channel": channel,
            "kinds": sorted(set(kinds)),
            "note": note,
        }
        if geo is not None:
            data["geo"] = geo
        return self.enqueue("visit.create", visit_id or uuid7(), data=data)

    def log_group_visit(
        self,
        household_ids: Iterable[str],
        channel: str = "door",
        kinds: Iterable[str] = (),
        note: str = "",
        *,
        at: datetime | str | None = None,
        visit_id: str | None = None,
    ) -> Queued:
        """Record a group contact (楼栋会): ONE visit counted as a contact of each household
        (1 to 50, all in the member's scope; the server refuses the whole visit otherwise)."""
        ids = list(dict.fromkeys(household_ids))
        if not 1 <= len(ids) <= MAX_GROUP_HOUSEHOLDS:
            raise ValueError(f"a group visit names 1 to {MAX_GROUP_HOUSEHOLDS} households")
        if at is None:
            at = datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=CHINA)
        at_text = at.isoformat(timespec="seconds") if isinstance(at, datetime) else at
        data: dict[str, Any] = {
            "household_ids": ids,
            "at": at_text,
            "channel": channel,
            "kinds": sorted(set(kinds)),
            "note": note,
        }
        return self.enqueue("visit.create", visit_id or uuid7(), data=data)

    def void_visit(self, visit_id: str) -> Queued:
        return self.enqueue("visit.void", visit_id)

    # -- the view: base + acked overlay + pending ----------------------------------------------

    def _rebuild(self, rtype: str, id_: str) -> None:
        """Recompute one record's view from the server copy and the queued edits on it."""
        row = self.db.execute(
            "SELECT data FROM base WHERE type = ? AND id = ?", [rtype, id_]
        ).fetchone()
        current = _json_decode(row[0]) if row else None
        for op, fields, tags_add, tags_remove, data, lost in self.db.execute(
            "SELECT op, fields, tags_add, tags_remove, data, lost_fields FROM queue "
            "WHERE rtype = ? AND id = ? ORDER BY pos",
            [rtype, id_],
        ).fetchall():
            current = self._apply(
                current,
                op,
                id_,
                _json_decode(fields) if fields is not None else None,
                _json_decode(tags_add),
                _json_decode(tags_remove),
                _json_decode(data) if data is not None else None,
                set(_json_decode(lost)),
            )
        if current is None:
            self.db.execute("DELETE FROM view WHERE type = ? AND id = ?", [rtype, id_])
        else:
            self.db.execute(
                "INSERT INTO view (type, id, data) VALUES (?, ?, ?) ON CONFLICT(type, id) "
                "DO UPDATE SET data = excluded.data",
                [rtype, id_, _json_encode(current).decode()],
            )

    def _apply(
        self,
        current: dict[str, Any] | None,
        op: str,
        id_: str,
        fields: dict[str, Any] | None,
        tags_add: list[str],
        tags_remove: list[str],
        data: dict[str, Any] | None,
        lost: set[str],
    ) -> dict[str, Any] | None:
        """What an op does to a record, as the server would do it when it wins every field.
        Ops the client does not model (whistle) leave the view to the server's copy."""
        if op == "household.create":
            if current is not None:
                return current
            record: dict[str, Any] = {
                "id": id_,
                "grid_id": "",
                "building": "",
                "unit": "",
                "room": "",
                "head_name": "",
                "phone": "",
                "size": 1,
                "tags": [],
                "notes": "",
                "responsible_member_id": None,
                "status": "active",
            }
            record.update(data or {})
            record.update(fields or {})
            record["tags"] = sorted(set(record.get("tags") or []) | set(tags_add))
            return record
        if op == "household.update":
            if current is None:
                return None
            record = dict(current)
            for name, value in (fields or {}).items():
                if name not in lost:
                    record[name] = value
            record["tags"] = sorted(
                (set(record.get("tags") or []) | set(tags_add)) - set(tags_remove)
            )
            return record
        if op == "household.move_out":
            return None if current is None else {**current, "status": "moved_out"}
        if op == "visit.create":
            if current is not None:
                return current
            visit: dict[str, Any] = {
                "id": id_,
                "household_id": "",
                "member_id": self._meta("person_id") or "",
                "device_id": self.device_id,
                "at": "",
                "channel": "other",
                "kinds": [],
                "note": "",
                "geo": None,
                "voided": False,
            }
            visit.update(data or {})
            if visit.get("household_ids"):  # a group visit, as the server keeps it
                visit["household_id"] = visit["household_ids"][0]
                visit["household_ids"] = sorted(visit["household_ids"])
            return visit
        if op == "visit.void":
            return None if current is None else {**current, "voided": True}
        if op == "notice.read":
            if current is None or current.get("read_at"):
                return current
            return {**current, "read_at": iso_ms(self.clock.now_ms())}
        return current

    # -- HTTP --------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.token}",
            "X-Gridsync-Schema": SCHEMA_VERSION,
            "X-Gridsync-App": self.app_version,
            "Accept": "application/msgpack" if self.encoding == "msgpack" else "application/json",
            "Accept-Encoding": "gzip" if self.gzip else "identity",
        }

    def _encode(self, body: Any) -> tuple[bytes, dict[str, str]]:
        if self.encoding == "msgpack":
            content, headers = _msgpack_encode(body), {"Content-Type": "application/msgpack"}
        else:
            content, headers = _json_encode(body), {"Content-Type": "application/json"}
        if self.gzip:
            content = gzip_module.compress(content, compresslevel=6)
            headers["Content-Encoding"] = "gzip"
        return content, headers

    def request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """One API call with retries: connection errors, timeouts and 5xx are retried with
        exponential backoff, sending exactly the same bytes; a 4xx raises :class:`ServerRefused`
        at once (and a revoked device wipes itself first; a draining one pushes what it holds,
        wipes itself and raises :class:`DeviceDrainedError`)."""
        self._refuse_if_revoked()
        try:
            return self._request(method, path, body=body, params=params)
        except DeviceDraining:
            if self._draining:  # refused while draining already: do not drain again
                raise
            self.drain()
            raise  # pragma: no cover - drain() always raises

    def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """:meth:`request` without the local revocation check (which takes the store's lock:
        the push's helper thread must not wait for an acknowledgement in progress)."""
        headers = self._headers()
        content = None
        if body is not None:
            content, extra = self._encode(body)
            headers.update(extra)
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                delay = min(self.backoff_seconds * 2 ** (attempt - 1), self.max_backoff_seconds)
                self.sleep(delay * self.rng.uniform(0.5, 1.0))
            self.requests += 1
            self.bytes_up += len(content or b"")
            try:
                response = self.http.request(
                    method,
                    path,
                    content=content,
                    params=params,
                    headers=headers,
                    timeout=self.timeout_seconds,
                )
            except httpx.TransportError as exc:  # connect errors, timeouts, broken connections
                last = exc
                continue
            self.bytes_down += response.num_bytes_downloaded
            if response.status_code < 400:
                return self._decode(response)
            if response.status_code >= 500 or response.status_code == 429:
                last = Unreachable(f"{response.status_code} from {path}: {response.text[:200]}")
                continue
            self._refused(response)
        raise Unreachable(
            f"{method} {path} failed after {self.retries + 1} attempts: {last!r}"
        ) from last

    @staticmethod
    def _decode(response: httpx.Response) -> dict[str, Any]:
        if response.headers.get("content-type", "").startswith("application/msgpack"):
            return msgspec.msgpack.decode(response.content)
        return _json_decode(response.content)

    def _refused(self, response: httpx.Response) -> None:
        try:
            body = self._decode(response)
        except msgspec.DecodeError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        code = str(body.get("code", f"http_{response.status_code}"))
        message = str(body.get("message", response.text[:200]))
        if response.status_code == 401 and code == "device_revoked":
            self.wipe()
            raise DeviceRevokedError(response.status_code, code, message, body)
        if code == "device_draining":
            raise DeviceDraining(response.status_code, code, message, body)
        raise ServerRefused(response.status_code, code, message, body)

    def _refuse_if_revoked(self) -> None:
        if self.revoked:
            raise DeviceRevokedError(
                401,
                "device_revoked",
                "this device was revoked and its local data wiped",
                {"wipe": True},
            )

    def wipe(self) -> None:
        """Delete every local record, the queue and the cursor (a revoked device)."""
        with self._tx() as db:
            for table in ("base", "view", "queue", "outcomes", "meta"):
                db.execute(f"DELETE FROM {table}")
            self._set_meta("device_id", self.device_id)
            self._set_meta("revoked", "1")
        self.hlc = None

    def me(self) -> dict[str, Any]:
        """``GET /api/v1/me``; remembers the person id (visits are logged in their name)."""
        me = self.request("GET", "/api/v1/me")
        with self._tx():
            self._set_meta("person_id", me["person"]["id"])
        return me

    # -- push --------------------------------------------------------------------------------

    def push(self) -> PushReport:
        """Send every pending mutation, oldest first, at most ``batch_size`` per request.

        Pipelined: while the server applies a batch, this device acknowledges the previous
        answer and reads the next batch from its queue (the request itself runs on a helper
        thread). A batch is sent only after the previous one's answer arrived, so seqs stay
        continuous and a refusal (a seq gap, a batch too large) is handled before anything else
        is sent; an answer is acknowledged at the latest before :meth:`push` returns or raises.
        A crash between an answer and its acknowledgement resends that batch, which the server
        answers ``duplicate``.

        A device revoked with drain gets one push, marked ``drain: true``: before sending more
        than one batch the client reads its sync status, and a draining device drains
        (:meth:`drain`) instead; a drain that lands after that read refuses the next batch
        (``403 device_draining``, nothing stored), and the client drains then."""
        return self._push(drain=False)

    def drain(self) -> None:
        """The server revoked this device with drain (a pull answered ``403 device_draining``,
        or the sync status said ``draining``): push everything pending in one request, the one
        the server accepts, then wipe. Always raises :class:`DeviceDrainedError` (or
        :class:`DeviceRevokedError` when the drain was cut short by a plain revoke)."""
        self._draining = True
        try:
            self._push(drain=True)
        finally:
            self._draining = False
        raise SyncError("the drain push was answered without drained: true")

    _draining = False

    def _push(self, *, drain: bool) -> PushReport:
        report = PushReport()
        pending = self.pending_count()
        batch_size = max(pending, 1) if drain else self.batch_size
        gaps = 0
        unconfirmed = self._meta_locked("seq_confirmed") is None and pending
        if unconfirmed or (not drain and pending > batch_size):
            status = self._sync_status()
            if status.get("draining") and not drain:
                self.drain()
        answered: tuple[list[tuple], dict[str, Any]] | None = None  # not yet acknowledged
        batch = self._next_batch(batch_size)
        drained = False
        if drain and not batch:  # nothing to send: an empty push still ends the drain
            answer = self._request("POST", PUSH_PATH, body=self._push_body([], drain=True))
            drained = bool(answer.get("drained"))
        try:
            while batch:
                body = self._push_body(batch, drain=drain)
                self._refuse_if_revoked()
                sending = self._sender().submit(self._request, "POST", PUSH_PATH, body=body)
                if answered is not None:
                    self._acknowledge(*answered, report)
                    answered = None
                after = self._next_batch(batch_size, after_pos=batch[-1][0])
                try:
                    answer = sending.result()
                except ServerRefused as exc:
                    if exc.code == "device_draining" and not drain:
                        # drained since the status was read: nothing of this batch was stored;
                        # everything goes in the one push marked drain
                        self.drain()
                    if exc.status == 409 and exc.code == "seq_gap" and gaps < 3:
                        gaps += 1
                        self._renumber(int(exc.body["expected_seq"]))
                        report.renumbered += 1
                        batch = self._next_batch(batch_size)
                        continue
                    if exc.status == 413 and batch_size > 1:
                        batch_size = max(1, len(batch) // 2)
                        batch = self._next_batch(batch_size)
                        continue
                    raise
                gaps = 0
                report.batches += 1
                report.sent += len(batch)
                answered = (batch, answer)
                if answer.get("drained"):  # the device's last push: nothing more is taken
                    drained = True
                    break
                if len(after) < batch_size:  # edits made while the batch was in flight
                    after = self._next_batch(batch_size, after_pos=batch[-1][0])
                batch = after
        finally:
            if answered is not None:
                self._acknowledge(*answered, report)
        if drained:
            unsent = self.pending_count()
            self.wipe()
            raise DeviceDrainedError(report.sent, unsent)
        return report

    def _push_body(self, batch: list[tuple], *, drain: bool) -> dict[str, Any]:
        """A push request. ``drain`` is always sent: ``true`` marks the drain push, ``false``
        tells the server this client marks it, so that an ordinary batch arriving after a
        drain is refused (``device_draining``) instead of being taken for the last push."""
        return {"device_id": self.device_id, "mutations": self._wire_batch(batch), "drain": drain}

    def _sender(self) -> ThreadPoolExecutor:
        """The helper thread that sends push requests while the queue is read."""
        with self._lock:
            if self._send_pool is None:
                self._send_pool = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"gridsync-push-{self.device_id}"
                )
            return self._send_pool

    _send_pool: ThreadPoolExecutor | None = None

    def _next_batch(self, limit: int, after_pos: int = 0) -> list[tuple]:
        """The oldest ``limit`` pending mutations after queue position ``after_pos``, as stored
        (JSON parts left encoded): the rows of :data:`_BATCH_COLUMNS` and the record type, in
        queue order."""
        with self._lock:
            return self.db.execute(
                f"SELECT {_BATCH_COLUMNS}, rtype FROM queue WHERE state = 'pending' AND pos > ?"
                " ORDER BY pos LIMIT ?",
                [after_pos, limit],
            ).fetchall()

    def _wire_batch(self, batch: list[tuple]) -> list[Any]:
        """The batch as SPEC 3.1 spells it (the same as :meth:`Queued.wire`). For JSON the
        stored JSON parts go out as they are (``msgspec.Raw``) instead of being decoded and
        encoded again; msgpack needs them decoded."""
        if self.encoding != "json":
            return [_queued(row[:-1]).wire() for row in batch]
        out = []
        for (
            _pos,
            mid,
            seq,
            hlc,
            op,
            id_,
            base_seq,
            fields,
            tags_add,
            tags_remove,
            data,
            _rtype,
        ) in batch:
            m: dict[str, Any] = {"mid": mid, "seq": seq, "hlc": hlc, "op": op, "id": id_}
            if base_seq is not None:
                m["base_seq"] = base_seq
            if fields is not None:
                m["fields"] = msgspec.Raw(fields.encode())
            if tags_add != "[]":
                m["tags_add"] = msgspec.Raw(tags_add.encode())
            if tags_remove != "[]":
                m["tags_remove"] = msgspec.Raw(tags_remove.encode())
            if data is not None:
                m["data"] = msgspec.Raw(data.encode())
            out.append(m)
        return out

    def _meta_locked(self, key: str) -> str | None:
        with self._lock:
            return self._meta(key)

    def _sync_status(self) -> dict[str, Any]:
        """``GET /api/v1/sync/status`` before a push that needs it (a draining device may
        read it too). Before a store's first push: a device id that pushed before from another
        install (the app reinstalled, its data lost) has consumed seqs on the server, and the
        server answers ``duplicate`` to any seq at or below its last one. Ask where the device
        stands and number the queue after it, so that nothing new is mistaken for a resend."""
        status = self.request("GET", STATUS_PATH)
        if self._meta_locked("seq_confirmed") is None:
            last = int(status.get("device_last_seq", 0))
            first = self._queue("state = 'pending'", limit=1)
            if first and first[0].seq <= last:
                self._renumber(last + 1)
            with self._tx():
                self._set_meta("seq_confirmed", "1")
        return status

    def _renumber(self, expected_seq: int) -> None:
        """The server expects ``expected_seq`` next. Its seqs below that are consumed (by
        mutations it has, perhaps ones whose answer we lost: those keep their mid, so a resend is
        still answered ``duplicate``); ours above it never reached it. Renumber the pending
        mutations from ``expected_seq``, in order, keeping their mids."""
        with self._tx() as db:
            pending = db.execute(
                "SELECT pos FROM queue WHERE state = 'pending' ORDER BY pos"
            ).fetchall()
            for i, (pos,) in enumerate(pending):
                db.execute("UPDATE queue SET seq = ? WHERE pos = ?", [expected_seq + i, pos])
            self._set_meta("next_seq", str(expected_seq + len(pending)))

    def _acknowledge(self, batch: list[tuple], answer: dict[str, Any], report: PushReport) -> None:
        """Apply the server's answer to a batch in one local transaction: ``applied`` and
        ``duplicate`` mutations are marked acked with one UPDATE over the batch's range of
        positions, ``merged`` ones keep the fields they lost, ``rejected`` ones leave the queue
        for the outcomes table. The server's HLC is observed in the same transaction."""
        results = {r["mid"]: r for r in answer.get("results", [])}
        missing = [row[1] for row in batch if row[1] not in results]
        if missing:
            raise SyncError(
                f"push answer has no result for {len(missing)} mutations (first {missing[0]})"
            )
        with self._tx() as db:
            outcomes: list[tuple] = []
            for row in batch:
                result = results[row[1]]
                status = result["status"]
                if result.get("clock") == "clamped":
                    report.clamped += 1
                if status in {"applied", "duplicate"}:
                    setattr(report, status, getattr(report, status) + 1)
                    continue
                m, rtype = _queued(row[:-1]), row[-1]
                lost = result.get("lost") or []
                outcomes.append(self._outcome_row(m, result, lost))
                if status == "merged":
                    report.merged += 1
                    report.lost.extend({**entry, "id": m.id, "mid": m.mid} for entry in lost)
                    # Fields where this mutation's value lost (an entry can also be the value
                    # this mutation overwrote without having seen it: then ours won).
                    mine = m.fields or {}
                    ours_lost = sorted(
                        {
                            e["field"]
                            for e in lost
                            if e["field"] in mine and e.get("winner") != mine[e["field"]]
                        }
                    )
                    if not ours_lost:
                        continue  # all of it won: acked below with the applied ones, and the
                        # user sees what the queue showed already
                    db.execute(
                        "UPDATE queue SET state = 'acked', lost_fields = ? WHERE pos = ?",
                        [_json_encode(ours_lost).decode(), m.pos],
                    )
                else:  # rejected (or a status this client does not know: never resend it)
                    report.rejected += 1
                    db.execute("DELETE FROM queue WHERE pos = ?", [m.pos])
                self._rebuild(rtype, m.id)
            if outcomes:
                db.executemany(_OUTCOME_INSERT, outcomes)
            # The batch is the oldest pending mutations in pos order, and new edits only get
            # higher positions: every pending row in this range was sent and answered.
            db.execute(
                "UPDATE queue SET state = 'acked' WHERE state = 'pending' AND pos BETWEEN ? AND ?",
                [batch[0][0], batch[-1][0]],
            )
            self._observe_in_tx(answer.get("server_hlc"))

    @staticmethod
    def _outcome_row(m: Queued, result: dict[str, Any], lost: list[Any]) -> tuple:
        """A row of ``outcomes`` (:data:`_OUTCOME_INSERT`) for an answer the user may inspect."""
        return (
            m.mid,
            m.seq,
            m.op,
            m.id,
            result["status"],
            result.get("code"),
            result.get("message"),
            _json_encode(lost).decode(),
            _json_encode(m.wire()).decode(),
        )

    # -- pull --------------------------------------------------------------------------------

    def pull(self) -> PullReport:
        """Page through the server's changes until ``has_more`` is false."""
        report = PullReport()
        while True:
            params: dict[str, Any] = {"limit": self.page_limit}
            cursor = self.cursor
            if cursor:
                params["cursor"] = cursor
            page = self.request("GET", PULL_PATH, params=params)
            self._observe(page.get("server_hlc"))
            if page.get("reset"):
                if cursor is None or report.resets >= 3:
                    raise SyncError("the server keeps answering reset to an initial sync")
                report.resets += 1
                self._drop_copy()
                if not page.get("cursor"):
                    continue  # re-sync from no cursor
                # Otherwise the page is already the first page of the new snapshot.
            self._apply_page(page, report)
            report.pages += 1
            if not page.get("has_more"):
                break
        self._settle()
        return report

    def _apply_page(self, page: dict[str, Any], report: PullReport) -> None:
        """Apply one page and move the cursor, in one local transaction."""
        with self._tx() as db:
            touched: set[tuple[str, str]] = set()
            for change in page.get("changes", []):
                key = (change["type"], change["id"])
                if change["op"] == "remove":
                    db.execute("DELETE FROM base WHERE type = ? AND id = ?", list(key))
                    report.removes += 1
                else:
                    db.execute(
                        "INSERT INTO base (type, id, seq, data) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT(type, id) DO UPDATE SET seq = excluded.seq, "
                        "data = excluded.data",
                        [*key, change["seq"], _json_encode(change.get("data")).decode()],
                    )
                    report.puts += 1
                report.changes += 1
                touched.add(key)
            for key in touched:
                self._rebuild(*key)
            self._set_meta("cursor", page.get("cursor"))

    def _settle(self) -> None:
        """After a complete pull the server copy includes everything acknowledged before it:
        drop the acked overlay and show server copy + pending edits. Notices older than the
        server sends (``NOTICE_VISIBLE_DAYS``, by this device's clock) are dropped."""
        horizon = self.clock.now_ms() - NOTICE_VISIBLE_DAYS * DAY_MS
        with self._tx() as db:
            for id_, data in db.execute(
                "SELECT id, data FROM base WHERE type = 'notice'"
            ).fetchall():
                created = datetime.fromisoformat(_json_decode(data)["created_at"])
                if created.timestamp() * 1000 < horizon:
                    db.execute("DELETE FROM base WHERE type = 'notice' AND id = ?", [id_])
                    db.execute("DELETE FROM view WHERE type = 'notice' AND id = ?", [id_])
            keys = db.execute(
                "SELECT DISTINCT rtype, id FROM queue WHERE state = 'acked'"
            ).fetchall()
            db.execute("DELETE FROM queue WHERE state = 'acked'")
            for rtype, id_ in keys:
                self._rebuild(rtype, id_)

    def _drop_copy(self) -> None:
        """``reset``: forget the server copy and the cursor, keep the unsent queue."""
        with self._tx() as db:
            db.execute("DELETE FROM base")
            db.execute("DELETE FROM view")
            db.execute("DELETE FROM queue WHERE state = 'acked'")
            self._set_meta("cursor", None)
            for rtype, id_ in db.execute(
                "SELECT DISTINCT rtype, id FROM queue WHERE state = 'pending'"
            ).fetchall():
                self._rebuild(rtype, id_)

    # -- sync --------------------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Push everything pending, then pull everything new."""
        return SyncReport(push=self.push(), pull=self.pull())

"""Hybrid logical clocks (SPEC 3.1): ``<wall ms, 15 digits>:<counter, 5 digits>:<node>``.

Zero padding makes string order clock order, so HLCs compare as plain strings; the node id
(a device id, or ``server``) breaks ties deterministically. The server keeps its own HLC in
``meta`` (key ``server_hlc``), advanced in the write transaction of every push and restore, so
that the HLC it hands out is never behind anything it has accepted.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # only in annotations: the reference client uses this module without it
    import sqlite_utils

from gridsync.models.sync import HLC_PATTERN

SERVER_NODE = "server"
# fullmatch, not match: ``$`` lets a trailing newline through (issue 12)
_HLC_RE = re.compile(HLC_PATTERN)
MAX_COUNTER = 99_999


class Hlc(NamedTuple):
    ms: int
    counter: int
    node: str

    def __str__(self) -> str:
        return format_hlc(self.ms, self.counter, self.node)


def format_hlc(ms: int, counter: int, node: str) -> str:
    return f"{ms:015d}:{counter:05d}:{node}"


def parse(value: str) -> Hlc:
    if not _HLC_RE.fullmatch(value):
        raise ValueError(f"not an HLC: {value!r} (expected <15-digit ms>:<5-digit counter>:<node>)")
    ms, counter, node = value.split(":", 2)
    return Hlc(int(ms), int(counter), node)


def is_valid(value: str) -> bool:
    return _HLC_RE.fullmatch(value) is not None


def ms_of(value: str) -> int:
    return int(value[:15])


def node_of(value: str) -> str:
    return value[22:]


def advance(last: str | None, now_ms: int, node: str = SERVER_NODE, seen: str | None = None) -> str:
    """The next HLC after ``last`` (and after ``seen``, a received HLC), at wall time ``now_ms``."""
    last_ms, last_counter = (ms_of(last), int(last[16:21])) if last else (0, 0)
    if seen is not None:
        seen_ms, seen_counter = ms_of(seen), int(seen[16:21])
        if (seen_ms, seen_counter) > (last_ms, last_counter):
            last_ms, last_counter = seen_ms, seen_counter
    if now_ms > last_ms:
        return format_hlc(now_ms, 0, node)
    if last_counter >= MAX_COUNTER:
        return format_hlc(last_ms + 1, 0, node)
    return format_hlc(last_ms, last_counter + 1, node)


class ServerClock:
    """The server's HLC for the length of one write transaction.

    ``tick()`` hands out fresh server HLCs (clamped mutations, restores), ``observe()`` folds in
    accepted device HLCs, ``save()`` stores the result in ``meta``.
    """

    def __init__(self, db: sqlite_utils.Database, now_ms: int):
        self.db = db
        self.now_ms = now_ms
        self.last = load(db)
        self._dirty = False

    def tick(self) -> str:
        self.last = advance(self.last, self.now_ms)
        self._dirty = True
        return self.last

    def observe(self, hlc: str) -> None:
        if self.last is None or hlc[:21] > self.last[:21]:
            self.last = format_hlc(ms_of(hlc), int(hlc[16:21]), SERVER_NODE)
            self._dirty = True

    def save(self) -> None:
        if self._dirty and self.last is not None:
            self.db.execute(
                "INSERT INTO meta (key, value) VALUES ('server_hlc', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [self.last],
            )


def load(db: sqlite_utils.Database) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'server_hlc'").fetchone()
    return row[0] if row else None


def current(db: sqlite_utils.Database, now_ms: int) -> str:
    """The server HLC to report in a read (not stored: the next write moves past it anyway)."""
    return advance(load(db), now_ms)

"""Time and ids. Code that depends on "now" takes a Clock, so tests and ``sweep --now`` can
choose the time instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import uuid_utils


class Clock:
    """The system clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ms() / 1000, tz=UTC)


class FixedClock(Clock):
    """A clock that moves only when told to."""

    def __init__(self, at: datetime | int):
        self._ms = at if isinstance(at, int) else int(at.timestamp() * 1000)

    def now_ms(self) -> int:
        return self._ms

    def advance(self, *, seconds: float = 0, minutes: float = 0) -> None:
        self._ms += int((seconds + minutes * 60) * 1000)

    def set(self, at: datetime) -> None:
        self._ms = int(at.timestamp() * 1000)


SYSTEM_CLOCK = Clock()


def iso_ms(ms: int) -> str:
    """UTC ISO 8601 with milliseconds, e.g. ``2026-11-23T05:30:00.123+00:00``."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def now_iso(clock: Clock = SYSTEM_CLOCK) -> str:
    return iso_ms(clock.now_ms())


def parse_ms(value: str | datetime) -> int:
    """Epoch ms of an ISO 8601 time; a naive time is taken as UTC. ValueError also for a time
    whose UTC instant is outside years 1-9999 (``iso_ms`` could not write it back)."""
    dt = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    try:
        dt.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError(f"{value} is outside the years 1-9999 in UTC") from exc
    return int(dt.timestamp() * 1000)


def uuid7() -> str:
    """A time-ordered UUIDv7 string: keeps B-tree inserts at the end (PERFORMANCE.md)."""
    return str(uuid_utils.uuid7())

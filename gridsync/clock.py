"""Time and ids. Code that depends on "now" takes a Clock, so tests and ``sweep --now`` can
choose the time instead of sleeping."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, tzinfo

import uuid_utils

DAY_MS = 86_400_000  # a day in milliseconds: the unit of every cycle, window and retention


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


# The times a phone sends (a visit's ``at``, a case's ``raised_at``, an action's ``at``) and the
# times an operator types (``--now``) are kept within one window. A phone's are kept as
# sent, but the server also reads them (coverage, reports, local times in notifications). A
# phone's clock can be wrong, even reset to 1970, so the window is wide; what it shuts out is what
# no clock shows and what overflows later: year 1 or 9999 becomes year 0 or 10000 once moved to
# another zone (issue 12).
DEVICE_TIME_MIN = datetime(1970, 1, 1, tzinfo=UTC)
DEVICE_TIME_MAX = datetime(2200, 1, 1, tzinfo=UTC)
# Offsets of real zones run from -12:00 (Baker Island) to +14:00 (Line Islands).
_OFFSET_MIN, _OFFSET_MAX = timedelta(hours=-12), timedelta(hours=14)


def _in_window(dt: datetime, value: str) -> int:
    """Epoch ms of an aware ``dt`` within ``DEVICE_TIME_MIN``..``DEVICE_TIME_MAX``; ValueError
    otherwise (also for an instant that overflows when moved to UTC: year 1 at +08:00)."""
    try:
        instant = dt.astimezone(UTC)
    except OverflowError:
        instant = None
    if instant is None or not DEVICE_TIME_MIN <= instant < DEVICE_TIME_MAX:
        raise ValueError(
            f"{value!r} is outside {DEVICE_TIME_MIN.year}-{DEVICE_TIME_MAX.year - 1}: "
            "check the clock"
        )
    return int(instant.timestamp() * 1000)


def operator_time_ms(value: str, zone: tzinfo) -> int:
    """Epoch ms of a time an operator types (``--now``, ``--since``, ...): ISO 8601; a bare
    date is midnight and a time without an offset is wall time, both in the district's
    ``zone`` (an operator in China means Beijing time); within the years the phones' times may
    have (1970-2199), so that every later step (a deadline, a cutoff, a local time in a
    notification) stays within what ``datetime`` can hold. ValueError with the reason."""
    try:
        dt = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"{value!r} is not an ISO 8601 time: e.g. 2026-11-23, 2026-11-23T09:00 or "
            "2026-11-23T09:00:00+08:00"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return _in_window(dt, value)


def device_time_ms(value: str) -> int:
    """Epoch ms of a time sent by a phone: ISO 8601 with a date, a time and an offset, the
    offset of a real zone, the instant within ``DEVICE_TIME_MIN``..``DEVICE_TIME_MAX``.
    ValueError (with the reason) for anything else: no offset, a leap second, year 9999, ...
    One owner for every phone-sent time: visits and whistle cases call it."""
    try:
        dt = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not an ISO 8601 time ({exc})") from None
    offset = dt.utcoffset()
    if offset is None:  # a date alone, or a time without an offset
        raise ValueError(f"{value!r} needs a date, a time and an offset, e.g. +08:00")
    if not _OFFSET_MIN <= offset <= _OFFSET_MAX:
        raise ValueError(f"{value!r} has an offset outside -12:00..+14:00")
    return _in_window(dt, value)


def uuid7() -> str:
    """A time-ordered UUIDv7 string: keeps B-tree inserts at the end (PERFORMANCE.md)."""
    return str(uuid_utils.uuid7())

"""Time the way people read it: the district's time zone (the ``timezone`` setting, default
``Asia/Shanghai``) for every human-facing time, and for the times an operator types.

The wire and the database never change: epoch milliseconds inside, ISO 8601 with an offset on
the wire (``clock.iso_ms``), JSON output keeps the wire format and CSV keeps ISO with an
offset. What a person reads is local: CLI tables and footers, ``sweep`` output, case times,
notification texts (``notify/outbox.py`` renders them through :func:`local_text`) and the date
columns of XLSX exports (:func:`local_naive`: a spreadsheet has no time zones, so its cells hold
the district's wall time). An operator's ``--now 2026-12-06`` is local midnight and
``--now 2026-12-06T09:00`` local wall time; a time with an offset is taken as given
(:func:`operator_ms`, the one reader of typed times, ``cli.base.TimeParam``).

Zones come from ``zoneinfo``: the system's database, else the ``tzdata`` package (a dependency,
for systems without one, such as Windows), so a name is either a real zone or refused when the
settings are read (:func:`check_zone`). ``tests/test_localtime.py`` checks each surface.
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gridsync.clock import operator_time_ms, parse_ms

DEFAULT_ZONE = "Asia/Shanghai"
# How a person reads a time: the CLI's tables and footers; notifications use the shorter
# month-day form (outbox.local) since the year is plain in a message read the same day.
TEXT_FORMAT = "%Y-%m-%d %H:%M"
# The number format of a date-time cell in an XLSX export (Excel's codes).
XLSX_DATETIME_FORMAT = "yyyy-mm-dd hh:mm"


@lru_cache(maxsize=16)
def zone(name: str = DEFAULT_ZONE) -> tzinfo:
    """The zone of an IANA name. ValueError for a name no time-zone database knows."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r}: an IANA name such as Asia/Shanghai or Asia/Urumqi"
        ) from exc


def check_zone(name: str) -> str:
    """``name`` if it is a real zone, else ValueError with the reason (config reads it)."""
    zone(name)
    return name


def _zone_of(tz: str | tzinfo) -> tzinfo:
    return zone(tz) if isinstance(tz, str) else tz


def _ms_of(value: int | str | datetime) -> int:
    return value if isinstance(value, int) else parse_ms(value)


def local_datetime(value: int | str | datetime, tz: str | tzinfo = DEFAULT_ZONE) -> datetime:
    """The aware local time of epoch ms or an ISO 8601 time (an offset of its own is
    converted: a phone's ``01:30Z`` is ``09:30`` in China)."""
    return datetime.fromtimestamp(_ms_of(value) / 1000, tz=UTC).astimezone(_zone_of(tz))


def local_text(
    value: int | str | datetime | None, tz: str | tzinfo = DEFAULT_ZONE, fmt: str = TEXT_FORMAT
) -> str:
    """A time as a person in the district reads it (``2026-12-06 09:30``); ``""`` for None or
    an empty text. A text that is not an ISO time (never written by gridsync) is shown as it
    is rather than failing the whole listing."""
    if value is None or value == "":
        return ""
    try:
        return local_datetime(value, tz).strftime(fmt)
    except (ValueError, OverflowError, OSError):
        return str(value)


def local_naive(value: int | str | None, tz: str | tzinfo = DEFAULT_ZONE) -> datetime | None:
    """The district's wall time without a zone, for a spreadsheet cell (Excel has no zones)."""
    if value is None or value == "":
        return None
    return local_datetime(value, tz).replace(tzinfo=None)


def operator_ms(value: str, tz: str | tzinfo = DEFAULT_ZONE) -> int:
    """Epoch ms of a time an operator types: a bare date is local midnight, a time without an
    offset local wall time, a time with an offset as given (``clock.operator_time_ms``, which
    bounds it). ValueError with the reason."""
    return operator_time_ms(value, _zone_of(tz))


def zone_label(tz: str | tzinfo = DEFAULT_ZONE, at_ms: int | None = None) -> str:
    """``Asia/Shanghai (UTC+08:00)``: what a footer says its times are in."""
    z = _zone_of(tz)
    at = datetime.now(UTC) if at_ms is None else datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    offset = at.astimezone(z).strftime("%z")
    return f"{getattr(z, 'key', str(z))} (UTC{offset[:3]}:{offset[3:]})"

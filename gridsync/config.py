"""Settings: defaults, an optional TOML file, and GRIDSYNC_* environment variables.

Precedence (last wins): built-in defaults < TOML file (``--config``, ``GRIDSYNC_CONFIG`` or
``./gridsync.toml``) < environment (``GRIDSYNC_DB``, ``GRIDSYNC_HOST``, ``GRIDSYNC_PORT``).
The coverage and whistle policies here are the district defaults; a community may override the
coverage policy through the admin API (stored in the database).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Annotated

import msgspec

from gridsync.localtime import DEFAULT_ZONE, check_zone
from gridsync.models import CASE_LEVELS

DEFAULT_SERVICE_KINDS = ("policy", "opinion", "hardship", "safety", "dispute", "environment")
DEFAULT_PRIORITY_TAGS = ("elderly_alone", "disabled", "low_income")
# The household tags a district defines (a priority tag must be one of them, or of its
# priority tags, or be on some household: gridsync/coverage/policy.py, check_priority_tags).
DEFAULT_HOUSEHOLD_TAGS = ("elderly_alone", "disabled", "low_income", "renter")


class CoveragePolicy(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The 1-5-N rule's numbers (SPEC section 4)."""

    min_households_per_member: int = 5
    max_households_per_member: int = 12
    cycle_days: int = 30
    priority_tags: tuple[str, ...] = DEFAULT_PRIORITY_TAGS
    priority_cycle_days: int = 7
    service_kinds: tuple[str, ...] = DEFAULT_SERVICE_KINDS
    # a group visit (楼栋会) satisfies a priority household's cycle (default: it needs its own)
    group_contact_counts_for_priority: bool = False


class LevelDeadlines(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Minutes allowed at one level, counted from the case's arrival at that level."""

    accept_minutes: float
    arrive_minutes: float
    resolve_minutes: float


def _default_deadlines() -> dict[str, LevelDeadlines]:
    return {
        # "居民事务110": accept within 1 minute, on site within 10, resolved within 30.
        "grid": LevelDeadlines(accept_minutes=1, arrive_minutes=10, resolve_minutes=30),
        "community": LevelDeadlines(accept_minutes=10, arrive_minutes=60, resolve_minutes=24 * 60),
        "street": LevelDeadlines(
            accept_minutes=30, arrive_minutes=4 * 60, resolve_minutes=3 * 24 * 60
        ),
        "department": LevelDeadlines(
            accept_minutes=60, arrive_minutes=24 * 60, resolve_minutes=5 * 24 * 60
        ),
        "district": LevelDeadlines(
            accept_minutes=24 * 60, arrive_minutes=3 * 24 * 60, resolve_minutes=15 * 24 * 60
        ),
    }


class WorkCalendar(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """The district's working calendar (hotline deadlines count in it, ``gridsync/workdays.py``).

    A date is a working day when it is a make-up workday (调休上班), else when it is not a
    holiday and its weekday is in ``workdays``. Defaults (documented as defaults, README
    "Hotline orders"): Monday to Friday, 09:00-12:00 and 13:30-17:30 in the notification time
    zone, no holidays: a district lists each year's public holidays and make-up days itself."""

    # at least one weekday and one period: a calendar without working time has no deadline
    workdays: Annotated[
        tuple[Annotated[int, msgspec.Meta(ge=0, le=6)], ...], msgspec.Meta(min_length=1)
    ] = (0, 1, 2, 3, 4)  # Monday 0
    holidays: tuple[date, ...] = ()  # e.g. 2026-10-01
    makeup_workdays: tuple[date, ...] = ()  # 调休: a weekend day worked, e.g. 2026-10-10
    # Working hours of a working day, local time ("HH:MM", start before end, in order).
    hours: Annotated[tuple[tuple[str, str], ...], msgspec.Meta(min_length=1)] = (
        ("09:00", "12:00"),
        ("13:30", "17:30"),
    )


class HotlineSettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Deadlines of a hotline order (12345, 接诉即办) at the unit that holds it, counted in the
    working calendar from the order's arrival there: first contact with the caller (accepting
    the order is the contact) within ``contact_hours`` working hours, resolution by the end of
    the ``resolve_days``-th working day after the day it arrived."""

    contact_hours: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 2.0
    resolve_days: Annotated[int, msgspec.Meta(ge=1, le=365)] = 7


class NotifySettings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    apprise_config: str | None = None  # path to an Apprise YAML config
    locale: str = "zh-CN"
    quiet_hours: tuple[int, int] = (21, 8)  # digests are held between 21:00 and 08:00 local
    # The district's zone, always equal to ``Settings.timezone`` once load_settings has read
    # the file (a file may still name it here, as before issue 15); read ``Settings.timezone``.
    timezone: str = DEFAULT_ZONE
    max_attempts: int = 8
    timeout_seconds: float = 10.0
    retry_base_seconds: float = 30.0  # backoff: base * 2^(attempt-1), capped below
    retry_max_seconds: float = 3600.0
    delivery_workers: int = 8  # deliveries in flight at once (each one waits on the network)
    near_fraction: float = 0.2  # "deadline near" alert when this share of a window is left
    daily_digest_hour: int = 8  # local hour from which the daily member digest goes out
    weekly_digest_weekday: int = 0  # Monday (0) for the weekly coverage digest


class Settings(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    db: str = "gridsync.db"
    # The district's time zone (IANA name): every time a person reads (CLI, notifications,
    # XLSX date cells) and every time an operator types without an offset (gridsync/localtime.py).
    timezone: str = DEFAULT_ZONE
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000  # 0: a free port
    # An HLC further ahead of the server's clock than this is clamped (SPEC 3.1).
    max_clock_skew_ms: int = 5 * 60 * 1000
    max_push_mutations: int = 1000
    max_push_bytes: int = 4 * 1024 * 1024
    max_page_size: int = 500
    # Cases one phone may raise an hour (by server receipt; then ``rejected``/``rate_limited``):
    # each alerts the grid's team (gridsync/sync/whistle.py).
    max_phone_raises_per_hour: Annotated[int, msgspec.Meta(ge=1)] = 60
    # Read the next pull page while the phone receives the current one (gridsync/sync/readahead.py).
    pull_read_ahead: bool = True
    synchronous: str = "FULL"  # SQLite PRAGMA synchronous; FULL survives power loss too
    coverage: CoveragePolicy = msgspec.field(default_factory=CoveragePolicy)
    household_tags: tuple[str, ...] = DEFAULT_HOUSEHOLD_TAGS
    whistle_deadlines: dict[str, LevelDeadlines] = msgspec.field(default_factory=_default_deadlines)
    notify: NotifySettings = msgspec.field(default_factory=NotifySettings)
    calendar: WorkCalendar = msgspec.field(default_factory=WorkCalendar)
    hotline: HotlineSettings = msgspec.field(default_factory=HotlineSettings)
    sweep_interval_seconds: float = 5.0
    # After `gridsync serve` starts, the digests (and the daily prune) wait this long, so that the
    # first requests after a restart are not served beside a district's digest run; deadline
    # checks and delivery start at once (README "Cold start and the long jobs").
    digests_after_start_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    # Done notifications and the sync's tombstones older than this are forgotten, once a day
    # (gridsync/retention.py); records (households, visits, cases, audit) are never pruned.
    retention_days: Annotated[int, msgspec.Meta(ge=7, le=36_500)] = 180
    # Operations (README "Operations"). SQLite's automatic checkpoint after a commit once the WAL
    # holds this many pages; 0 leaves checkpoints to Litestream (set it when `gridsync
    # replicate` runs, as Litestream's docs ask), None keeps SQLite's default (1,000).
    wal_autocheckpoint: Annotated[int, msgspec.Meta(ge=0)] | None = None
    # /readyz fails when a periodic loop is this many seconds behind its schedule.
    ready_max_lag_seconds: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    # Also serve /metrics without a token on this "host:port" (keep it on loopback or a
    # private network); on the API port /metrics needs an admin's token.
    metrics_listen: str | None = None
    # Where people reach this server (e.g. "https://grid.example.gov.cn"): sign-in links and
    # the deep links in notification texts start with it. Empty: links are relative paths
    # (`gridsync console link` then prints only the path) and notifications carry none.
    base_url: Annotated[
        str, msgspec.Meta(max_length=200, pattern=r"^(https?://[^\s/]+(/[^\s]*)?)?$")
    ] = ""
    # How long a console session lasts after signing in by link (hours).
    console_session_hours: Annotated[int, msgspec.Meta(ge=1, le=720)] = 12


def deep_link(settings: Settings, path: str) -> str:
    """The console URL of ``path`` ("/console/cases/ID") for notification texts, or "" when no
    ``base_url`` is set (a relative path in a WeCom message would lead nowhere)."""
    if not settings.base_url:
        return ""
    return settings.base_url.rstrip("/") + path


class ConfigError(Exception):
    pass


def _one_timezone(data: dict) -> None:
    """One zone for the district: top-level ``timezone``, or ``[notify] timezone`` as files
    written before issue 15 name it; both is fine when they agree. Both fields of the
    Settings then hold it, and a name that is not a real zone is refused here, once."""
    notify = data.get("notify")
    named = {
        where: value
        for where, value in (
            ("timezone", data.get("timezone")),
            ("notify.timezone", notify.get("timezone") if isinstance(notify, dict) else None),
        )
        if value is not None
    }
    if len(set(map(str, named.values()))) > 1:
        raise ConfigError(
            "invalid configuration: timezone and notify.timezone differ "
            f"({named['timezone']!r}, {named['notify.timezone']!r}); set timezone only"
        )
    if not named:
        return
    name = next(iter(named.values()))
    if not isinstance(name, str):
        raise ConfigError(f"invalid configuration: timezone {name!r} is not a text")
    try:
        check_zone(name)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    data["timezone"] = name
    data["notify"] = {**(notify if isinstance(notify, dict) else {}), "timezone": name}


def load_settings(config_path: str | os.PathLike | None = None, **overrides: object) -> Settings:
    """Build Settings from the TOML file (if any), the environment and explicit overrides."""
    path = config_path or os.environ.get("GRIDSYNC_CONFIG")
    if path is None and Path("gridsync.toml").exists():
        path = "gridsync.toml"
    data: dict = {}
    if path is not None:
        try:
            data = msgspec.toml.decode(Path(path).read_bytes())
        except (OSError, msgspec.DecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from exc
    env = {
        "db": os.environ.get("GRIDSYNC_DB"),
        "host": os.environ.get("GRIDSYNC_HOST"),
        "port": os.environ.get("GRIDSYNC_PORT"),
    }
    data.update({k: v for k, v in env.items() if v is not None})
    data.update({k: v for k, v in overrides.items() if v is not None})
    _one_timezone(data)
    if isinstance(data.get("port"), str):  # from GRIDSYNC_PORT
        try:
            data["port"] = int(data["port"])
        except ValueError:
            msg = f"invalid configuration: port {data['port']!r} is not a number"
            raise ConfigError(msg) from None
    try:
        settings = msgspec.convert(data, Settings, str_keys=True)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from exc
    _check_hours(settings.calendar.hours)
    missing = set(CASE_LEVELS) - set(settings.whistle_deadlines)
    if missing:
        base = _default_deadlines()
        merged: dict[str, LevelDeadlines] = {
            **{k: base[k] for k in missing},
            **settings.whistle_deadlines,
        }
        settings = msgspec.structs.replace(settings, whistle_deadlines=merged)
    return settings


def _check_hours(hours: tuple[tuple[str, str], ...]) -> None:
    """Working hours are "HH:MM" periods, each starting before it ends, in order."""
    last = -1
    for start, end in hours:
        try:
            a, b = (minute_of_day(start), minute_of_day(end))
        except ValueError:
            raise ConfigError(
                f"invalid configuration: calendar.hours {start!r}-{end!r} is not HH:MM-HH:MM"
            ) from None
        if not last <= a < b:
            raise ConfigError(
                f"invalid configuration: calendar.hours {start}-{end} must start after the "
                "previous period and end after it starts"
            )
        last = b
    if not hours:
        raise ConfigError("invalid configuration: calendar.hours needs at least one period")


def minute_of_day(text: str) -> int:
    hour, _, minute = text.partition(":")
    h, m = int(hour), int(minute)
    if not (0 <= h <= 24 and 0 <= m < 60 and h * 60 + m <= 24 * 60):
        raise ValueError(text)
    return h * 60 + m

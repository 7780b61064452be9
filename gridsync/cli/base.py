"""The ``gridsync`` click group and the helpers every command module shares.

Thin: parse, call a domain function through the Store, print.

Every command takes ``--db`` (else ``$GRIDSYNC_DB``, else the settings file's ``db``, else
``./gridsync.db``: :func:`resolve_db`) and opens it through :func:`open_store` only, first thing: a wrong ``--db`` (a typo, a missing folder, a file that is
not a gridsync database, one of a newer gridsync) is the same one-line error with exit code 1 on
every command (``tests/test_cli_db.py`` walks the whole click tree). Commands that list or report
take ``--json`` and then print exactly one JSON document on stdout. Every number an option takes
has a range and every time is a :class:`TimeParam` (``tests/test_cli_values.py`` walks the
tree), so that an odd value is a usage error, never a traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

import click
import msgspec

from gridsync import localtime
from gridsync.config import ConfigError, load_settings
from gridsync.db import Store, check_database
from gridsync.errors import GridsyncError
from gridsync.models import field_types


def resolve_db(db_path: str | None, config_path: str | None = None) -> str:
    """The database a command opens: ``--db``, else ``$GRIDSYNC_DB`` (click hands either over
    as ``db_path``), else the settings file's ``db`` (``--config``, ``$GRIDSYNC_CONFIG`` or
    ``./gridsync.toml``), else ``./gridsync.db``. The last two are :func:`load_settings`'s own
    precedence, so the CLI and the server read the same file the same way; it is read only
    when neither names the database, and a file it cannot read is a one-line error."""
    if db_path is not None:
        return db_path
    try:
        return load_settings(config_path).db
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def db_option(fn: Callable) -> Callable:
    """``--db`` for a command, resolved by :func:`resolve_db` before the command runs (with the
    command's own ``--config``, when it has one). It has no click default: a default would
    always beat the settings file (it did, and the README's ``db = ...`` had no effect)."""

    @functools.wraps(fn)
    def with_db(*args: Any, db_path: str | None = None, **kwargs: Any) -> Any:
        return fn(*args, db_path=resolve_db(db_path, kwargs.get("config_path")), **kwargs)

    return click.option(
        "--db",
        "db_path",
        envvar="GRIDSYNC_DB",
        default=None,
        type=click.Path(),  # a folder is refused by open_store, as a one-line error
        help="SQLite database file [default: $GRIDSYNC_DB, else the settings file's db, "
        "else ./gridsync.db].",
    )(with_db)


def settings_file_option(help_text: str) -> Callable[[Callable], Callable]:
    """``--config FILE`` of a command. Eager: read before the other options, so that a time
    option (:class:`TimeParam`) is read in the zone that file names."""
    return click.option(
        "--config",
        "config_path",
        default=None,
        is_eager=True,
        type=click.Path(exists=True, dir_okay=False),
        help=help_text,
    )


def district_zone(ctx: click.Context | None = None) -> tzinfo:
    """The district's time zone (the ``timezone`` setting) for the command running: from its
    ``--config`` when it has one, else ``$GRIDSYNC_CONFIG`` or ``./gridsync.toml``, else
    Asia/Shanghai. A settings file that cannot be read is a one-line error."""
    ctx = ctx or click.get_current_context(silent=True)
    config_path = ctx.params.get("config_path") if ctx is not None else None
    key = f"gridsync.zone:{config_path}"
    if ctx is not None and key in ctx.meta:
        return ctx.meta[key]
    try:
        tz = localtime.zone(load_settings(config_path).timezone)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if ctx is not None:
        ctx.meta[key] = tz
    return tz


def when(value: int | str | datetime | None) -> str:
    """A time as a person in the district reads it (``2026-12-06 09:30``; ``-`` for none):
    epoch ms or a wire time (ISO 8601 with an offset). Every time a command prints for a
    person goes through here; ``--json`` keeps the wire format."""
    return localtime.local_text(value, district_zone()) or "-"


def zone_footer() -> str:
    """``times in Asia/Shanghai (UTC+08:00)`` / ``时间为 ...``: the footer of a listing."""
    return f"times in {localtime.zone_label(district_zone())}"


def stderr_bar(*, length: int, label: str, **options: Any) -> Any:
    """click's progress bar on stderr, drawn only on a terminal: a pipe or a log gets nothing
    (not even the label), so scripts read the result alone. Every bar of the CLI is one."""
    hidden = options.pop("hidden", False) or not sys.stderr.isatty()
    return click.progressbar(length=length, label=label, file=sys.stderr, hidden=hidden, **options)


def export_file(
    output: str, total: int, lang: str, build: Callable[[Callable[[int], None]], bytes]
) -> None:
    """Every ``-o FILE`` of the CLI: ``build(progress)`` makes the file's bytes with a bar on a
    terminal (导出 / exporting, ``total`` rows), then they are written; a file that cannot be
    written is one line, exit 1."""
    label = "导出" if lang in ("zh", "zh-CN") else "exporting"
    with stderr_bar(length=total, label=label) as bar:
        body = build(bar.update)
    try:
        Path(output).write_bytes(body)
    except OSError as exc:
        raise click.ClickException(f"无法写入 {output}（cannot write {output}: {exc}）") from exc


class Bars:
    """Progress bars on stderr for a command that can run past 2 s: one bar per step (the
    domain calls ``bars(label, total)`` when a step starts and advances what it returns), drawn
    only on a terminal: never when stderr is piped or redirected, nor with ``--json``, so
    scripts and logs get the result alone."""

    def __init__(self, *, enabled: bool = True):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar: Any = None

    def __call__(self, label: str, total: int) -> Callable[[int], None]:
        self.close()
        if not self.enabled or total <= 0:
            return lambda _n: None
        self._bar = stderr_bar(length=total, label=f"{label:<14}")
        self._bar.__enter__()
        return self._bar.update

    def close(self) -> None:
        if self._bar is not None:
            bar, self._bar = self._bar, None
            bar.__exit__(None, None, None)

    def __enter__(self) -> Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_option(fn: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout (for scripts)."
    )(fn)


def echo_json(value: Any) -> None:
    click.echo(msgspec.json.encode(value).decode())


def check_db(db_path: str, *, create: bool = False) -> None:
    """:func:`gridsync.db.check_database` as a one-line CLI error (exit code 1)."""
    run(lambda: check_database(db_path, create=create))


def open_store(db_path: str, *, create: bool = False, **options: Any) -> Store:
    """The one way a command opens its database. Only ``gridsync init`` and ``gridsync demo``
    pass ``create``; every other command refuses a missing or empty file (a typo must not start
    a server on an empty database). A file the Store itself refuses (not a database, a newer
    schema) is the same one-line error."""
    check_db(db_path, create=create)
    return run(lambda: Store(db_path, **options))


class TimeParam(click.ParamType):
    """The type of every time option (``--now``, ``--since``, ``--until``, ``--as-of``): ISO
    8601, a bare date being midnight and a time without an offset wall time in the district's
    zone (the ``timezone`` setting, Asia/Shanghai by default: :func:`district_zone`), a time
    with an offset as given, within the years 1970-2199 that phones' times may have
    (``localtime.operator_ms``). The value is epoch milliseconds. Anything else is a usage
    error (exit 2) naming the option, before the database is opened: year 1 or 9999 used to
    overflow deep inside ``prune`` or ``sweep`` (issue 12's review)."""

    name = "time"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "ISO-TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return localtime.operator_ms(str(value), district_zone(ctx))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


TIME = TimeParam()


def int_range_of(struct: type[msgspec.Struct], field: str) -> click.IntRange:
    """A click range with the bounds a wire type gives ``field`` (one owner of the bounds:
    the CLI refuses what the API would)."""
    for name, t in field_types(struct):
        if name == field and isinstance(t, msgspec.inspect.IntType):
            return click.IntRange(t.ge, t.le)
    raise KeyError(f"{struct.__name__}.{field} is not a bounded int")


def run(fn: Callable[[], Any]) -> Any:
    """Turn domain errors into a clean CLI error (exit code 1) instead of a traceback."""
    try:
        return fn()
    except GridsyncError as exc:
        raise click.ClickException(f"{exc.code}: {exc.message}") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gridsync")
def cli() -> None:
    """gridsync: the backend grid workers' phones sync with.

    Start with 'gridsync demo' (a realistic community) then 'gridsync serve'.
    """

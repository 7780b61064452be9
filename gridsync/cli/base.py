"""The ``gridsync`` click group and the helpers every command module shares.

Thin: parse, call a domain function through the Store, print.

Every command takes ``--db`` (default ``./gridsync.db`` or ``$GRIDSYNC_DB``); commands that list
or report take ``--json`` and then print exactly one JSON document on stdout."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import msgspec

from gridsync.db import Store
from gridsync.errors import GridsyncError


def db_option(fn: Callable) -> Callable:
    return click.option(
        "--db",
        "db_path",
        envvar="GRIDSYNC_DB",
        default="gridsync.db",
        show_default=True,
        type=click.Path(dir_okay=False),
        help="SQLite database file.",
    )(fn)


def json_option(fn: Callable) -> Callable:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON document on stdout (for scripts)."
    )(fn)


def echo_json(value: Any) -> None:
    click.echo(msgspec.json.encode(value).decode())


def open_store(db_path: str, *, must_exist: bool = True) -> Store:
    if must_exist and not Path(db_path).exists():
        raise click.ClickException(
            f"no database at {db_path}: run 'gridsync init --db {db_path}' (or 'gridsync demo') "
            "first"
        )
    return Store(db_path)


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

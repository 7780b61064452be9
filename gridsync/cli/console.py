"""``gridsync console``: sign-in links for the web console (issue 16)."""

from __future__ import annotations

import click

from gridsync import signin
from gridsync.audit import Actor
from gridsync.cli.base import cli, db_option, echo_json, json_option, open_store, run, when
from gridsync.clock import SYSTEM_CLOCK, iso_ms
from gridsync.config import ConfigError, load_settings


@cli.group()
def console() -> None:
    """The web console at /console: sign in by a one-time link (no passwords)."""


@console.command("link")
@click.option("--config", "config_path", default=None, help="Settings file (for base_url).")
@db_option
@json_option
@click.option("--person", "person_id", required=True, help="Who signs in with the link.")
@click.option(
    "--next",
    "next_path",
    default="",
    help="A console page to land on after signing in, e.g. /console/cases/CASE_ID.",
)
@click.option(
    "--base-url",
    default=None,
    help="Where people reach this server (default: the settings' base_url); without one the "
    "link is a path to append to the server's address.",
)
def console_link(
    db_path: str,
    config_path: str | None,
    as_json: bool,
    person_id: str,
    next_path: str,
    base_url: str | None,
) -> None:
    """Make a one-time sign-in link for a person: valid 15 minutes, used once. Opening it in a
    browser (the phone's, or a computer's) signs that person in to the console; it is audited.
    With --json: {"url", "expires_at"}."""
    try:
        settings = load_settings(config_path, base_url=base_url)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    with open_store(db_path) as store:
        token, expires = run(
            lambda: store.write(
                signin.create_link,
                person_id,
                Actor.cli(),
                now_ms=SYSTEM_CLOCK.now_ms(),
                next_path=next_path,
            )
        )
    url = signin.link_url(settings.base_url, token)
    if as_json:
        echo_json({"url": url, "expires_at": iso_ms(expires)})
        return
    click.echo(f"sign-in link for {person_id} (once, until {when(expires)}):")
    click.echo(url)

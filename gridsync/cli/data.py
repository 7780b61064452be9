"""CLI commands of the data area: ``gridsync demo`` and ``gridsync import households``."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click

from gridsync import auth, demo
from gridsync.audit import Actor
from gridsync.cli.base import cli, db_option, echo_json, json_option, run
from gridsync.db import Store


def _remove_database(db_path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(db_path + suffix).unlink(missing_ok=True)


def _stderr_bar(label: str, total: int) -> Any:
    return click.progressbar(length=total, label=f"{label:<10}", file=sys.stderr,
                             show_pos=True, show_percent=True)


@cli.command("demo")
@db_option
@json_option
@click.option("--scale", type=click.Choice(sorted(demo.SCALES)), default="community",
              show_default=True,
              help="community: 1 community, 6 branches, 71 members, 520 households; "
                   "district: 137 communities, 940 grids, ~300,000 households (minutes).")
@click.option("--seed", type=int, default=1, show_default=True,
              help="Same seed (and --as-of) gives the same data, ids included.")
@click.option("--as-of", "as_of", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="The day after the 60-day visit history (default: today, China time).")
@click.option("--force", is_flag=True, help="Delete the database file and build it anew.")
def demo_command(db_path: str, as_json: bool, scale: str, seed: int, as_of: Any,
                 force: bool) -> None:
    """Build realistic demo data and enrol one admin device (its token is printed once).

    Refuses to write into a database that already holds data unless --force."""
    if force:
        _remove_database(db_path)
    day: date | None = as_of.date() if as_of is not None else None
    with Store(db_path, synchronous="NORMAL") as store:
        counts = run(lambda: demo.build(store, demo.SCALES[scale], seed, day,
                                        progress=_stderr_bar))
        enrolled = store.write(auth.enroll, "admin", Actor.cli(), label="demo admin")
    if as_json:
        echo_json({**counts, "admin_token": enrolled.token,
                   "admin_device_id": enrolled.device_id})
        return
    units, people = counts["org_units"], counts["people"]
    click.echo(f"demo ({scale}, seed {seed}) written to {db_path}:")
    click.echo("  org units: " + ", ".join(f"{k} {v}" for k, v in sorted(units.items())))
    click.echo("  people:    " + ", ".join(f"{k} {v}" for k, v in sorted(people.items())))
    click.echo(f"  households {counts['households']}, visits {counts['visits']}")
    click.echo(f"  1-5-N gaps: {counts['unassigned_households']} households unassigned, "
               f"{counts['members_under_minimum']} members under the minimum, "
               f"{counts['overdue_households']} households overdue")
    click.echo(f"admin device {enrolled.device_id} enrolled for person 'admin'")
    click.echo(f"admin token (shown once, store it now): {enrolled.token}")
    click.echo("enrol phones with: gridsync device enroll --person <id> "
               "(see 'gridsync people --role member')")

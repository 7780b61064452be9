"""CLI commands of the data area: ``gridsync demo`` and ``gridsync import households|people|units``."""

from __future__ import annotations

import functools
import time
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click
import msgspec

from gridsync import auth, demo, importer, org_import
from gridsync.audit import Actor
from gridsync.cli.base import (
    TIME,
    Bars,
    check_db,
    cli,
    db_option,
    echo_json,
    json_option,
    open_store,
    run,
    settings_file_option,
    stderr_bar,
)
from gridsync.config import ConfigError, load_settings
from gridsync.errors import GridsyncError


def _remove_database(db_path: str) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(db_path + suffix).unlink(missing_ok=True)


def _stderr_bar(label: str, total: int, *, shown: bool = True) -> Any:
    """A bar on stderr for one step of a long command, drawn only on a terminal (``shown``
    false, e.g. with --json, hides it): a pipe or a log gets nothing, as with :class:`Bars`."""
    return stderr_bar(
        length=total, label=f"{label:<10}", show_pos=True, show_percent=True, hidden=not shown
    )


@cli.command("demo")
@db_option
@json_option
@click.option(
    "--scale",
    type=click.Choice(sorted(demo.SCALES)),
    default="community",
    show_default=True,
    help="community: 1 community, 6 branches, 71 members, 520 households; "
    "district: 137 communities, 940 grids, ~300,000 households (minutes).",
)
@click.option(
    "--seed",
    type=click.IntRange(-(2**63), 2**63 - 1),
    default=1,
    show_default=True,
    help="Same seed (and --as-of) gives the same data, ids included.",
)
@click.option(
    "--as-of",
    "as_of",
    type=TIME,
    default=None,
    help="The day after the 60-day visit history, e.g. 2026-11-23 (default: today, China "
    "time; a time given names its day in China).",
)
@click.option("--force", is_flag=True, help="Delete the database file and build it anew.")
def demo_command(
    db_path: str, as_json: bool, scale: str, seed: int, as_of: int | None, force: bool
) -> None:
    """Build realistic demo data and enrol one admin device (its token is printed once).

    Refuses to write into a database that already holds data unless --force."""
    check_db(db_path, create=True)  # refuse a wrong --db before --force deletes anything
    if force:
        _remove_database(db_path)
    started = time.monotonic()
    day: date | None = None
    if as_of is not None:
        day = datetime.fromtimestamp(as_of / 1000, demo.CHINA).date()
    with open_store(db_path, create=True, synchronous="NORMAL") as store:
        counts = run(
            lambda: demo.build(
                store,
                demo.SCALES[scale],
                seed,
                day,
                progress=functools.partial(_stderr_bar, shown=not as_json),
            )
        )
        enrolled = store.write(auth.enroll, "admin", Actor.cli(), label="demo admin")
    if as_json:
        echo_json({**counts, "admin_token": enrolled.token, "admin_device_id": enrolled.device_id})
        return
    units, people = counts["org_units"], counts["people"]
    click.echo(
        f"demo ({scale}, seed {seed}) written to {db_path} in {time.monotonic() - started:.1f} s:"
    )
    click.echo("  org units: " + ", ".join(f"{k} {v}" for k, v in sorted(units.items())))
    click.echo("  people:    " + ", ".join(f"{k} {v}" for k, v in sorted(people.items())))
    click.echo(f"  households {counts['households']}, visits {counts['visits']}")
    click.echo(
        f"  1-5-N gaps: {counts['unassigned_households']} households unassigned, "
        f"{counts['members_under_minimum']} members under the minimum, "
        f"{counts['overdue_households']} households overdue, "
        f"{counts['contacted_by_others_only']} contacted by others only"
    )
    click.echo(
        f"  people at work: {people.get('instructor', 0)} instructors (党建指导员), "
        f"{counts['group_visits']} group visits (楼栋会), "
        f"{counts['inactive_people']} inactive member (迁出)"
    )
    click.echo(f"admin device {enrolled.device_id} enrolled for person 'admin'")
    click.echo(f"admin token (shown once, store it now): {enrolled.token}")
    click.echo(
        "enrol phones with: gridsync device enroll --person <id> "
        "(see 'gridsync people --role member')"
    )


# -- import -----------------------------------------------------------------------------------


@cli.group("import")
def import_group() -> None:
    """Import data from the spreadsheets communities keep (CSV or XLSX)."""


@import_group.command("households")
@db_option
@json_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Validate and preview the counts; write nothing.")
@click.option(
    "--override-cap",
    is_flag=True,
    help="Let members exceed their cap of households (each such assignment is "
    "flagged in the assignment log).",
)
@settings_file_option("TOML settings file (district coverage defaults: the members' cap).")
@click.option(
    "--ignore-unknown-columns",
    is_flag=True,
    help="Import although some columns have unknown headers (or none) and hold data; "
    "they are listed and left out.",
)
@click.pass_context
def import_households_command(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    file: str,
    dry_run: bool,
    override_cap: bool,
    config_path: str | None,
    ignore_unknown_columns: bool,
) -> None:
    """Import or update households from FILE.csv or FILE.xlsx.

    \b
    Headers (Chinese or English; row 1 is the header):
      外部编号/external_id (required, the stable id)   网格/grid_id   楼栋/building
      单元/unit   房号/room   户主姓名/head_name   联系电话/phone   人口数/size
      标签/tags (separated by ；;,、|)   备注/notes   状态/status   负责党员/responsible_member_id
    New households need 网格 and 户主姓名. Columns left out are not changed. Every bad row is
    reported with its row number; if any row is bad, nothing is written (exit code 1).
    Importing the same file again changes nothing.

    负责党员 assigns the household to that party member (a different member moves it). A
    member's households after the import may not exceed the cap of the community's policy
    (over_cap) unless --override-cap is given; every assignment is written to the assignment
    log, as `gridsync assign` does.

    \b
    A file that cannot be read whole is refused with one coded line (exit code 1; with --json,
    {"code", "message"}): bad_file, bad_encoding, file_too_large, too_many_rows,
    unknown_column, duplicate_column, missing_column, no_header, no_rows. A row that cannot be
    read whole is an error of that row: row_width (a CSV row with more or fewer cells than the
    header), formula_without_value, cell_error, date_cell."""
    with open_store(db_path) as store:
        try:
            sheet = importer.read_file(file, ignore_unknown_columns=ignore_unknown_columns)
        except GridsyncError as exc:
            if as_json:
                echo_json({"code": exc.code, "message": exc.message, "written": False})
                ctx.exit(1)
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc
        try:
            settings = load_settings(config_path)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        with Bars(enabled=not as_json) as bars:
            advance = bars("检查 checking", len(sheet.rows))
            if dry_run:
                result = store.read(importer.preview, sheet, settings, override_cap, advance)
            else:
                try:
                    result = store.write(
                        importer.import_households,
                        sheet,
                        Actor.cli(),
                        settings=settings,
                        override_cap=override_cap,
                        progress=advance,
                    )
                except importer.ImportRejected:
                    result = store.read(importer.preview, sheet, settings, override_cap)
                except GridsyncError as exc:  # a rule between rows, as for people and units
                    raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    counts = (
        f"{result.new} new, {result.changed} changed, {result.unchanged} unchanged, "
        f"{result.assigned} assigned (新增 {result.new}，更新 {result.changed}，"
        f"未变 {result.unchanged}，分配负责党员 {result.assigned})"
    )
    if result.over_cap:
        counts += f"; {result.over_cap} over the cap (超出上限 {result.over_cap})"
    echo_import(
        ctx,
        result,
        sheet.source,
        counts,
        as_json=as_json,
        dry_run=dry_run,
        json_body={
            **msgspec.structs.asdict(result),
            "dry_run": dry_run,
            "written": not (dry_run or bool(result.errors)),
        },
    )


def _import_register(
    ctx: click.Context,
    kind: str,
    db_path: str,
    as_json: bool,
    file: str,
    dry_run: bool,
    ignore_unknown_columns: bool,
) -> None:
    """``gridsync import people|units``: read, check every row (with a progress bar on
    stderr), write in one transaction or nothing, print the counts or the bad rows."""
    with open_store(db_path) as store:
        try:
            sheet = importer.read_file(
                file,
                ignore_unknown_columns=ignore_unknown_columns,
                register=org_import.REGISTERS[kind],
            )
        except GridsyncError as exc:
            if as_json:
                echo_json({"code": exc.code, "message": exc.message, "written": False})
                ctx.exit(1)
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc
        with Bars(enabled=not as_json) as bars:
            advance = bars("检查 checking", len(sheet.rows))
            if dry_run:
                result = store.read(org_import.preview, kind, sheet, advance)
            else:
                try:
                    result = store.write(
                        org_import.import_sheet,
                        kind,
                        sheet,
                        Actor.cli(),
                        allow_last_admin=True,
                        progress=advance,
                    )
                except importer.ImportRejected:
                    result = store.read(org_import.preview, kind, sheet)
                    result.dry_run = False
                except GridsyncError as exc:  # a rule between rows (the last admin device)
                    raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    counts = (
        f"{result.new} new, {result.changed} changed, {result.unchanged} unchanged "
        f"(新增 {result.new}，更新 {result.changed}，未变 {result.unchanged})"
    )
    echo_import(
        ctx, result, sheet.source, counts, as_json=as_json, dry_run=dry_run, json_body=result
    )


_FILE_HELP = """

    \b
    Every bad row is reported with its row number; if any row is bad, nothing is written
    (exit code 1). Importing the same file again changes nothing. Columns left out are not
    changed on existing records. A file that cannot be read whole is refused with one coded
    line (bad_file, bad_encoding, file_too_large, too_many_rows, unknown_column,
    duplicate_column, missing_column, no_header, no_rows), as for `import households`."""


def _register_options(fn: Any) -> Any:
    for option in reversed(
        (
            db_option,
            json_option,
            click.argument("file", type=click.Path(dir_okay=False)),
            click.option(
                "--dry-run", is_flag=True, help="Validate and preview the counts; write nothing."
            ),
            click.option(
                "--ignore-unknown-columns",
                is_flag=True,
                help="Import although some columns have unknown headers (or none) and hold "
                "data; they are listed and left out.",
            ),
            click.pass_context,
        )
    ):
        fn = option(fn)
    return fn


@import_group.command("people")
@_register_options
def import_people_command(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    file: str,
    dry_run: bool,
    ignore_unknown_columns: bool,
) -> None:
    """Import or update people (party members, secretaries, grid workers...) from FILE.csv or
    FILE.xlsx, as `gridsync people add` would, one row each.

    \b
    Headers (Chinese or English; row 1 is the header):
      编号/id (required)   姓名/name   角色/roles   范围/scope   支部/branch_id
      电话/phone   渠道/channels
    Roles, scope units: separated by ；;,、| or spaces; roles by name (member, grid_worker,
    community_secretary, ...) or in Chinese (党员, 网格员, 社区书记, 支部书记, 管理员, ...).
    Channels (Apprise URLs): separated by spaces or ；;. A new person needs 姓名 and 角色;
    scope units and branches must exist (import units first)."""
    _import_register(ctx, "people", db_path, as_json, file, dry_run, ignore_unknown_columns)


@import_group.command("units")
@_register_options
def import_units_command(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    file: str,
    dry_run: bool,
    ignore_unknown_columns: bool,
) -> None:
    """Import or update org units from FILE.csv or FILE.xlsx, as `gridsync units add` would,
    one row each; rows may come in any order (parents are written first).

    \b
    Headers (Chinese or English; row 1 is the header):
      编号/id (required)   类型/kind   名称/name   上级/parent_id   对应网格/grid_id (a branch's)
    Kinds: district/区, street/街道, community/社区, grid/网格, branch/支部, department/部门.
    A new unit needs 类型 and 名称; a unit's kind never changes (kind_change)."""
    _import_register(ctx, "units", db_path, as_json, file, dry_run, ignore_unknown_columns)


import_people_command.help = (import_people_command.help or "") + _FILE_HELP
import_units_command.help = (import_units_command.help or "") + _FILE_HELP


def echo_import(
    ctx: click.Context,
    result: Any,
    source: str,
    counts: str,
    *,
    as_json: bool,
    dry_run: bool,
    json_body: Any,
) -> None:
    """How every ``gridsync import`` ends: ``json_body`` with --json (exit 1 when a row is bad),
    else the bad rows and ignored columns on stderr and ``counts`` (what was or would be
    written) on stdout; a bad row is a one-line refusal, exit 1, nothing written."""
    failed = bool(result.errors)
    if as_json:
        echo_json(json_body)
        ctx.exit(1 if failed else 0)
    for error in result.errors:
        click.echo(f"{error.message} ({error.code})", err=True)
    if result.ignored_columns:
        click.echo(f"ignored columns (未识别的列): {', '.join(result.ignored_columns)}", err=True)
    if failed:
        rows = len({e.row for e in result.errors})
        raise click.ClickException(
            f"import_rejected: {rows} 行有错误，未写入任何数据 "
            f"({rows} bad rows; nothing was written)"
        )
    if dry_run:
        click.echo(f"dry run of {source}: would import {counts}; nothing written")
    else:
        click.echo(f"imported {source}: {counts}")

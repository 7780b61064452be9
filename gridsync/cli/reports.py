"""CLI commands of the reports about the people who use gridsync: ``report burden``,
``report unreachable`` (the people no alert reaches but the inbox, issue 17) and ``report
instructors`` (the party-building instructors' figures, issue 18).

One ``gridsync report`` group; every report command of every area joins it here.

The CLI is the operator at the server: it reads the whole district (or ``--scope``) and is
recorded in the audit log as device ``cli``."""

from __future__ import annotations

import click

from gridsync import burden, exports, instructors
from gridsync.audit import Actor, record
from gridsync.cli.base import (
    TIME,
    cli,
    db_option,
    echo_json,
    export_file,
    json_option,
    open_store,
    run,
)
from gridsync.cli.coverage import (
    OPERATOR,
    _now_ms,
    _settings,
    _table,
    config_option,
    lang_option,
    scope_option,
)
from gridsync.cli.whistle import _settings as _whistle_settings
from gridsync.notify.routing import router_for, unreachable


@cli.group()
def report() -> None:
    """Reports for operators (each takes --json): the burden on the people, who no alert
    reaches, the party-building instructors' figures."""


@report.command("burden")
@db_option
@json_option
@scope_option
@click.option(
    "--week",
    default=None,
    metavar="YYYY-Www",
    help="ISO week, e.g. 2026-W49 [default: the week of --now, in the district's zone].",
)
@click.option(
    "-o",
    "--output",
    "output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the report to this XLSX file (Chinese headers unless --lang en).",
)
@click.option(
    "--now", "now", type=TIME, default=None, help="Take 'this week' and 'now' from this time."
)
@lang_option
@config_option
def report_burden(
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    week: str | None,
    output: str | None,
    now: int | None,
    lang: str,
    config_path: str | None,
) -> None:
    """What gridsync asked of each person in an ISO week: mutations pushed, visits, households
    due (the coverage engine's overdue at the week's end), notifications by kind, and for
    secretaries the whistle alerts received and acted on."""
    settings = _settings(config_path)
    now_ms = _now_ms(now)
    with open_store(db_path) as store:
        result = run(
            lambda: store.read(
                burden.burden, settings, OPERATOR, scope_id, week=week, now_ms=now_ms
            )
        )
        if output is not None:
            export_file(
                output,
                len(result.rows),
                lang,
                lambda progress: exports.burden_xlsx(result, lang, progress),
            )
        store.write(
            record,
            Actor.cli(),
            "export.burden" if output else "read.report.burden",
            scope_id,
            {"week": result.week, "rows": len(result.rows), "file": output is not None},
        )
    if as_json:
        echo_json(result)
        return
    header, rows = exports.burden_table(result, lang)
    click.echo(_table(header, [["" if v is None else str(v) for v in row] for row in rows]))
    done = (
        f"；已写入 {output}" if output and lang == "zh" else (f"; wrote {output}" if output else "")
    )
    click.echo(
        (
            f"{result.week}，{len(result.rows)} 人"
            if lang == "zh"
            else f"{result.week}, {len(result.rows)} people"
        )
        + done,
        err=True,
    )


@report.command("unreachable")
@db_option
@json_option
@config_option
def report_unreachable(db_path: str, as_json: bool, config_path: str | None) -> None:
    """People who would get alerts but whom nothing reaches.

    \b
    Listed: active people with a role that receives whistle alerts or digests (grid workers,
    members, branch and community secretaries, street, department, admin) who have no channel
    of their own, none routed to them by the Apprise config file (--config's
    notify.apprise_config), and no active device (enrolled, not revoked). Their notices wait in
    their inbox: give them a channel or enrol a phone. With --json: an array of
    {"id", "name", "roles", "scope", "devices_revoked"}."""
    settings = _whistle_settings(config_path, db_path)
    router = router_for(settings.notify.apprise_config, settings.notify.locale)
    with open_store(db_path) as store:
        people = store.read(unreachable, router)
    if as_json:
        echo_json(people)
        return
    for p in people:
        revoked = f"\t{p.devices_revoked} 台设备已吊销" if p.devices_revoked else ""
        click.echo(f"{p.id}\t{p.name}\t{','.join(p.roles)}\t{','.join(p.scope)}{revoked}")
    click.echo(
        f"{len(people)} 人收不到提醒（无通知渠道、无在用设备） "
        f"({len(people)} people no channel or device reaches)",
        err=True,
    )


@report.command("instructors")
@db_option
@json_option
@scope_option
@click.option(
    "-o",
    "--output",
    "output",
    default=None,
    type=click.Path(dir_okay=False),
    help="Also write the report to this XLSX file (Chinese headers unless --lang en).",
)
@click.option("--now", "now", type=TIME, default=None, help="Read the figures as of this time.")
@lang_option
def report_instructors(
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    output: str | None,
    now: int | None,
    lang: str,
) -> None:
    """What each party-building instructor (党建指导员) has done to date: households visited
    (a group visit counts for each of its households), visits and group visits, whistle cases
    raised and resolved, and how many of their communities they covered. With --json: {"scope_id",
    "at", "rows": [...]}."""
    now_ms = _now_ms(now)
    with open_store(db_path) as store:
        result = run(lambda: store.read(instructors.instructors, OPERATOR, scope_id, now_ms=now_ms))
        if output is not None:
            export_file(
                output,
                len(result.rows),
                lang,
                lambda progress: exports.instructors_xlsx(result, lang, progress),
            )
        store.write(
            record,
            Actor.cli(),
            "export.instructors" if output else "read.report.instructors",
            scope_id,
            {"rows": len(result.rows), "file": output is not None},
        )
    if as_json:
        echo_json(result)
        return
    header, rows = exports.instructors_table(result, lang)
    click.echo(_table(header, [[str(v) for v in row] for row in rows]))
    done = (
        f"；已写入 {output}" if output and lang == "zh" else (f"; wrote {output}" if output else "")
    )
    click.echo(
        (f"{len(result.rows)} 名党建指导员" if lang == "zh" else f"{len(result.rows)} instructors")
        + done,
        err=True,
    )

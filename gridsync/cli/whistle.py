"""CLI commands of the whistle area and the periodic work: sweep, prune, outbox, cases,
whistle report."""

from __future__ import annotations

from typing import Any

import click

from gridsync import audit, org, whistle
from gridsync.audit import Actor
from gridsync.cli.base import (
    TIME,
    Bars,
    cli,
    db_option,
    echo_json,
    int_range_of,
    json_option,
    open_store,
    run,
    settings_file_option,
    when,
    zone_footer,
)
from gridsync.clock import SYSTEM_CLOCK, Clock, FixedClock, iso_ms
from gridsync.config import ConfigError, Settings, load_settings
from gridsync.models import CASE_LEVELS
from gridsync.notify import outbox

ADMIN = org.Scope("cli", True, frozenset(), frozenset(), 0)


def _settings(config_path: str | None, db_path: str) -> Settings:
    try:
        return load_settings(config_path, db=db_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


config_option = settings_file_option("TOML settings file (deadlines, notify channels, time zone).")


@cli.command()
@db_option
@json_option
@config_option
@click.option(
    "--now",
    "now_ms",
    type=TIME,
    default=None,
    help="Run as if it were this time (ISO 8601, e.g. 2026-11-23T09:00:00+08:00; a date is "
    "local midnight and a time without offset local time, in the settings' timezone).",
)
@click.option("--no-dispatch", is_flag=True, help="Queue notifications but do not deliver them.")
def sweep(
    db_path: str, as_json: bool, config_path: str | None, now_ms: int | None, no_dispatch: bool
) -> None:
    """Run periodic work once: deadline checks, digests due, outbox delivery.

    On a terminal a progress bar shows each long step (the day's digests of a district go
    through 36,000 members); piped or with --json only the result is printed."""
    from gridsync.notify.routing import check_config
    from gridsync.sweep import run_once

    settings = _settings(config_path, db_path)
    run(lambda: check_config(settings.notify.apprise_config))
    clock: Clock = FixedClock(now_ms) if now_ms is not None else SYSTEM_CLOCK
    with open_store(db_path) as store, Bars(enabled=not as_json) as bars:
        report = run(lambda: run_once(store, settings, clock, dispatch=not no_dispatch, steps=bars))
    if as_json:
        echo_json({"at": iso_ms(report.at_ms), **report.as_dict()})
        return
    d, g, o = report.deadlines, report.digests, report.delivery
    click.echo(
        f"sweep at {when(report.at_ms)}: escalated {d.get('escalated', 0)}, "
        f"warned {d.get('warned', 0)}; digests daily {g.get('daily', 0)}, "
        f"weekly {g.get('weekly', 0)}, conflicts {g.get('conflicts', 0)}; "
        + (
            f"sent {o.get('sent', 0)}, retrying {o.get('retrying', 0)}, failed {o.get('failed', 0)}"
            if o
            else "delivery skipped"
        )
    )


@cli.command()
@db_option
@json_option
@config_option
@click.option(
    "--keep-days",
    type=int_range_of(Settings, "retention_days"),
    default=None,
    help="Forget what is older than this many days (default: the settings' retention_days, 180).",
)
@click.option(
    "--now", "now_ms", type=TIME, default=None, help="Count back from this time (ISO 8601)."
)
def prune(
    db_path: str, as_json: bool, config_path: str | None, keep_days: int | None, now_ms: int | None
) -> None:
    """Forget delivered notifications and old sync tombstones (serve does this daily).

    \b
    Pruned when older than the retention period: outbox rows sent or failed, people's notices
    (their inbox), digest run marks, household moves and scope changes. Phones whose pull cursor predates a forgotten move
    re-sync (reset); an edit dated before the forgotten history can no longer prove that its
    household was in the phone's scope then. Households, visits, cases, the audit, conflict
    and mutation logs are never pruned."""
    from gridsync import retention

    settings = _settings(config_path, db_path)
    if now_ms is None:
        now_ms = SYSTEM_CLOCK.now_ms()
    days = keep_days or settings.retention_days
    with open_store(db_path) as store:
        report = run(
            lambda: retention.prune(store, now_ms=now_ms, keep_days=days, actor=Actor.cli())
        )
    if as_json:
        echo_json(report)
        return
    click.echo(
        f"pruned what is older than {when(report.cutoff_ms)} ({days} days): "
        f"{report.outbox} notifications, {report.notices} notices, {report.notify_runs} run marks, "
        f"{report.household_moves} household moves, {report.scope_changes} scope changes"
        f" (已清理 {days} 天前的通知与同步记录)"
    )


@cli.command("outbox")
@db_option
@json_option
@click.option("--state", type=click.Choice(["queued", "sending", "sent", "failed"]))
@click.option("--kind", default=None, help="e.g. whistle_escalated, digest_daily")
@click.option("--cause", default=None, help="Only notifications caused by this case id.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
def outbox_cmd(
    db_path: str, as_json: bool, state: str | None, kind: str | None, cause: str | None, limit: int
) -> None:
    """Notifications and their delivery state (channel URLs are never shown)."""
    with open_store(db_path) as store:
        page = store.read(outbox.list_outbox, state=state, kind=kind, cause=cause, limit=limit)
    if as_json:
        echo_json(page)
        return
    for e in page.items:
        error = f"\t{e.last_error}" if e.last_error else ""
        click.echo(f"{e.id}\t{e.state}\t{e.attempts}\t{e.kind}\t{e.recipient}\t{e.title}{error}")
    click.echo(f"{page.total} notifications", err=True)


@cli.group(invoke_without_command=True)
@db_option
@json_option
@click.option(
    "--state",
    type=click.Choice(["raised", "accepted", "on_site", "resolved", "closed", "reopened"]),
)
@click.option("--level", type=click.Choice(CASE_LEVELS))
@click.option("--open", "open_only", is_flag=True, help="Only cases not yet resolved.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 100_000))
@click.pass_context
def cases(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    state: str | None,
    level: str | None,
    open_only: bool,
    limit: int,
) -> None:
    """List whistle cases (吹哨报到), newest first."""
    if ctx.invoked_subcommand is not None:
        return
    with open_store(db_path) as store:
        page = store.read(
            whistle.list_cases, ADMIN, state=state, level=level, open_only=open_only, limit=limit
        )
        store.write(audit.record, Actor.cli(), "read.whistle_cases", detail={"count": page.total})
    if as_json:
        echo_json(page)
        return
    for c in page.items:
        due = whistle.next_deadline(c)
        step = f"{due[0]} by {when(due[1])}" if due else "-"
        click.echo(
            f"{c.id}\t{c.state}\t{c.level}:{c.unit_id}\t{c.category}\t"
            f"received {when(c.received_at)}\t{step}"
        )
    click.echo(f"{page.total} cases; {zone_footer()}", err=True)


@cases.command("show")
@db_option
@json_option
@click.argument("case_id")
def cases_show(db_path: str, as_json: bool, case_id: str) -> None:
    """One case with its deadlines and history."""
    with open_store(db_path) as store:
        case = run(lambda: store.read(whistle.get_case, case_id))
    if as_json:
        echo_json(case)
        return
    click.echo(f"{case.id}  {case.category}  [{case.state}, {case.level} {case.unit_id}]")
    click.echo(f"grid {case.grid_id}  {case.location}  {case.description}")
    click.echo(
        f"raised by {case.raised_by} at {when(case.raised_at)} (device), "
        f"received {when(case.received_at)} (server)"
    )
    d = case.deadlines
    click.echo(
        f"deadlines at {d.level} since {when(d.since)}: accept {when(d.accept)}, "
        f"arrive {when(d.arrive)}, resolve {when(d.resolve)}"
        + (f"; missed {', '.join(d.missed)}" if d.missed else "")
    )
    if case.order is not None:
        o = case.order
        click.echo(
            f"12345 order {o.order_no} ({o.type}), dispatched to {o.dispatched_unit_id}; "
            f"caller {o.caller_name} {o.caller_phone}, {o.address}"
        )
        cb = o.callback
        if cb is not None:
            click.echo(
                f"callback by {cb.by} at {when(cb.at)}: reached {cb.reached}, contacted {cb.contacted}, "
                f"resolved {cb.resolved}, satisfied {cb.satisfied}"
            )
    if case.supervised is not None:
        s = case.supervised
        click.echo(
            f"督办 supervised by {s.by} at {when(s.at)}: due {when(s.due_at)} (met: {s.met}): {s.note}"
        )
    for e in case.history:
        click.echo(
            f"  {when(e.at)}  {e.action:<9} {e.by or 'system':<10} {e.level:<10} {e.state}"
            + (f"  {e.note}" if e.note else "")
        )
    click.echo(zone_footer(), err=True)


@cases.command("raise")
@db_option
@json_option
@click.option(
    "--by",
    "person_id",
    required=True,
    help="The person raising it (their scope decides where; audited as device cli).",
)
@click.option("--category", required=True, help="e.g. 环境卫生, 安全隐患, 12345.")
@click.option("--grid", "grid_id", default=None, help="The grid (or give --household).")
@click.option("--household", "household_id", default=None, help="The household concerned.")
@click.option("--location", default="", help="Where (a short text).")
@click.option("--description", default="", help="What happened.")
@click.option("--id", "case_id", default=None, help="The case id (default: a new UUIDv7).")
@click.option(
    "--config",
    "config_path",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="TOML settings file (deadlines, notification channels).",
)
def cases_raise(
    db_path: str,
    as_json: bool,
    person_id: str,
    category: str,
    grid_id: str | None,
    household_id: str | None,
    location: str,
    description: str,
    case_id: str | None,
    config_path: str | None,
) -> None:
    """Raise a whistle case (吹哨) at the grid level, as the phone's whistle.raise and POST
    /api/v1/whistle/cases do: the same checks, deadlines from now, the grid team alerted."""
    import msgspec

    from gridsync import auth
    from gridsync.clock import uuid7
    from gridsync.models import CaseCreate, WhistleRaise

    settings = _settings(config_path, db_path)
    try:
        body = msgspec.convert(
            {
                "category": category,
                "id": case_id,
                "grid_id": grid_id,
                "household_id": household_id,
                "location": location,
                "description": description,
            },
            CaseCreate,
        )
    except msgspec.ValidationError as exc:
        raise click.ClickException(f"validation_error: {exc}") from exc
    data = WhistleRaise(
        category=body.category,
        grid_id=body.grid_id,
        household_id=body.household_id,
        location=body.location,
        description=body.description,
    )

    def raise_(db: Any) -> Any:
        principal = auth.acting_for(db, person_id)
        return whistle.raise_case(
            db,
            principal,
            body.id or uuid7(),
            data,
            received_ms=SYSTEM_CLOCK.now_ms(),
            settings=settings,
        )

    with open_store(db_path) as store:
        case = run(lambda: store.write(raise_))
    if as_json:
        echo_json(case)
        return
    click.echo(
        f"case {case.id} raised in grid {case.grid_id} by {case.raised_by}; "
        f"accept by {when(case.deadlines.accept)}"
    )


@cli.group("whistle")
def whistle_group() -> None:
    """Whistle cases: reports."""


REPORT_HEADERS = {
    "zh-CN": ("层级", "单位", "案件", "响应率", "按时率", "办结率", "满意度", "回流", "随手办"),
    "en": (
        "level",
        "unit",
        "cases",
        "response",
        "on time",
        "resolved",
        "satisfaction",
        "backflow",
        "self-handled",
    ),
}


@whistle_group.command("report")
@db_option
@json_option
@click.option(
    "--since", "since_ms", type=TIME, default=None, help="Stays at a level that began from then."
)
@click.option("--until", "until_ms", type=TIME, default=None, help="... and before then.")
@click.option("--level", type=click.Choice(CASE_LEVELS))
@click.option(
    "--source",
    type=click.Choice(["whistle", "hotline"]),
    default="whistle",
    show_default=True,
    help="Whistle cases, or the stays of hotline orders (their three rates: report hotline).",
)
@click.option("--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True)
def whistle_report(
    db_path: str,
    as_json: bool,
    since_ms: int | None,
    until_ms: int | None,
    level: str | None,
    source: str,
    lang: str,
) -> None:
    """Response, on-time and resolution rates, satisfaction and backflow per level and unit;
    cases one person raised and resolved alone (随手办) are counted apart."""
    with open_store(db_path) as store:
        report = run(
            lambda: store.read(
                whistle.whistle_report,
                ADMIN,
                now_ms=SYSTEM_CLOCK.now_ms(),
                since_ms=since_ms,
                until_ms=until_ms,
                level=level,
                source=source,
            )
        )
    if as_json:
        echo_json(report)
        return
    labels = outbox.labels(lang)["level"]

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.0f}%"

    click.echo("\t".join(REPORT_HEADERS[lang]))
    for r in report.rows:
        level_name = labels.get(r.level, "合计" if lang == "zh-CN" else "all")
        unit = r.unit_name or r.unit_id or ("合计" if lang == "zh-CN" else "total")
        sat = "-" if r.satisfaction is None else f"{r.satisfaction:.2f}"
        click.echo(
            f"{level_name}\t{unit}\t{r.cases}\t{pct(r.response_rate)}\t"
            f"{pct(r.on_time_rate)}\t{pct(r.resolution_rate)}\t{sat}\t{r.backflow}\t"
            f"{r.self_handled}"
        )
    if report.raised_offline:
        text = (
            "离线上报 {n} 件（共 {total} 件），平均延迟 {delay} 秒"
            if lang == "zh-CN"
            else "raised offline: {n} of {total}, mean delay {delay} s"
        )
        click.echo(
            text.format(
                n=report.raised_offline,
                total=report.cases_raised,
                delay=report.offline_delay_avg_seconds,
            ),
            err=True,
        )

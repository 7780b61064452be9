"""CLI commands of every record in and out (issue 18): ``export visits|cases|assignments|
conflicts|audit``, ``audit``, ``households list``. The operator reads the whole district (or
``--scope``) with phone numbers masked unless ``--show-phones``, as ``export coverage`` does."""

from __future__ import annotations

import click

from gridsync import audit, households, record_exports
from gridsync.audit import Actor
from gridsync.cli.base import (
    TIME,
    cli,
    db_option,
    echo_json,
    export_file,
    json_option,
    open_store,
    run,
    when,
    zone_footer,
)
from gridsync.cli.coverage import _operator, export, lang_option, phones_option, scope_option
from gridsync.clock import SYSTEM_CLOCK
from gridsync.exports import FORMATS


def _export_command(kind: str, doc: str) -> None:
    @export.command(kind, help=doc)
    @db_option
    @click.option("--format", "fmt", type=click.Choice(FORMATS), required=True)
    @click.option(
        "-o", "--output", required=True, type=click.Path(dir_okay=False), help="File to write."
    )
    @scope_option
    @click.option("--since", type=TIME, default=None, help="Only records from this time on.")
    @click.option("--until", type=TIME, default=None, help="Only records before this time.")
    @lang_option
    @phones_option
    def command(
        db_path: str,
        fmt: str,
        output: str,
        scope_id: str | None,
        since: int | None,
        until: int | None,
        lang: str,
        show_phones: bool,
    ) -> None:
        with open_store(db_path) as store:
            data = run(
                lambda: store.read(
                    record_exports.export_records,
                    kind,
                    _operator(show_phones),
                    scope_id,
                    since_ms=since,
                    until_ms=until,
                    now_ms=SYSTEM_CLOCK.now_ms(),
                )
            )
            export_file(
                output,
                data.total_rows,
                lang,
                lambda progress: record_exports.render(data, fmt, lang, progress),
            )
            store.write(record_exports.record_export, Actor.cli(), fmt, data)
        click.echo(
            f"已写入 {output}，{data.total_rows} 行 (wrote {output}, {data.total_rows} rows)"
        )


_COMMON = (
    " Phone numbers are masked unless --show-phones (audited); --since/--until bound the "
    "records by their time; at most 500,000 records (export_too_large: narrow it)."
)
_export_command(
    "visits", "Export visits (走访记录) with household, visitor, channel and kinds." + _COMMON
)
_export_command(
    "cases",
    "Export whistle cases (吹哨案件) with their deadlines; XLSX and JSON carry each case's "
    "timeline (处置记录) too." + _COMMON,
)
_export_command(
    "assignments",
    "Export the assignment log (联系户分配日志): who assigned which household." + _COMMON,
)
_export_command(
    "conflicts", "Export the sync conflict log (同步冲突记录): every value that lost." + _COMMON
)
_export_command("audit", "Export the audit log (审计日志)." + _COMMON)


@cli.command("audit")
@db_option
@json_option
@click.option("--person", "person_id", default=None, help="Only what this person did.")
@click.option(
    "--action",
    default=None,
    help="Only this action and those below it (export matches export.visits, ...).",
)
@click.option("--since", type=TIME, default=None, help="Only entries from this time on.")
@click.option("--until", type=TIME, default=None, help="Only entries before this time.")
@click.option(
    "--limit",
    type=click.IntRange(1, audit.MAX_AUDIT_PAGE),
    default=100,
    show_default=True,
)
@click.option("--offset", type=click.IntRange(0, 100_000_000), default=0)
def audit_command(
    db_path: str,
    as_json: bool,
    person_id: str | None,
    action: str | None,
    since: int | None,
    until: int | None,
    limit: int,
    offset: int,
) -> None:
    """Read the audit log (审计日志), newest first: every write and every bulk read or export,
    with person, device and time."""
    with open_store(db_path) as store:
        page = store.read(
            audit.list_entries,
            person_id=person_id,
            action=action,
            since_ms=since,
            until_ms=until,
            limit=limit,
            offset=offset,
        )
        filters = {"person": person_id, "action": action, "since": since, "until": until}
        store.write(
            audit.record,
            Actor.cli(),
            "read.audit",
            None,
            {
                **{k: v for k, v in filters.items() if v is not None},
                "offset": offset,
                "count": len(page.items),
            },
        )
    if as_json:
        echo_json(page)
        return
    for e in page.items:
        who = e.person_id or "-"
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items())
        click.echo(
            f"{when(e.at)}\t{who}\t{e.device_id or '-'}\t{e.action}\t{e.target or ''}\t{detail}"
        )
    click.echo(
        f"共 {page.total} 条，显示 {len(page.items)} 条 ({len(page.items)} of {page.total} entries); "
        f"{zone_footer()}",
        err=True,
    )


@cli.group("households")
def households_group() -> None:
    """Households (住户)."""


@households_group.command("list")
@db_option
@json_option
@scope_option
@click.option("--q", "q", default=None, help="Search: id, external id, head of household, address.")
@click.option("--status", type=click.Choice(["active", "moved_out", "archived"]), default=None)
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0, 100_000_000), default=0)
@phones_option
def households_list(
    db_path: str,
    as_json: bool,
    scope_id: str | None,
    q: str | None,
    status: str | None,
    limit: int,
    offset: int,
    show_phones: bool,
) -> None:
    """List households of the district or of --scope (a unit: the grids under it), phone
    numbers masked unless --show-phones (audited)."""
    with open_store(db_path) as store:
        items, total = run(
            lambda: store.read(
                households.list_households,
                _operator(show_phones),
                unit_id=scope_id,
                q=q,
                status=status,
                limit=limit,
                offset=offset,
            )
        )
        if show_phones:
            store.write(
                audit.record,
                Actor.cli(),
                "read.households",
                scope_id,
                {"count": len(items), "phones": "all", "q": q},
            )
    if as_json:
        echo_json({"items": items, "total": total, "limit": limit, "offset": offset})
        return
    for h in items:
        address = "".join(x for x in (h.building, h.unit, h.room) if x)
        member = h.responsible_member_id or "-"
        click.echo(
            f"{h.id}\t{h.grid_id}\t{address}\t{h.head_name}\t{h.phone}\t{member}\t{h.status}"
        )
    click.echo(
        f"共 {total} 户，显示 {len(items)} 户 ({len(items)} of {total} households)", err=True
    )

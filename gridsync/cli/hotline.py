"""CLI commands of hotline orders (12345, 接诉即办) and supervision: import orders, open orders,
report hotline, report supervised, export orders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import msgspec

from gridsync import exports, hotline, order_import, privacy
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
from gridsync.cli.coverage import export
from gridsync.cli.data import echo_import, import_group
from gridsync.cli.reports import report
from gridsync.cli.whistle import ADMIN, _settings, config_option
from gridsync.clock import SYSTEM_CLOCK
from gridsync.errors import GridsyncError
from gridsync.importer import ImportRejected
from gridsync.models import HotlineReport

lang_option = click.option(
    "--lang", type=click.Choice(["zh-CN", "en"]), default="zh-CN", show_default=True
)
from_option = click.option(
    "--from",
    "since_ms",
    type=TIME,
    default=None,
    help="Orders the platform received from then (ISO 8601).",
)
to_option = click.option(
    "--to", "until_ms", type=TIME, default=None, help="... and before then (ISO 8601)."
)


@import_group.command("orders")
@db_option
@json_option
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Validate and preview the counts; write nothing.")
@click.option(
    "--ignore-unknown-columns",
    is_flag=True,
    help="Import although some columns have unknown headers (or none) and hold data; "
    "they are listed and left out.",
)
@config_option
@click.pass_context
def import_orders_command(
    ctx: click.Context,
    db_path: str,
    as_json: bool,
    file: str,
    dry_run: bool,
    ignore_unknown_columns: bool,
    config_path: str | None,
) -> None:
    """Import the day's hotline orders (12345) from FILE.csv or FILE.xlsx.

    \b
    Headers (Chinese or English; row 1 is the header):
      工单编号/order_no (required)   类型/type (required: 咨询 求助 投诉 举报 建议, or
      consult help complaint report suggestion)   承办单位/unit_id (required: the id or exact
      name of a street, community, department or grid)   受理时间/received_at (required:
      ISO 8601; without an offset, local time; an Excel date cell is read as one)
      来电人/caller_name   联系电话/caller_phone   地址/address   诉求内容/description
    An order number already received is left as it is: importing the same file twice is one
    set of orders. Every bad row is reported with its row number; if any row is bad, nothing
    is written (exit code 1). A file that cannot be read whole is one coded line, as for
    `gridsync import households`."""
    settings = _settings(config_path, db_path)
    with open_store(db_path) as store:
        try:
            sheet = order_import.read_orders(file, ignore_unknown_columns=ignore_unknown_columns)
        except GridsyncError as exc:
            if as_json:
                echo_json({"code": exc.code, "message": exc.message, "written": False})
                ctx.exit(1)
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc
        if dry_run:
            result = store.read(order_import.preview_orders, sheet, settings)
        else:
            try:
                result = store.write(
                    order_import.import_orders, sheet, Actor.cli(), SYSTEM_CLOCK, settings
                )
            except ImportRejected:
                result = store.read(order_import.preview_orders, sheet, settings)
    counts = (
        f"{result.new} new, {result.existing} already received "
        f"(新工单 {result.new}，已接收 {result.existing})"
    )
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


@cli.command("orders")
@db_option
@json_option
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True)
def orders_command(db_path: str, as_json: bool, limit: int) -> None:
    """Open hotline orders, the next deadline first (callers masked)."""
    with open_store(db_path) as store:
        page = run(lambda: store.read(hotline.open_orders, ADMIN, limit=limit))
    if as_json:
        echo_json(page)
        return
    for case in page.items:
        due = case.deadlines.accept if case.state == "raised" else case.deadlines.resolve
        order_no = case.order.order_no if case.order else ""
        click.echo(
            f"{when(due)}\t{order_no}\t{case.category}\t{case.unit_id}\t{case.state}\t{case.id}"
        )
    click.echo(f"未办结工单 {page.total} 件 ({page.total} open orders); {zone_footer()}", err=True)


HOTLINE_HEADERS = {
    "zh-CN": ("单位", "类型", "工单", "已回访", "未评价", "响应率", "解决率", "满意率"),
    "en": (
        "unit",
        "type",
        "orders",
        "rated",
        "unrated",
        "response rate",
        "resolution rate",
        "satisfaction rate",
    ),
}


def _hotline_table(report: HotlineReport, lang: str) -> list[list[Any]]:
    total = "合计" if lang == "zh-CN" else "all"
    types = hotline.TYPE_LABELS[lang]
    return [
        [
            r.unit_name or r.unit_id or total,
            types.get(r.type, total),
            r.orders,
            r.rated,
            r.unrated,
            r.response_rate,
            r.resolution_rate,
            r.satisfaction_rate,
        ]
        for r in report.rows
    ]


@report.command("hotline")
@db_option
@json_option
@click.option("--scope", "unit", default=None, help="Org unit id: orders dispatched within it.")
@from_option
@to_option
@lang_option
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the table to this .xlsx or .csv file.",
)
def report_hotline(
    db_path: str,
    as_json: bool,
    unit: str | None,
    since_ms: int | None,
    until_ms: int | None,
    lang: str,
    output: str | None,
) -> None:
    """The hotline's three rates per unit and type, from callbacks (回访) only: response
    (响应率), resolution (解决率), satisfaction (满意率), over the orders whose latest callback
    reached the caller; the others are counted as not yet rated (未评价), never as 100%."""
    with open_store(db_path) as store:
        report = run(
            lambda: store.read(
                hotline.hotline_report,
                ADMIN,
                now_ms=SYSTEM_CLOCK.now_ms(),
                unit=unit,
                since_ms=since_ms,
                until_ms=until_ms,
            )
        )
    header = list(HOTLINE_HEADERS[lang])
    table = _hotline_table(report, lang)
    if output:
        fmt = "csv" if output.lower().endswith(".csv") else "xlsx"
        title = "12345三率" if lang == "zh-CN" else "hotline rates"
        _write(output, fmt, [(title, header, table)])
    if as_json:
        echo_json(report)
        return

    def pct(x: Any) -> str:
        return "-" if x is None else f"{100 * x:.0f}%" if isinstance(x, float) else str(x)

    click.echo("\t".join(header))
    for row in table:
        click.echo("\t".join(pct(v) if i >= 5 else str(v) for i, v in enumerate(row)))


def _write(output: str, fmt: str, sheets: list[tuple[str, list[str], list[list[Any]]]]) -> None:
    total = sum(len(rows) for _, _, rows in sheets)

    def build(progress: Callable[[int], None]) -> bytes:
        if fmt == "csv":  # one table: the first sheet
            _title, header, rows = sheets[0]
            return exports.table_csv(header, rows, progress=progress)
        tables = [
            (title[:31], header, exports.header_kinds(header), rows)
            for title, header, rows in sheets
        ]
        return exports.tables_xlsx(tables, progress=progress)

    export_file(output, total, "zh", build)
    click.echo(f"wrote {output} ({total} rows)", err=True)


@report.command("supervised")
@db_option
@json_option
@click.option("--since", "since_ms", type=TIME, default=None, help="Supervised from then.")
@click.option("--until", "until_ms", type=TIME, default=None, help="... and before then.")
def report_supervised(
    db_path: str, as_json: bool, since_ms: int | None, until_ms: int | None
) -> None:
    """Supervised cases (督办) and whether each was resolved by its new due time."""
    with open_store(db_path) as store:
        report = run(
            lambda: store.read(
                hotline.supervised_report,
                ADMIN,
                now_ms=SYSTEM_CLOCK.now_ms(),
                since_ms=since_ms,
                until_ms=until_ms,
            )
        )
    if as_json:
        echo_json(report)
        return
    marks = {True: "按时办结", False: "超时", None: "办理中"}
    for r in report.rows:
        click.echo(
            f"{when(r.supervised_at)}\t{r.order_no or r.case_id}\t{r.unit_name}\t{when(r.due_at)}\t"
            f"{marks[r.met]}\t{r.note}"
        )
    click.echo(
        f"督办 {report.supervised} 件：按时 {report.met}，超时 {report.missed}，"
        f"办理中 {report.pending}",
        err=True,
    )


@export.command("orders")
@db_option
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@from_option
@to_option
@lang_option
@click.option(
    "--show-phones",
    is_flag=True,
    help="Callers' names and phones in full (an operator's choice, audited); masked by default.",
)
@config_option
def export_orders(
    db_path: str,
    fmt: str,
    output: str,
    since_ms: int | None,
    until_ms: int | None,
    lang: str,
    show_phones: bool,
    config_path: str | None,
) -> None:
    """Export hotline orders with their timelines (every step, who and when) as CSV or XLSX,
    for reporting back to the city platform."""
    settings = _settings(config_path, db_path)
    with open_store(db_path) as store:
        data = run(
            lambda: store.read(
                hotline.order_rows,
                ADMIN,
                privacy.operator(show_phones),
                lang=lang,
                tz=settings.timezone,
                since_ms=since_ms,
                until_ms=until_ms,
            )
        )
        title = "工单" if lang == "zh-CN" else "orders"
        _write(output, fmt, [(title, data.header, data.rows)])
        store.write(
            lambda db: hotline.record_order_export(
                db, Actor.cli(), fmt, len(data.rows), show_phones
            )
        )
    click.echo(f"wrote {output} ({len(data.rows)} orders)")

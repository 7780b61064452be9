"""Coverage exports: CSV, XLSX and JSON of the roll-up (every level of a scope) and the
violations list, for secretaries and admins who live in Excel.

- Headers are Chinese by default (``lang="en"`` for English); XLSX has one sheet per level
  (区, 街道, 社区, 网格, 党支部, 成员) plus 问题清单 (violations), a frozen header row, and column
  widths that fit CJK text (a CJK character counts as two).
- CSV is one table: the roll-up rows of every level with a level column, UTF-8 with a BOM so
  that Excel reads the Chinese. JSON holds everything with English keys.
- Phone numbers (households' in violations, members' in member rows) are as the scope's reader
  may read them (``Scope.phones``, :mod:`gridsync.privacy`): masked unless in full for them.
- Callers record every export in the audit log (:func:`record_export`).
- Names and addresses come from phones and spreadsheets: a text that Excel would read as a
  formula (``=HYPERLINK(...)``, ``+``, ``-``, ``@``, a tab or carriage return first: the OWASP
  list) is written inert. CSV cells get a leading single quote (:func:`inert`, the one rule
  every CSV cell goes through); XLSX cells are typed text with Excel's own quote prefix (the
  mark a typed leading ``'`` leaves), so that a click on the cell does not turn it into a
  formula either. Numbers, and texts that are a plain number (``+8613800000000``, ``-3``),
  cannot run and are left as they are. ``tests/test_export.py`` reads both back.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import sqlite_utils
import xlsxwriter
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from gridsync import audit, burden, localtime
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import Settings
from gridsync.coverage import (
    KIND_LABELS,
    LEVEL_LABELS,
    VIOLATION_LABELS,
    label,
    member_phone,
    rows_of,
    tally,
    violations,
    with_verified,
)
from gridsync.errors import Invalid
from gridsync.models import COVERAGE_LEVELS, BurdenReport, CoverageRow, InstructorReport, Violation
from gridsync.org import Scope

Format = Literal["csv", "xlsx", "json"]
FORMATS: tuple[str, ...] = ("csv", "xlsx", "json")
CONTENT_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
SHEET_ORDER = tuple(reversed(COVERAGE_LEVELS))  # district first
VIOLATIONS_SHEET = {"zh": "问题清单", "en": "violations"}

# (key, Chinese header, English header, kind) -- kind: "text", "int", "rate" or "datetime" (a
# wire time: in XLSX a date-time cell of the district's wall time, see gridsync/localtime.py)
ROW_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("unit_id", "编号", "id", "text"),
    ("name", "名称", "name", "text"),
    ("parent", "上级", "parent", "text"),
    ("households", "户数", "households", "int"),
    ("assigned", "已落实联系党员户数", "assigned", "int"),
    ("unassigned", "未落实户数", "unassigned", "int"),
    ("assigned_rate", "落实率", "assigned rate", "rate"),
    ("contacted", "已走访", "contacted this cycle", "int"),
    ("contact_rate", "走访率", "contact rate", "rate"),
    ("verified_rate", "最近抽检核实率", "latest verified rate (check)", "rate"),
    ("contacted_by_responsible", "责任党员走访", "contacted by responsible member", "int"),
    ("group_contacted", "仅集体走访户数", "contacted by group visits only", "int"),
    ("compliance_rate", "责任党员走访率", "compliance rate", "rate"),
    ("overdue", "逾期未走访户数", "overdue", "int"),
    ("overdue_rate", "逾期率", "overdue rate", "rate"),
    ("priority_households", "重点户数", "priority households", "int"),
    ("priority_overdue", "重点户逾期数", "priority overdue", "int"),
    ("priority_overdue_rate", "重点户逾期率", "priority overdue rate", "rate"),
    ("members", "党员数", "members", "int"),
    ("members_under_min", "联系户不足党员数", "members under minimum", "int"),
    ("members_over_cap", "联系户超限党员数", "members over cap", "int"),
    ("kinds_count", "已覆盖服务类别数", "service kinds covered", "int"),
    ("kinds_total", "服务类别数", "service kinds (N)", "int"),
    ("kinds_rate", "服务类别覆盖率", "service kinds rate", "rate"),
    ("kinds_list", "已覆盖服务类别", "kinds covered", "text"),
)
MEMBER_EXTRA = (("phone", "电话", "phone", "text"),)
LEVEL_COLUMN = ("level", "层级", "level", "text")
VIOLATION_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("kind", "问题类型", "kind", "text"),
    ("subject", "对象", "subject", "text"),
    ("id", "编号", "id", "text"),
    ("name", "户主/党员", "name", "text"),
    ("phone", "电话", "phone", "text"),
    ("grid_id", "网格", "grid", "text"),
    ("address", "地址", "address", "text"),
    ("member_id", "联系党员", "responsible member", "text"),
    ("last_visit_at", "最近走访", "last visit", "datetime"),
    ("days_since_visit", "距今天数", "days since visit", "int"),
    ("households", "联系户数", "households", "int"),
    ("limit", "标准", "limit", "int"),
)
SUBJECT_LABELS = {
    "zh": {"household": "户", "member": "党员"},
    "en": {"household": "household", "member": "member"},
}


@dataclass
class ExportData:
    scope_id: str | None
    at: str
    rows: list[CoverageRow]
    violations: list[Violation]
    names: dict[str, str]  # unit and member ids -> names (for the "parent" column)
    member_phones: dict[str, str]  # as the reader may read them (gridsync/privacy.py)
    phones: str  # whose numbers were in full: "all", "none" or "by_role" (PhoneView.label)
    timezone: str = localtime.DEFAULT_ZONE  # the district's: XLSX date cells are its wall time

    @property
    def total_rows(self) -> int:
        return len(self.rows) + len(self.violations)


def export_data(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None = None,
    *,
    now_ms: int,
) -> ExportData:
    t = tally(db, settings, scope, unit_id, now_ms, member_kinds=True)
    rows = with_verified(db, rows_of(t, list(COVERAGE_LEVELS)), now_ms)
    page = violations(
        db,
        settings,
        scope,
        unit_id,
        now_ms=now_ms,
        limit=10_000_000,
        tallied=t,
    )
    names = dict(t.idx.name)
    names.update({pid: m.name for pid, m in t.members.items()})
    phones = {pid: member_phone(scope.phones, m) for pid, m in t.members.items()}
    return ExportData(
        scope_id=unit_id,
        at=iso_ms(now_ms),
        rows=rows,
        violations=page.items,
        names=names,
        member_phones=phones,
        phones=scope.phones.label,
        timezone=settings.timezone,
    )


def record_export(
    db: sqlite_utils.Database, actor: Actor, fmt: str, data: ExportData, clock: Clock = SYSTEM_CLOCK
) -> None:
    audit.record(
        db,
        actor,
        "export.coverage",
        target=data.scope_id,
        detail={
            "format": fmt,
            "rows": len(data.rows),
            "violations": len(data.violations),
            "phones": data.phones,
        },
        clock=clock,
    )


# -- cell values ------------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP CSV injection
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")


def formula_like(value: Any) -> bool:
    """A text a spreadsheet would run as a formula (a plain number is not one)."""
    return (
        isinstance(value, str)
        and value.startswith(FORMULA_STARTS)
        and _PLAIN_NUMBER.fullmatch(value) is None
    )


def inert(value: Any) -> Any:
    """A CSV cell as written: a formula-like text gets a leading single quote (OWASP); every
    other value is unchanged."""
    return "'" + value if formula_like(value) else value


def _row_value(data: ExportData, row: CoverageRow, key: str, lang: str) -> Any:
    if key == "parent":
        return data.names.get(row.parent_id or "", row.parent_id or "")
    if key == "kinds_count":
        return len(row.kinds_covered)
    if key == "kinds_list":
        return "、".join(label(KIND_LABELS, lang, k) for k in row.kinds_covered)
    if key == "phone":
        return data.member_phones.get(row.unit_id, "")
    return getattr(row, key)


def _violation_value(v: Violation, key: str, lang: str) -> Any:
    if key == "kind":
        return label(VIOLATION_LABELS, lang, v.kind)
    if key == "subject":
        return label(SUBJECT_LABELS, lang, v.subject)
    value = getattr(v, key)
    return "" if value is None and key not in ("days_since_visit", "households", "limit") else value


def _header(columns: Iterable[tuple[str, str, str, str]], lang: str) -> list[str]:
    return [en if lang == "en" else zh for _, zh, en, _ in columns]


def _columns(level: str) -> tuple[tuple[str, str, str, str], ...]:
    return ROW_COLUMNS[:2] + MEMBER_EXTRA + ROW_COLUMNS[2:] if level == "member" else ROW_COLUMNS


# -- writers ----------------------------------------------------------------------------------

Progress = Callable[[int], None]  # advances the one bar of an export by n rows


def _noop(_: int) -> None:
    pass


def write_csv(
    data: ExportData, out: io.TextIOBase, lang: str = "zh", progress: Progress = _noop
) -> None:
    """The roll-up rows of every level, one table (the level is the first column)."""
    writer = csv.writer(out)
    writer.writerow([inert(h) for h in _header((LEVEL_COLUMN, *ROW_COLUMNS), lang)])
    for row in data.rows:
        values = [label(LEVEL_LABELS, lang, row.level)] + [
            _row_value(data, row, key, lang) for key, *_ in ROW_COLUMNS
        ]
        writer.writerow(["" if value is None else inert(value) for value in values])
        progress(1)
    progress(len(data.violations))  # violations are in the XLSX and JSON exports


def display_width(value: Any) -> int:
    """Columns a value takes in a spreadsheet: wide (CJK) characters count as two."""
    text = "" if value is None else (f"{value:.1%}" if isinstance(value, float) else str(value))
    if text.isascii():
        return len(text)
    return sum(2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1 for ch in text)


@dataclass
class _Formats:
    """The cell formats of one workbook (XlsxWriter formats belong to their workbook)."""

    bold: Any
    quoted: Any  # text with Excel's quote prefix: a formula-like text stays text when edited
    rate: Any
    when: Any  # a date-time cell, the district's wall time

    @classmethod
    def of(cls, wb: xlsxwriter.Workbook) -> _Formats:
        return cls(
            bold=wb.add_format({"bold": True}),
            quoted=wb.add_format({"quote_prefix": True}),
            rate=wb.add_format({"num_format": "0.0%"}),
            when=wb.add_format({"num_format": localtime.XLSX_DATETIME_FORMAT}),
        )


# constant memory: a row at a time to a temporary file; a text is never read as a formula
WORKBOOK_OPTIONS = {"constant_memory": True, "strings_to_formulas": False}


def _write_text(
    ws: Any, row: int, col: int, value: str, fmt: Any = None, quoted: Any = None
) -> None:
    """Text typed on phones, kept as text: control characters that XLSX cannot hold are dropped,
    the cell is always a string (never a formula, whatever it starts with), and a formula-like
    text carries the quote prefix, so editing the cell in Excel keeps it text."""
    # a carriage return becomes a newline, as XML reads a raw one (XlsxWriter would write
    # "_x000D_", which Excel shows as a line break but openpyxl, our import, reads as text)
    text = ILLEGAL_CHARACTERS_RE.sub("", value).replace("\r\n", "\n").replace("\r", "\n")
    if quoted is not None and (formula_like(value) or formula_like(text)):
        fmt = quoted
    ws.write_string(row, col, text, fmt)


# Columns of times (epoch ms, or a wire time: ISO 8601 with an offset): a date-time cell in the
# district's wall time, as people read it; a text that is no time stays text.
TIME_KINDS = frozenset({"datetime", "time"})


def _write_time(ws: Any, row: int, col: int, value: int | str, tz: str, fmt: _Formats) -> None:
    try:
        when = localtime.local_naive(value, tz)
    except (ValueError, OverflowError):
        _write_text(ws, row, col, str(value), None, fmt.quoted)
        return
    ws.write_datetime(row, col, when, fmt.when)


def _sheet(
    wb: xlsxwriter.Workbook,
    title: str,
    header: list[str],
    kinds: list[str],
    rows: list[list[Any]],
    progress: Progress,
    tz: str = localtime.DEFAULT_ZONE,
    formats: _Formats | None = None,
) -> None:
    fmt = formats or _Formats.of(wb)
    ws = wb.add_worksheet(title)
    ws.freeze_panes(1, 0)
    widths = [display_width(h) for h in header]
    for values in rows:
        for i, value in enumerate(values):
            shown = localtime.XLSX_DATETIME_FORMAT if kinds[i] in TIME_KINDS else value
            widths[i] = max(widths[i], display_width(shown))
    for i, width in enumerate(widths):
        ws.set_column(i, i, min(width + 2, 60))
    for col, text in enumerate(header):
        _write_text(ws, 0, col, text, fmt.bold, fmt.quoted)
    for r, values in enumerate(rows, start=1):
        for c, (value, kind) in enumerate(zip(values, kinds)):
            if value is None:
                continue
            if kind == "rate":
                ws.write_number(r, c, value, fmt.rate)
            elif kind in TIME_KINDS:
                if value:
                    _write_time(ws, r, c, value, tz, fmt)
            elif isinstance(value, str):
                _write_text(ws, r, c, value, None, fmt.quoted)
            else:
                ws.write_number(r, c, value)
        progress(1)


def write_xlsx(
    data: ExportData, out: io.BufferedIOBase | str, lang: str = "zh", progress: Progress = _noop
) -> None:
    """One sheet per level (district first), then the violations sheet. Written by XlsxWriter
    in constant-memory mode (a row at a time to a temporary file, then zipped): the district's
    54,000 rows took 12.5 s with openpyxl's write-only mode (``python -m bench export``)."""
    wb = xlsxwriter.Workbook(out, WORKBOOK_OPTIONS)
    formats = _Formats.of(wb)
    for level in SHEET_ORDER:
        columns = _columns(level)
        rows = [
            [_row_value(data, r, key, lang) for key, *_ in columns]
            for r in data.rows
            if r.level == level
        ]
        _sheet(
            wb,
            label(LEVEL_LABELS, lang, level),
            _header(columns, lang),
            [c[3] for c in columns],
            rows,
            progress,
            data.timezone,
            formats,
        )
    vrows = [
        [_violation_value(v, key, lang) for key, *_ in VIOLATION_COLUMNS] for v in data.violations
    ]
    _sheet(
        wb,
        VIOLATIONS_SHEET.get(lang, VIOLATIONS_SHEET["zh"]),
        _header(VIOLATION_COLUMNS, lang),
        [c[3] for c in VIOLATION_COLUMNS],
        vrows,
        progress,
        data.timezone,
        formats,
    )
    wb.close()


def write_json(
    data: ExportData, out: io.BufferedIOBase, lang: str = "zh", progress: Progress = _noop
) -> None:
    levels: dict[str, list[CoverageRow]] = {level: [] for level in SHEET_ORDER}
    for row in data.rows:
        levels[row.level].append(row)
    doc = {
        "scope_id": data.scope_id,
        "at": data.at,
        "levels": levels,
        "member_phones": data.member_phones,
        "violations": data.violations,
    }
    out.write(msgspec.json.encode(doc))
    progress(data.total_rows)


# -- one table or several, for the record exports (gridsync/record_exports.py) -----------------

Table = tuple[str, list[str], list[str], list[list[Any]]]  # (sheet title, header, kinds, rows)


def table_csv(header: list[str], rows: list[list[Any]], progress: Progress = _noop) -> bytes:
    """One table as every CSV export writes it: UTF-8 with a BOM (Excel reads the Chinese),
    every cell through :func:`inert`."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow([inert(h) for h in header])
    for values in rows:
        writer.writerow(["" if value is None else inert(value) for value in values])
        progress(1)
    return ("\ufeff" + text.getvalue()).encode()


def tables_xlsx(tables: list[Table], progress: Progress = _noop) -> bytes:
    """Sheets as the coverage export writes its own (:func:`_sheet`: frozen header, widths
    that fit CJK text, texts inert), one per table."""
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, WORKBOOK_OPTIONS)
    formats = _Formats.of(wb)
    for title, header, kinds, rows in tables:
        _sheet(wb, title, header, kinds, rows, progress, formats=formats)
    wb.close()
    return buf.getvalue()


def render(data: ExportData, fmt: str, lang: str = "zh", progress: Progress = _noop) -> bytes:
    """The export as bytes (for the API); the CLI writes to a file the same way."""
    if fmt not in FORMATS:
        raise Invalid(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}", field="format")
    if fmt == "csv":
        text = io.StringIO(newline="")
        write_csv(data, text, lang, progress)
        return ("\ufeff" + text.getvalue()).encode()
    buf = io.BytesIO()
    (write_xlsx if fmt == "xlsx" else write_json)(data, buf, lang, progress)
    return buf.getvalue()


# -- the burden report (gridsync/burden.py) -------------------------------------------------------

BURDEN_SHEET = {"zh": "工作负担", "en": "burden"}
# (key, Chinese header, English header, kind); the notifications by kind follow "notifications"
BURDEN_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("person_id", "人员编号", "person", "text"),
    ("name", "姓名", "name", "text"),
    ("roles", "角色", "roles", "text"),
    ("mutations", "推送变更数", "mutations pushed", "int"),
    ("visits", "走访数", "visits", "int"),
    ("households_due", "待走访户数", "households due", "int"),
    ("notifications", "收到通知数", "notifications", "int"),
)
ALERT_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("alerts_received", "收到预警数", "alerts received", "int"),
    ("alerts_acted", "已处置预警数", "alerts acted on", "int"),
)


def burden_table(report: BurdenReport, lang: str = "zh") -> tuple[list[str], list[list[Any]]]:
    """The burden report as a header and rows (the XLSX sheet and the CLI table): one column
    per notification kind present, after their total; alert columns empty for non-secretaries."""
    kinds = sorted({k for r in report.rows for k in r.notifications})
    header = _header(BURDEN_COLUMNS, lang)
    header += [
        ("通知：" if lang == "zh" else "notifications: ")
        + label(burden.NOTIFICATION_LABELS, lang, k)
        for k in kinds
    ]
    header += _header(ALERT_COLUMNS, lang)
    rows = []
    for r in report.rows:
        sep = "、" if lang == "zh" else ", "
        rows.append(
            [
                r.person_id,
                r.name,
                sep.join(label(burden.ROLE_LABELS, lang, x) for x in r.roles),
                r.mutations,
                r.visits,
                r.households_due,
                sum(r.notifications.values()),
                *(r.notifications.get(k, 0) for k in kinds),
                None if r.alerts_acted is None else r.alerts_acted.received,
                None if r.alerts_acted is None else r.alerts_acted.acted,
            ]
        )
    return header, rows


def burden_xlsx(report: BurdenReport, lang: str = "zh", progress: Progress = _noop) -> bytes:
    """The burden report as one XLSX sheet (Chinese headers by default), the week in its name."""
    header, rows = burden_table(report, lang)
    kinds = ["text", "text", "text"] + ["int"] * (len(header) - 3)
    title = f"{BURDEN_SHEET.get(lang, BURDEN_SHEET['zh'])} {report.week}"
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, WORKBOOK_OPTIONS)
    _sheet(wb, title, header, kinds, rows, progress)
    wb.close()
    return buf.getvalue()


def header_kinds(header: list[str]) -> list[str]:
    """The kinds of a plain table's columns (the hotline's reports and orders): a column whose
    header ends in 率 or "rate" holds rates (shown as percentages), the others as they are."""
    return ["rate" if h.endswith(("率", "rate")) else "" for h in header]


# -- the instructors' report (gridsync/instructors.py) ------------------------------------------

INSTRUCTOR_SHEET = {"zh": "党建指导员", "en": "instructors"}
INSTRUCTOR_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("person_id", "人员编号", "person", "text"),
    ("name", "姓名", "name", "text"),
    ("communities", "联系社区", "communities", "text"),
    ("communities_covered", "已走访社区数", "communities covered", "int"),
    ("households_visited", "走访户数", "households visited", "int"),
    ("visits", "走访记录数", "visits", "int"),
    ("group_visits", "集体走访次数", "group visits", "int"),
    ("cases_raised", "吹哨上报数", "cases raised", "int"),
    ("cases_resolved", "已解决问题数", "cases resolved", "int"),
)


def instructors_table(
    report: InstructorReport, lang: str = "zh"
) -> tuple[list[str], list[list[Any]]]:
    """The instructors' report as a header and rows (the XLSX sheet and the CLI table)."""
    sep = "、" if lang == "zh" else ", "
    rows = [
        [
            r.person_id,
            r.name,
            sep.join(r.communities),
            r.communities_covered,
            r.households_visited,
            r.visits,
            r.group_visits,
            r.cases_raised,
            r.cases_resolved,
        ]
        for r in report.rows
    ]
    return _header(INSTRUCTOR_COLUMNS, lang), rows


def instructors_xlsx(
    report: InstructorReport, lang: str = "zh", progress: Progress = _noop
) -> bytes:
    """The instructors' report as one XLSX sheet (Chinese headers by default)."""
    header, rows = instructors_table(report, lang)
    kinds = [kind for *_, kind in INSTRUCTOR_COLUMNS]
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, WORKBOOK_OPTIONS)
    _sheet(wb, INSTRUCTOR_SHEET.get(lang, INSTRUCTOR_SHEET["zh"]), header, kinds, rows, progress)
    wb.close()
    return buf.getvalue()

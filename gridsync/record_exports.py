"""Exports of the records themselves (issue 18): visits, whistle cases with their timelines, the
assignment log, the conflict log and the audit log, as CSV, XLSX (Chinese headers, English
with ``lang="en"``) and JSON. The coverage report's export is ``gridsync/exports.py``; these
use its writers (:func:`exports.table_csv`, :func:`exports.tables_xlsx`: inert formula-like
text, CJK column widths, frozen headers), so a change of the writer covers both.

- Scope: a reader gets the records of their scope (``Scope.grid_filter``, :func:`org.unit_grid_filter`; cases as
  :func:`whistle.list_cases` shows them), narrowed to the grids under ``unit_id`` when given
  (a unit outside the scope is not found); the audit log is the district's, for admins
  (the callers check the role). ``since``/``until`` bound the records by their time (a
  visit's ``at``, a case's receipt, an assignment's, a conflict's, an audit line's).
- Phone numbers (a household's, in visits, cases and ``phone`` conflicts) are as the reader may
  read them: :func:`privacy.shown_phone`, :func:`conflicts.list_conflicts` (THE rule).
- At most :data:`MAX_ROWS` records per export: beyond, ``400 export_too_large``, narrowed by
  time or scope. An export is built in memory (as the coverage export is): a week of the demo
  district's visits (220,000) took 0.9 GB at peak as CSV and 0.7 GB as XLSX, so the bound keeps
  one export near 2 GB (README, "Every record in and out").
- JSON is the records with English keys, as the API's own types where there is one
  (``WhistleCase`` with its history, ``ConflictEntry``, ``AuditEntry``).
- Callers record every export in the audit log (:func:`record_export`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import sqlite_utils

from gridsync import audit, exports, whistle
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms, parse_ms
from gridsync.coverage import KIND_LABELS, label
from gridsync.errors import Forbidden, Invalid
from gridsync.households import VISIT_COLUMNS
from gridsync.org import Scope, unit_grid_filter
from gridsync.privacy import shown_phone
from gridsync.sync.conflicts import list_conflicts

RecordKind = Literal["visits", "cases", "assignments", "conflicts", "audit"]
KINDS: tuple[str, ...] = ("visits", "cases", "assignments", "conflicts", "audit")
MAX_ROWS = 500_000
Progress = Callable[[int], None]

CHANNEL_LABELS = {
    "zh": {"door": "上门", "phone": "电话", "wechat": "微信", "other": "其他"},
    "en": {"door": "door", "phone": "phone", "wechat": "WeChat", "other": "other"},
}
STATE_LABELS = {
    "zh": {
        "raised": "已上报",
        "accepted": "已受理",
        "on_site": "已到场",
        "resolved": "已办结",
        "closed": "已关闭",
        "reopened": "已重启",
    },
    "en": {},
}
CASE_LEVEL_LABELS = {
    "zh": {
        "grid": "网格",
        "community": "社区",
        "street": "街道",
        "department": "部门",
        "district": "区",
    },
    "en": {},
}
ACTION_LABELS = {
    "zh": {
        "raise": "上报",
        "accept": "受理",
        "arrive": "到场",
        "resolve": "办结",
        "escalate": "吹哨上报",
        "comment": "备注",
        "close": "关闭",
        "reopen": "重启",
        "return": "退回",
        "dispatch": "派单",
        "missed": "超时",
    },
    "en": {},
}
STATUS_LABELS = {
    "zh": {"open": "待处理", "restored": "已恢复", "dismissed": "已忽略"},
    "en": {},
}
YES_NO = {"zh": ("是", "否"), "en": ("yes", "no")}
KIND_TITLES = {
    "visits": ("走访记录", "visits"),
    "cases": ("吹哨案件", "cases"),
    "timeline": ("案件处置记录", "case timeline"),
    "assignments": ("联系户分配日志", "assignment log"),
    "conflicts": ("同步冲突记录", "conflict log"),
    "audit": ("审计日志", "audit log"),
}


@dataclass(frozen=True)
class Column:
    """A column: the record's key, its Chinese and English headers, the writer's kind
    (``text``, ``int``, ``time``) and the labels its values are shown with, if any."""

    key: str
    zh: str
    en: str
    kind: str = "text"
    labels: dict[str, dict[str, str]] | None = None


def _c(key: str, zh: str, en: str, kind: str = "text", labels: Any = None) -> Column:
    return Column(key, zh, en, kind, labels)


VISIT_TABLE = (
    _c("id", "编号", "id"),
    _c("at", "走访时间", "visited at", "time"),
    _c("grid_id", "网格", "grid"),
    _c("household_id", "住户编号", "household"),
    _c("address", "地址", "address"),
    _c("head_name", "户主姓名", "head of household"),
    _c("phone", "联系电话", "phone"),
    _c("member_id", "走访人编号", "visitor"),
    _c("member_name", "走访人", "visitor name"),
    _c("responsible", "是否负责党员", "by the responsible member"),
    _c("group_contact", "集体走访", "group contact"),
    _c("group_households", "集体走访住户", "households of the group contact"),
    _c("channel", "方式", "channel", labels=CHANNEL_LABELS),
    _c("kinds", "服务类别", "service kinds", labels=KIND_LABELS),
    _c("note", "备注", "note"),
    _c("voided", "已作废", "voided"),
    _c("device_id", "设备", "device"),
    _c("received_at", "接收时间", "received at", "time"),
)
CASE_TABLE = (
    _c("id", "编号", "id"),
    _c("category", "类别", "category"),
    _c("state", "状态", "state", labels=STATE_LABELS),
    _c("level", "当前层级", "level", labels=CASE_LEVEL_LABELS),
    _c("unit_id", "责任单位", "responsible unit"),
    _c("grid_id", "网格", "grid"),
    _c("household_id", "住户编号", "household"),
    _c("head_name", "户主姓名", "head of household"),
    _c("phone", "联系电话", "phone"),
    _c("location", "地点", "location"),
    _c("description", "描述", "description"),
    _c("raised_by", "上报人", "raised by"),
    _c("raised_at", "上报时间（设备）", "raised at (device)", "time"),
    _c("received_at", "接收时间（服务器）", "received at (server)", "time"),
    _c("accepted_by", "受理人", "accepted by"),
    _c("accept_due", "受理时限", "accept by", "time"),
    _c("arrive_due", "到场时限", "arrive by", "time"),
    _c("resolve_due", "办结时限", "resolve by", "time"),
    _c("missed", "超时环节", "deadlines missed"),
    _c("satisfaction", "满意度", "satisfaction", "int"),
    _c("backflow", "回流次数", "backflow", "int"),
    _c("events", "处置记录条数", "timeline events", "int"),
)
TIMELINE_TABLE = (
    _c("case_id", "案件编号", "case"),
    _c("n", "序号", "n", "int"),
    _c("at", "时间", "at", "time"),
    _c("action", "动作", "action", labels=ACTION_LABELS),
    _c("by", "操作人", "by"),
    _c("level", "层级", "level", labels=CASE_LEVEL_LABELS),
    _c("state", "状态", "state", labels=STATE_LABELS),
    _c("note", "说明", "note"),
    _c("device_at", "设备时间", "device time", "time"),
)
ASSIGNMENT_TABLE = (
    _c("id", "编号", "id", "int"),
    _c("at", "时间", "at", "time"),
    _c("household_id", "住户编号", "household"),
    _c("grid_id", "网格", "grid"),
    _c("previous_member_id", "原负责党员", "previous member"),
    _c("member_id", "负责党员", "member"),
    _c("person_id", "操作人", "by"),
    _c("device_id", "设备", "device"),
    _c("override_cap", "超出上限", "over the cap"),
    _c("load_after", "分配后联系户数", "load after", "int"),
    _c("cap", "上限", "cap", "int"),
    _c("reason", "原因", "reason"),
)
CONFLICT_TABLE = (
    _c("id", "编号", "id", "int"),
    _c("created_at", "时间", "at", "time"),
    _c("household_id", "住户编号", "household"),
    _c("grid_id", "网格", "grid"),
    _c("field", "字段", "field"),
    _c("value", "未采用的值", "losing value"),
    _c("winner", "采用的值", "winning value"),
    _c("lost_person_id", "未采用方", "lost by"),
    _c("lost_device_id", "未采用方设备", "lost by device"),
    _c("winner_person_id", "采用方", "won by"),
    _c("status", "状态", "status", labels=STATUS_LABELS),
    _c("resolved_at", "处理时间", "resolved at", "time"),
    _c("resolved_by", "处理人", "resolved by"),
)
AUDIT_TABLE = (
    _c("id", "编号", "id", "int"),
    _c("at", "时间", "at", "time"),
    _c("person_id", "人员", "person"),
    _c("device_id", "设备", "device"),
    _c("action", "动作", "action"),
    _c("target", "对象", "target"),
    _c("detail", "详情", "detail"),
)


@dataclass
class Sheet:
    name: str  # a key of KIND_TITLES
    columns: tuple[Column, ...]
    records: list[dict[str, Any]]


@dataclass
class RecordExport:
    """An export's content before it is written: its tables (the first is the CSV), and the
    JSON document (English keys)."""

    kind: str
    scope_id: str | None
    at: str
    sheets: list[Sheet]
    document: dict[str, Any]
    phones: str  # whose numbers were in full: "all", "none" or "by_role" (PhoneView.label)
    filters: dict[str, Any] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(len(s.records) for s in self.sheets)


# -- reading ------------------------------------------------------------------------------------


def _bounded(count: int, kind: str) -> None:
    if count > MAX_ROWS:
        raise Invalid(
            f"the {kind} export would hold {count} records, more than {MAX_ROWS}: narrow it "
            "with since/until or a scope (导出记录过多，请按时间或范围分批导出)",
            code="export_too_large",
        )


def _ms_range(column: str, since_ms: int | None, until_ms: int | None) -> tuple[str, list[Any]]:
    where, params = ["1"], []
    if since_ms is not None:
        where.append(f"{column} >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append(f"{column} < ?")
        params.append(until_ms)
    return " AND ".join(where), params


def _visits(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[Sheet]:
    grid_cond, grid_params = unit_grid_filter(db, scope, unit_id, "v.grid_id")
    time_cond, time_params = _ms_range("v.at_ms", since_ms, until_ms)
    where, params = f"{grid_cond} AND {time_cond}", [*grid_params, *time_params]
    _bounded(
        db.execute(f"SELECT count(*) FROM visits v WHERE {where}", params).fetchone()[0], "visits"
    )
    cols = ", ".join(f"v.{c}" for c in VISIT_COLUMNS)
    rows = db.execute(
        f"SELECT {cols}, v.grid_id, v.received_at, h.building, h.unit, h.room, h.head_name, "
        "h.phone, h.grid_id, h.responsible_member_id, p.name, v.group_size, "
        "CASE WHEN v.group_size > 1 THEN (SELECT json_group_array(l.household_id) "
        "FROM visit_households l WHERE l.visit_id = v.id) END FROM visits v "
        "LEFT JOIN households h ON h.id = v.household_id "
        "LEFT JOIN people p ON p.id = v.member_id "
        f"WHERE {where} ORDER BY v.at_ms, v.id",
        params,
    ).fetchall()
    records = []
    n = len(VISIT_COLUMNS)
    for r in rows:
        rec = dict(zip(VISIT_COLUMNS, r[:n]))
        grid, received, building, unit, room, head, phone, h_grid, responsible, name = r[n:-2]
        group_size, group = r[-2:]
        rec["kinds"] = msgspec.json.decode(rec["kinds"])
        rec["geo"] = msgspec.json.decode(rec["geo"]) if rec["geo"] else None
        rec["voided"] = bool(rec["voided"])
        rec.update(
            grid_id=grid,
            received_at=received,
            address="".join(x for x in (building, unit, room) if x),
            head_name=head or "",
            phone=shown_phone(scope.phones, phone or "", h_grid, responsible),
            member_name=name or "",
            responsible=responsible is not None and responsible == rec["member_id"],
            # a group visit (楼栋会): one record, a contact of each of its households
            group_contact=group_size > 1,
            group_households=",".join(sorted(msgspec.json.decode(group))) if group else "",
        )
        records.append(rec)
    return [Sheet("visits", VISIT_TABLE, records)]


def _cases(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[Sheet]:
    grids: set[str] | None = None
    if unit_id is not None:
        _, params = unit_grid_filter(db, scope, unit_id, "grid_id")
        grids = set(msgspec.json.decode(params[0]))
    total = whistle.list_cases(db, scope, limit=1).total
    _bounded(total, "cases")
    page = whistle.list_cases(db, scope, limit=max(total, 1))
    households = {
        r[0]: r[1:]
        for r in db.execute(
            "SELECT id, head_name, phone, grid_id, responsible_member_id FROM households "
            "WHERE id IN (SELECT value FROM json_each(?))",
            [
                msgspec.json.encode(
                    sorted({c.household_id for c in page.items if c.household_id})
                ).decode()
            ],
        )
    }
    cases: list[dict[str, Any]] = []
    timeline: list[dict[str, Any]] = []
    for case in reversed(page.items):  # oldest first, as the other exports
        received = parse_ms(case.received_at)
        if grids is not None and case.grid_id not in grids:
            continue
        if (since_ms is not None and received < since_ms) or (
            until_ms is not None and received >= until_ms
        ):
            continue
        head, phone, h_grid, responsible = households.get(
            case.household_id or "", ("", "", None, None)
        )
        shown = shown_phone(scope.phones, phone, h_grid, responsible)
        rec = msgspec.structs.asdict(case)
        d = case.deadlines
        rec.update(
            head_name=head,
            phone=shown,
            accept_due=d.accept,
            arrive_due=d.arrive,
            resolve_due=d.resolve,
            missed=list(d.missed),
            events=len(case.history),
        )
        cases.append(rec)
        for n, event in enumerate(case.history, start=1):
            timeline.append({"case_id": case.id, "n": n, **msgspec.structs.asdict(event)})
    return [Sheet("cases", CASE_TABLE, cases), Sheet("timeline", TIMELINE_TABLE, timeline)]


def _assignments(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[Sheet]:
    grid_cond, grid_params = unit_grid_filter(db, scope, unit_id, "h.grid_id")
    where, params = [grid_cond], list(grid_params)
    if since_ms is not None:
        where.append("a.at >= ?")
        params.append(iso_ms(since_ms))
    if until_ms is not None:
        where.append("a.at < ?")
        params.append(iso_ms(until_ms))
    sql_where = " AND ".join(where)
    joined = "assignment_log a JOIN households h ON h.id = a.household_id"
    _bounded(
        db.execute(f"SELECT count(*) FROM {joined} WHERE {sql_where}", params).fetchone()[0],
        "assignments",
    )
    keys = [c.key for c in ASSIGNMENT_TABLE]
    cols = [f"h.{k}" if k == "grid_id" else f"a.{k}" for k in keys]
    records = []
    for r in db.execute(
        f"SELECT {', '.join(cols)} FROM {joined} WHERE {sql_where} ORDER BY a.id", params
    ):
        rec = dict(zip(keys, r))
        rec["override_cap"] = bool(rec["override_cap"])
        records.append(rec)
    return [Sheet("assignments", ASSIGNMENT_TABLE, records)]


def _conflicts(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[Sheet]:
    grids: set[str] | None = None
    if unit_id is not None:
        _, params = unit_grid_filter(db, scope, unit_id, "grid_id")
        grids = set(msgspec.json.decode(params[0]))
    _, total = list_conflicts(db, scope, status=None, limit=1)
    _bounded(total, "conflicts")
    entries, _ = list_conflicts(db, scope, status=None, limit=max(total, 1))
    records = []
    for e in reversed(entries):  # oldest first
        created = parse_ms(e.created_at)
        if grids is not None and e.grid_id not in grids:
            continue
        if (since_ms is not None and created < since_ms) or (
            until_ms is not None and created >= until_ms
        ):
            continue
        records.append(msgspec.structs.asdict(e))
    return [Sheet("conflicts", CONFLICT_TABLE, records)]


def _audit(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> list[Sheet]:
    if not scope.everything:
        raise Forbidden("the audit log is the district's: only admins export it")
    first = audit.list_entries(db, since_ms=since_ms, until_ms=until_ms, limit=1)
    _bounded(first.total, "audit")
    page = audit.list_entries(db, since_ms=since_ms, until_ms=until_ms, limit=max(first.total, 1))
    return [Sheet("audit", AUDIT_TABLE, [msgspec.structs.asdict(e) for e in reversed(page.items)])]


READERS = {
    "visits": _visits,
    "cases": _cases,
    "assignments": _assignments,
    "conflicts": _conflicts,
    "audit": _audit,
}


def export_records(
    db: sqlite_utils.Database,
    kind: str,
    scope: Scope,
    unit_id: str | None = None,
    *,
    since_ms: int | None = None,
    until_ms: int | None = None,
    now_ms: int,
) -> RecordExport:
    """The records of ``kind`` a reader with ``scope`` may export (see the module's doc)."""
    if kind not in READERS:
        raise Invalid(f"unknown export {kind!r}; one of {', '.join(KINDS)}", field="kind")
    sheets = READERS[kind](db, scope, unit_id, since_ms, until_ms)
    document: dict[str, Any] = {
        "kind": kind,
        "scope_id": unit_id,
        "at": iso_ms(now_ms),
        "since": None if since_ms is None else iso_ms(since_ms),
        "until": None if until_ms is None else iso_ms(until_ms),
    }
    if kind == "cases":
        document["cases"] = [
            {
                k: v
                for k, v in rec.items()
                if k not in ("accept_due", "arrive_due", "resolve_due", "events", "missed")
            }
            for rec in sheets[0].records
        ]
    else:
        document[kind] = sheets[0].records
    return RecordExport(
        kind=kind,
        scope_id=unit_id,
        at=document["at"],
        sheets=sheets,
        document=document,
        phones=scope.phones.label,
        filters={"since": document["since"], "until": document["until"]},
    )


def record_export(
    db: sqlite_utils.Database,
    actor: Actor,
    fmt: str,
    data: RecordExport,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    audit.record(
        db,
        actor,
        f"export.{data.kind}",
        target=data.scope_id,
        detail={"format": fmt, "rows": data.total_rows, "phones": data.phones, **data.filters},
        clock=clock,
    )


# -- writing ------------------------------------------------------------------------------------


def _cell(column: Column, value: Any, lang: str) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        yes, no = YES_NO.get(lang, YES_NO["zh"])
        return yes if value else no
    if column.labels is not None:
        if isinstance(value, (list, tuple)):
            return "、".join(label(column.labels, lang, v) for v in value)
        return label(column.labels, lang, value)
    if isinstance(value, (list, tuple)):
        return "、".join(str(v) for v in value)
    if isinstance(value, dict):
        return msgspec.json.encode(value).decode()
    if column.kind == "text" and not isinstance(value, str):
        return msgspec.json.encode(value).decode()
    return value


def _rows(sheet: Sheet, lang: str) -> list[list[Any]]:
    return [[_cell(c, rec.get(c.key), lang) for c in sheet.columns] for rec in sheet.records]


def _title(sheet: Sheet, lang: str) -> str:
    zh, en = KIND_TITLES[sheet.name]
    return en if lang == "en" else zh


def render(
    data: RecordExport, fmt: str, lang: str = "zh", progress: Progress = exports._noop
) -> bytes:
    """The export as bytes in ``fmt``: CSV is the first table (the cases, without their
    timeline), XLSX one sheet per table, JSON the whole document."""
    if fmt not in exports.FORMATS:
        raise Invalid(
            f"unknown format {fmt!r}; one of {', '.join(exports.FORMATS)}", field="format"
        )
    if fmt == "json":
        body = msgspec.json.encode(data.document)
        progress(data.total_rows)
        return body
    if fmt == "csv":
        first = data.sheets[0]
        header = [c.en if lang == "en" else c.zh for c in first.columns]
        body = exports.table_csv(header, _rows(first, lang), progress)
        progress(data.total_rows - len(first.records))
        return body
    tables: list[exports.Table] = [
        (
            _title(s, lang),
            [c.en if lang == "en" else c.zh for c in s.columns],
            [c.kind for c in s.columns],
            _rows(s, lang),
        )
        for s in data.sheets
    ]
    return exports.tables_xlsx(tables, progress)

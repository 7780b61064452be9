"""The daily spreadsheet of hotline orders (`gridsync import orders FILE.xlsx|csv`).

The household import's machinery, not a copy of it: the file is read by
:func:`gridsync.importer.read_file` with the orders' columns (:data:`ORDER_FILE`), so the same
bounds, encodings, header rules (Chinese or English), row numbers and row errors apply. Each
row becomes the :class:`~gridsync.models.OrderCreate` the API takes (its bounds are the wire
type's) and is checked by the same rule as the API's (:func:`gridsync.hotline.check_order`).
Every bad row is reported with its number; if any row is bad nothing is written. Orders are
received by :func:`gridsync.hotline.receive_order`, idempotent by order number: a file imported
twice is one set of orders (the second import reports them all as already received).

The unit column takes the unit's id or its exact name (street, community, department or grid).
A receipt time without an offset is local time in ``timezone``; an Excel date cell is
read as such a time.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit, hotline
from gridsync.audit import Actor
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.importer import ImportRejected, Register, Sheet, cell_error, read_file
from gridsync.models import OrderCreate, RowError
from gridsync.notify.outbox import zone

ORDER_HEADERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "order_no": ("工单编号", ("工单编号", "工单号", "编号", "order_no", "order no", "order")),
    "type": ("类型", ("类型", "工单类型", "诉求类型", "type")),
    "caller_name": ("来电人", ("来电人", "来电人姓名", "诉求人", "caller_name", "caller")),
    "caller_phone": (
        "联系电话",
        ("联系电话", "来电号码", "电话", "手机", "caller_phone", "phone"),
    ),
    "address": ("地址", ("地址", "诉求地址", "事发地址", "address")),
    "description": ("诉求内容", ("诉求内容", "内容", "描述", "description")),
    "unit_id": ("承办单位", ("承办单位", "派单单位", "承办单位编号", "unit_id", "unit")),
    "received_at": ("受理时间", ("受理时间", "派单时间", "received_at", "received")),
}
ORDER_FILE = Register(ORDER_HEADERS, key="order_no", times=frozenset({"received_at"}))
REQUIRED = ("order_no", "type", "unit_id", "received_at")


class OrderPreview(msgspec.Struct, kw_only=True):
    """What an import of orders does (or would do): counts, and every bad row."""

    source: str
    rows: int
    new: int = 0
    existing: int = 0  # order numbers already received: their cases are left as they are
    ignored_columns: list[str] = msgspec.field(default_factory=list)
    errors: list[RowError] = msgspec.field(default_factory=list)


def read_orders(path: str, *, ignore_unknown_columns: bool = False) -> Sheet:
    return read_file(path, ignore_unknown_columns=ignore_unknown_columns, register=ORDER_FILE)


def _unit_id(db: sqlite_utils.Database, text: str) -> str:
    """The id of the unit a cell names (an id, else a unique exact name of a unit that may
    handle orders); the text itself when neither (the check then names it)."""
    if db.execute("SELECT 1 FROM org_units WHERE id = ?", [text]).fetchone():
        return text
    rows = db.execute(
        "SELECT id FROM org_units WHERE name = ? AND kind IN "
        "('street', 'community', 'department', 'grid')",
        [text],
    ).fetchall()
    return rows[0][0] if len(rows) == 1 else text


def _with_offset(text: str, tz: str) -> str:
    """A receipt time as ISO 8601 with an offset (local time in ``tz`` when it has none)."""
    try:
        dt = datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        return text  # the wire type's check names it
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone(tz))
    return dt.isoformat()


def _field_of(message: str) -> str | None:
    marker = "`$."
    if marker not in message:
        return None
    name = message.split(marker, 1)[1].split("`", 1)[0].split(".", 1)[0].split("[", 1)[0]
    return name if name in ORDER_HEADERS else None


def plan_orders(
    db: sqlite_utils.Database, sheet: Sheet, settings: Settings
) -> tuple[OrderPreview, list[OrderCreate]]:
    """Validate every row; the preview and the new orders, in row order. Writes nothing."""
    rows = len(sheet.rows) + len({e.row for e in sheet.errors})
    preview = OrderPreview(source=sheet.source, rows=rows, ignored_columns=sheet.ignored)
    errors = preview.errors
    errors.extend(sheet.errors)
    first_row: dict[str, int] = {}
    new: list[OrderCreate] = []
    for number, raw in sheet.rows:
        bad = partial(cell_error, errors, number, register=ORDER_FILE)
        before = len(errors)
        for name in REQUIRED:
            if not raw.get(name):
                bad(name, "missing_field", f"{ORDER_HEADERS[name][0]}不能为空")
        order_no = raw.get("order_no", "")
        if order_no in first_row:
            bad(
                "order_no",
                "duplicate_order_no",
                f"工单编号“{order_no}”与第{first_row[order_no]}行重复",
            )
        elif order_no:
            first_row[order_no] = number
        if len(errors) > before:
            continue
        values: dict[str, Any] = {k: v for k, v in raw.items() if v}
        values["unit_id"] = _unit_id(db, values["unit_id"])
        values["received_at"] = _with_offset(values["received_at"], settings.timezone)
        try:
            data = msgspec.convert(values, OrderCreate)
        except msgspec.ValidationError as exc:
            field = _field_of(str(exc)) or "order_no"
            bad(field, "invalid_value", f"“{str(values.get(field, ''))[:40]}”无效（{exc}）")
            continue
        if hotline.order_case_id(db, data.order_no) is not None:
            preview.existing += 1
            continue
        problems = hotline.check_order(db, data, None)
        for field, code, message in problems:
            bad(field, code, message)
        if not problems:
            new.append(data)
    preview.new = len(new)
    errors.sort(key=lambda e: (e.row, list(ORDER_HEADERS).index(e.column) if e.column else -1))
    return preview, new


def preview_orders(db: sqlite_utils.Database, sheet: Sheet, settings: Settings) -> OrderPreview:
    """Dry run: the counts and errors an import of ``sheet`` would have."""
    return plan_orders(db, sheet, settings)[0]


def import_orders(
    db: sqlite_utils.Database, sheet: Sheet, actor: Actor, clock: Clock, settings: Settings
) -> OrderPreview:
    """Receive the file's new orders in the caller's write transaction; raises
    :class:`ImportRejected` (and writes nothing) when any row is bad."""
    preview, new = plan_orders(db, sheet, settings)
    if preview.errors:
        raise ImportRejected(
            f"{sheet.source}: {len({e.row for e in preview.errors})} 行有错误，未写入任何数据",
            errors=[msgspec.structs.asdict(e) for e in preview.errors],
        )
    now_ms = clock.now_ms()
    for data in new:
        hotline.receive_order(db, None, data, now_ms=now_ms, settings=settings, actor=actor)
    audit.record(
        db,
        actor,
        "hotline.import",
        target=sheet.source,
        detail={"rows": preview.rows, "new": preview.new, "existing": preview.existing},
        clock=clock,
    )
    return preview

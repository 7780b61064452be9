"""Hotline orders (12345, 接诉即办), their callbacks (回访) and the three rates, and supervision
(督办).

An order is a whistle case with ``source = 'hotline'`` (``gridsync/whistle.py`` owns the case:
its state machine, its stays at each level and their deadlines, the sweep's escalation at a
missed deadline) plus a ``hotline_orders`` row: the city's order number, its type, the caller,
the address, the unit it was dispatched to. Its deadlines count in working time
(``gridsync/workdays.py``): accepting the order is the first contact with the caller.

- :func:`receive_order` is idempotent by ``order_no``: the same number answers the same case
  (the case id is derived from the number, so two deliveries of one order cannot make two
  cases even when they race). Every new order alerts the unit it is dispatched to and the
  district's supervisors.
- :func:`record_callback`: a callback by someone who took no step of the order's handling
  (``callback_by_handler`` otherwise); the caller's verdict.
- :func:`hotline_report`: response, resolution and satisfaction rates **only** from callbacks
  (each order's latest callback that reached the caller); an order without one is ``unrated``,
  never counted as 100%. :func:`_rates` is the one place the rates are computed.
- :func:`supervise`: a supervisor marks a case supervised with a note and a new due time; the
  unit holding it is alerted at once; :func:`supervised_report` says whether each met it.

``tests/test_hotline.py`` checks each of these on a real database.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit, privacy, whistle
from gridsync.audit import Actor
from gridsync.auth import Principal
from gridsync.clock import device_time_ms, iso_ms
from gridsync.config import Settings
from gridsync.errors import Conflict, Forbidden, Invalid, NotFound, OutOfScope
from gridsync.models import (
    ORDER_TYPE_NAMES,
    ORDER_TYPES,
    CallbackCreate,
    CasePage,
    ForwardRequest,
    HotlineReport,
    HotlineRow,
    OrderCreate,
    SupervisedReport,
    SupervisedRow,
    SuperviseRequest,
    WhistleCase,
)
from gridsync.notify import outbox
from gridsync.notify.routing import Router, router_for
from gridsync.org import Scope
from gridsync.privacy import PhoneView

# Who may post orders: an admin, or the platform's own credential (role ``hotline``).
ORDER_ROLES = ("admin", "hotline")
# Who may call a caller back (and must not have handled the order).
CALLBACK_ROLES = ("admin", "hotline", "supervisor", "street", "community_secretary")
REPORT_ROLES = ("admin", "hotline", "supervisor", "street", "community_secretary", "department")
SUPERVISE_ROLES = ("admin", "supervisor")
# Unit kinds an order may be dispatched to, and the level it then starts at.
DISPATCH_LEVELS = {
    "street": "street",
    "community": "community",
    "department": "department",
    "grid": "grid",
}
TYPE_LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {v: k for k, v in ORDER_TYPE_NAMES.items()},
    "en": {t: t for t in ORDER_TYPES},
}
OPEN_STATES = whistle.OPEN_STATES


def order_type(value: str) -> str:
    """The English name of an order type given in English or in the platform's Chinese."""
    return ORDER_TYPE_NAMES.get(value, value)


def case_id_for(order_no: str) -> str:
    """The case id of an order: derived from its number, so the number is the order."""
    return "hl-" + hashlib.sha256(order_no.encode()).hexdigest()[:24]


def _router(settings: Settings, router: Router | None) -> Router:
    return router or router_for(settings.notify.apprise_config, settings.notify.locale)


def _unit(db: sqlite_utils.Database, unit_id: str) -> tuple[str, str, str | None] | None:
    return db.execute(
        "SELECT kind, name, parent_id FROM org_units WHERE id = ?", [unit_id]
    ).fetchone()


# -- receiving ----------------------------------------------------------------------------------


def order_case_id(db: sqlite_utils.Database, order_no: str) -> str | None:
    row = db.execute("SELECT case_id FROM hotline_orders WHERE order_no = ?", [order_no]).fetchone()
    return row[0] if row else None


def check_order(
    db: sqlite_utils.Database, data: OrderCreate, scope: Scope | None
) -> list[tuple[str, str, str]]:
    """The problems of an order, as (field, code, message): the unit (it exists and is a
    street, community, department or grid: ``invalid_unit``; it is in ``scope``:
    ``out_of_scope``), the receipt time (``invalid_time``). One rule for the API and the
    spreadsheet import."""
    problems: list[tuple[str, str, str]] = []
    unit = _unit(db, data.unit_id)
    if unit is None:
        problems.append(("unit_id", "invalid_unit", f"没有单位“{data.unit_id}”"))
    elif unit[0] not in DISPATCH_LEVELS:
        problems.append(
            (
                "unit_id",
                "invalid_unit",
                f"“{data.unit_id}”是{unit[0]}，不能承办工单（应为街道、社区、部门或网格）",
            )
        )
    elif scope is not None and not scope.allows_unit(data.unit_id):
        problems.append(("unit_id", "out_of_scope", f"单位“{data.unit_id}”不在你的范围内"))
    try:
        device_time_ms(data.received_at)
    except ValueError as exc:
        problems.append(("received_at", "invalid_time", f"受理时间无效：{exc}"))
    return problems


def receive_order(
    db: sqlite_utils.Database,
    principal: Principal | None,
    data: OrderCreate,
    *,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
    actor: Actor | None = None,
) -> tuple[WhistleCase, bool]:
    """The case of an order and whether it is new. An order number already received answers
    its case unchanged (the platform resends; the spreadsheet is imported twice).
    ``principal`` None: the CLI's import (``actor``), which may dispatch anywhere."""
    viewer = principal.scope if principal is not None else None
    existing = order_case_id(db, data.order_no)
    if existing is not None:
        return whistle.get_case(db, existing, viewer=viewer), False
    problems = check_order(db, data, viewer)
    if problems:
        field, code, message = problems[0]
        if code == "out_of_scope":
            raise OutOfScope(message, field=field)
        raise Invalid(message, code=code, field=field)
    _insert_order(
        db, principal.actor if principal else (actor or Actor.cli()), data, now_ms, settings, router
    )
    return whistle.get_case(db, case_id_for(data.order_no), viewer=viewer), True


def _insert_order(
    db: sqlite_utils.Database,
    actor: Actor,
    data: OrderCreate,
    now_ms: int,
    settings: Settings,
    router: Router | None,
) -> str:
    unit = _unit(db, data.unit_id)
    assert unit is not None
    level = DISPATCH_LEVELS[unit[0]]
    community = data.unit_id if level == "community" else (unit[2] if level == "grid" else None)
    kind = order_type(data.type)
    case_id = case_id_for(data.order_no)
    platform_ms = device_time_ms(data.received_at)
    whistle.open_case(
        db,
        case_id=case_id,
        source="hotline",
        household_id=None,
        # an order not at a grid keeps the unit it was dispatched to (the column is NOT NULL)
        grid_id=data.unit_id,
        level=level,
        unit_id=data.unit_id,
        location=data.address,
        category=TYPE_LABELS["zh-CN"][kind],
        description=data.description,
        actor=actor,
        raised_at=data.received_at,
        # the whistle report's offline figures are the phones'; the platform's receipt is
        # hotline_orders.received_ms
        raised_ms=now_ms,
        received_ms=now_ms,
        settings=settings,
        raised_by=actor.person_id or "12345",  # the CLI's import: the platform's spreadsheet
    )
    db.execute(
        "INSERT INTO hotline_orders (case_id, order_no, type, caller_name, caller_phone, "
        "address, dispatched_level, dispatched_unit, community_id, received_ms) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            case_id,
            data.order_no,
            kind,
            data.caller_name,
            data.caller_phone,
            data.address,
            level,
            data.unit_id,
            community,
            platform_ms,
        ],
    )
    outbox.enqueue(
        db,
        _router(settings, router),
        event_key=f"hotline:{case_id}:new",
        kind="hotline_new",
        tags=whistle.level_tags(level, data.unit_id)
        + whistle.district_supervisor_tags(db, data.unit_id),
        context=whistle.case_context(
            db,
            case_id,
            settings,
            order_no=data.order_no,
            type_name=lambda labels: labels["order_type"][kind],
        ),
        now_ms=now_ms,
        cause=case_id,
        exclude=actor.person_id,
    )
    audit.record(
        db,
        actor,
        "hotline.order",
        target=case_id,
        detail={"order_no": data.order_no, "unit_id": data.unit_id, "type": kind},
    )
    return case_id


def open_orders(
    db: sqlite_utils.Database, scope: Scope, *, limit: int = 100, offset: int = 0
) -> CasePage:
    """Open orders the scope sees, the next deadline first (the supervisors' list)."""
    return whistle.list_cases(
        db, scope, open_only=True, source="hotline", by_deadline=True, limit=limit, offset=offset
    )


def forward_order(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: ForwardRequest,
    *,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
) -> WhistleCase:
    """The unit holding an open order hands it down (a street to one of its communities or
    grids, a community to one of its grids: "the grid when the street forwards it"), with the
    same deadlines (:func:`whistle.hand_down`). Refused: not the holder (``not_responsible``),
    not open (``illegal_transition``), a unit that is not a community or grid below the holder
    (``invalid_unit``)."""
    case = whistle.case_row(db, case_id, principal.scope)
    if case.source != "hotline":
        raise Conflict(f"case {case_id} is not a hotline order", code="not_an_order")
    if not whistle.responsible(case, principal.scope):
        raise Forbidden(
            f"the order is with {case.unit_id} ({case.level} level); you cannot forward it",
            code="not_responsible",
        )
    if case.state not in ("raised", "accepted", "reopened"):
        raise Conflict(
            f"cannot forward an order that is {case.state}",
            code="illegal_transition",
            state=case.state,
            action="forward",
        )
    unit = _unit(db, data.unit_id)
    if (
        unit is None
        or unit[0] not in ("community", "grid")
        or not whistle.is_below(db, data.unit_id, case.unit_id)
    ):
        raise Invalid(
            f"{data.unit_id} is not a community or grid below {case.unit_id}",
            code="invalid_unit",
            field="unit_id",
        )
    whistle.hand_down(
        db,
        principal,
        case,
        unit[0],
        data.unit_id,
        note=data.note,
        now_ms=now_ms,
        settings=settings,
        router=router,
    )
    community = data.unit_id if unit[0] == "community" else unit[2]
    db.execute("UPDATE hotline_orders SET community_id = ? WHERE case_id = ?", [community, case_id])
    return whistle.get_case(db, case_id, viewer=principal.scope)


# -- callbacks ----------------------------------------------------------------------------------


def record_callback(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: CallbackCreate,
    *,
    now_ms: int,
) -> WhistleCase:
    """Record a callback (回访) of a resolved order. Refused: a case that is no order
    (``not_an_order``), one not resolved yet (``not_resolved``), a caller who handled it
    (``callback_by_handler``, 403), a verdict missing or given without reaching the caller."""
    principal.require_role(*CALLBACK_ROLES)
    case = whistle.case_row(db, case_id, principal.scope)
    if case.source != "hotline":
        raise Conflict(f"case {case_id} is not a hotline order", code="not_an_order")
    if case.state not in ("resolved", "closed"):
        raise Conflict(
            f"order {case_id} is {case.state}: the caller is called back after it is resolved",
            code="not_resolved",
        )
    if principal.person_id in whistle.handlers(db, case_id):
        raise Forbidden(
            "you handled this order: the callback is made by someone who did not",
            code="callback_by_handler",
        )
    verdict = (data.contacted, data.resolved, data.satisfied)
    if data.reached and None in verdict:
        raise Invalid(
            "a callback that reached the caller records their verdict: contacted, resolved "
            "and satisfied",
            code="verdict_missing",
            field="contacted"
            if data.contacted is None
            else "resolved"
            if data.resolved is None
            else "satisfied",
        )
    if not data.reached and any(v is not None for v in verdict):
        raise Invalid(
            "a callback that did not reach the caller has no verdict", code="verdict_without_caller"
        )
    db.execute(
        "INSERT INTO hotline_callbacks (case_id, by, at_ms, reached, contacted, resolved, "
        "satisfied, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, principal.person_id, now_ms, int(data.reached), *verdict, data.note],
    )
    whistle.record_event(db, case_id, "callback", principal.actor, now_ms, data.note[:200])
    audit.record(
        db,
        principal.actor,
        "hotline.callback",
        target=case_id,
        detail={"reached": data.reached, "resolved": data.resolved, "satisfied": data.satisfied},
    )
    return whistle.get_case(db, case_id, principal.scope)


# -- the report ---------------------------------------------------------------------------------


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def _rates(unit_id: str | None, unit_name: str, kind: str, v: list[int]) -> HotlineRow:
    """THE rates: over the orders whose latest callback reached the caller (``rated``)."""
    orders, rated, contacted, resolved, satisfied = v
    return HotlineRow(
        unit_id=unit_id,
        unit_name=unit_name,
        type=kind,
        orders=orders,
        rated=rated,
        unrated=orders - rated,
        contacted=contacted,
        resolved=resolved,
        satisfied=satisfied,
        response_rate=_rate(contacted, rated),
        resolution_rate=_rate(resolved, rated),
        satisfaction_rate=_rate(satisfied, rated),
    )


def _subtree_sql(unit_id: str) -> tuple[str, list[Any]]:
    return (
        "(WITH RECURSIVE t(id) AS (SELECT ? UNION SELECT u.id FROM org_units u JOIN t "
        "ON u.parent_id = t.id) SELECT id FROM t)",
        [unit_id],
    )


def _order_filter(
    db: sqlite_utils.Database,
    scope: Scope,
    unit: str | None,
    since_ms: int | None,
    until_ms: int | None,
) -> tuple[str, list[Any]]:
    """Orders (``o``, their case ``c``) the scope sees, dispatched within ``unit``, received
    by the platform in [since, until)."""
    cond, params = whistle.visibility_sql(scope, "c")
    where = [cond]
    if unit is not None:
        if _unit(db, unit) is None or not scope.allows_unit(unit):
            raise NotFound(f"no org unit {unit}", field="scope")
        sub, sub_params = _subtree_sql(unit)
        where.append(f"o.dispatched_unit IN {sub}")
        params += sub_params
    if since_ms is not None:
        where.append("o.received_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append("o.received_ms < ?")
        params.append(until_ms)
    return " AND ".join(where), params


def hotline_report(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    now_ms: int,
    unit: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> HotlineReport:
    """The three rates per dispatched unit and type, then per unit (type ``all``), per type
    (every unit) and in all; from callbacks only (see :func:`_rates`)."""
    where, params = _order_filter(db, scope, unit, since_ms, until_ms)
    figures = db.execute(
        f"""
        SELECT o.dispatched_unit, o.type, count(*),
          sum(coalesce(cb.reached, 0)),
          sum(coalesce(cb.reached AND cb.contacted, 0)),
          sum(coalesce(cb.reached AND cb.resolved, 0)),
          sum(coalesce(cb.reached AND cb.satisfied, 0))
        FROM hotline_orders o JOIN whistle_cases c ON c.id = o.case_id
        LEFT JOIN (SELECT case_id, max(id) AS id FROM hotline_callbacks GROUP BY case_id) last
          ON last.case_id = o.case_id
        LEFT JOIN hotline_callbacks cb ON cb.id = last.id
        WHERE {where}
        GROUP BY o.dispatched_unit, o.type ORDER BY o.dispatched_unit, o.type
        """,
        params,
    ).fetchall()
    names = {
        r[0]: r[1]
        for r in db.execute(
            "SELECT id, name FROM org_units WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(sorted({f[0] for f in figures})).decode()],
        )
    }
    rows: list[HotlineRow] = []
    per_unit: dict[str, list[int]] = {}
    per_type: dict[str, list[int]] = {}
    total = [0] * 5
    for unit_id, kind, *values in figures:
        v = [int(x or 0) for x in values]
        rows.append(_rates(unit_id, names.get(unit_id, unit_id), kind, v))
        for acc in (
            per_unit.setdefault(unit_id, [0] * 5),
            per_type.setdefault(kind, [0] * 5),
            total,
        ):
            for i, x in enumerate(v):
                acc[i] += x
    for unit_id, v in per_unit.items():
        rows.append(_rates(unit_id, names.get(unit_id, unit_id), "all", v))
    for kind in ORDER_TYPES:
        if kind in per_type:
            rows.append(_rates(None, "", kind, per_type[kind]))
    rows.append(_rates(None, "", "all", total))
    return HotlineReport(
        generated_at=iso_ms(now_ms),
        scope=unit,
        since=iso_ms(since_ms) if since_ms is not None else None,
        until=iso_ms(until_ms) if until_ms is not None else None,
        rows=rows,
    )


# -- supervision --------------------------------------------------------------------------------


def supervise(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: SuperviseRequest,
    *,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
) -> WhistleCase:
    """Mark a case (an order or a whistle case) supervised (督办) with a note and a new due
    time; the unit holding it (its secretary, its duty people; a grid's team and its
    community's secretary) is alerted at once, quiet hours or not."""
    principal.require_role(*SUPERVISE_ROLES)
    case = whistle.case_row(db, case_id, principal.scope)
    if case.state in ("resolved", "closed"):
        raise Conflict(
            f"case {case_id} is {case.state}: nothing to supervise", code="case_not_open"
        )
    try:
        due_ms = device_time_ms(data.due_at)
    except ValueError as exc:
        raise Invalid(f"due_at: {exc}", code="invalid_time", field="due_at") from None
    if due_ms <= now_ms:
        raise Invalid("due_at must be in the future", code="due_in_past", field="due_at")
    cursor = db.execute(
        "INSERT INTO supervisions (case_id, by, at_ms, note, due_ms, level, unit_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [case_id, principal.person_id, now_ms, data.note, due_ms, case.level, case.unit_id],
    )
    whistle.record_event(db, case_id, "supervise", principal.actor, now_ms, data.note[:200])
    tags = whistle.level_tags(case.level, case.unit_id)
    if case.level == "grid":
        parent = _unit(db, case.unit_id)
        if parent is not None and parent[2]:
            tags.append(f"community:{parent[2]}:secretary")
    tz = settings.timezone
    outbox.enqueue(
        db,
        _router(settings, router),
        event_key=f"supervise:{case_id}:{cursor.lastrowid}",
        kind="case_supervised",
        tags=tags,
        context=whistle.case_context(
            db,
            case_id,
            settings,
            note=data.note,
            due_local=outbox.local(due_ms, tz),
            supervisor_name=_person_name(db, principal.person_id),
        ),
        now_ms=now_ms,
        cause=case_id,
        exclude=principal.person_id,
    )
    audit.record(
        db, principal.actor, "case.supervise", target=case_id, detail={"due_at": iso_ms(due_ms)}
    )
    return whistle.get_case(db, case_id, principal.scope)


def _person_name(db: sqlite_utils.Database, person_id: str) -> str:
    row = db.execute("SELECT name FROM people WHERE id = ?", [person_id]).fetchone()
    return row[0] if row else person_id


def supervised_report(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    now_ms: int,
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> SupervisedReport:
    """Every supervision of a case the scope sees (made in [since, until)), newest first, and
    whether it was met: resolved (the first resolution after it) by the due time; missed once
    resolved later or still unresolved past it; pending otherwise."""
    cond, params = whistle.visibility_sql(scope, "c")
    where = [cond]
    if since_ms is not None:
        where.append("s.at_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append("s.at_ms < ?")
        params.append(until_ms)
    rows = db.execute(
        f"""
        SELECT s.case_id, c.source, o.order_no, s.level, s.unit_id, u.name, s.by, s.at_ms,
          s.note, s.due_ms,
          (SELECT min(h.at_ms) FROM whistle_history h WHERE h.case_id = s.case_id
           AND h.action = 'resolve' AND h.at_ms >= s.at_ms)
        FROM supervisions s JOIN whistle_cases c ON c.id = s.case_id
        LEFT JOIN hotline_orders o ON o.case_id = s.case_id
        LEFT JOIN org_units u ON u.id = s.unit_id
        WHERE {" AND ".join(where)}
        ORDER BY s.at_ms DESC, s.id DESC
        """,
        params,
    ).fetchall()
    out = []
    for r in rows:
        resolved, due = r[10], r[9]
        met = whistle.supervision_met(resolved, due, now_ms)
        out.append(
            SupervisedRow(
                case_id=r[0],
                source=r[1],
                order_no=r[2],
                level=r[3],
                unit_id=r[4],
                unit_name=r[5] or r[4],
                supervised_by=r[6],
                supervised_at=iso_ms(r[7]),
                note=r[8],
                due_at=iso_ms(due),
                resolved_at=iso_ms(resolved) if resolved is not None else None,
                met=met,
            )
        )
    return SupervisedReport(
        generated_at=iso_ms(now_ms),
        rows=out,
        supervised=len(out),
        met=sum(1 for r in out if r.met is True),
        missed=sum(1 for r in out if r.met is False),
        pending=sum(1 for r in out if r.met is None),
    )


# -- the export of orders and their timelines ---------------------------------------------------

ORDER_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # key, Chinese header, English header
    ("order_no", "工单编号", "order no"),
    ("type", "类型", "type"),
    ("received_at", "受理时间", "received at"),
    ("dispatched_unit", "派单单位", "dispatched to"),
    ("unit", "现承办单位", "handled by"),
    ("state", "状态", "state"),
    ("caller_name", "来电人", "caller"),
    ("caller_phone", "联系电话", "phone"),
    ("address", "地址", "address"),
    ("description", "诉求内容", "description"),
    ("contacted_at", "首次联系", "first contact"),
    ("contact_due", "联系时限", "contact due"),
    ("resolved_at", "办结时间", "resolved at"),
    ("resolve_due", "办结时限", "resolve due"),
    ("callback", "回访结果", "callback"),
    ("supervised", "督办", "supervised"),
    ("timeline", "办理过程", "timeline"),
)


@dataclass
class OrderExport:
    header: list[str]
    rows: list[list[Any]]


def order_rows(
    db: sqlite_utils.Database,
    scope: Scope,
    view: PhoneView,
    *,
    lang: str = "zh-CN",
    tz: str = "Asia/Shanghai",
    since_ms: int | None = None,
    until_ms: int | None = None,
) -> OrderExport:
    """Orders and their timelines for the city platform (CSV/XLSX, ``gridsync export
    orders``): one row per order, the history as one text cell. Callers are masked unless
    ``view`` reads them in full (the CLI: ``--show-phones``)."""
    where, params = _order_filter(db, scope, None, since_ms, until_ms)
    en = lang == "en"
    labels = outbox.labels(lang)
    fmt = "%Y-%m-%d %H:%M"
    rows: list[list[Any]] = []
    for r in db.execute(
        f"""
        SELECT o.case_id, o.order_no, o.type, o.received_ms, o.dispatched_unit, c.unit_id, c.state,
          o.caller_name, o.caller_phone, o.address, c.description, o.community_id, c.level,
          (SELECT min(s.accepted_ms) FROM whistle_stints s WHERE s.case_id = c.id),
          (SELECT s.accept_due_ms FROM whistle_stints s WHERE s.id = c.stint_id),
          (SELECT max(s.resolved_ms) FROM whistle_stints s WHERE s.case_id = c.id),
          (SELECT s.resolve_due_ms FROM whistle_stints s WHERE s.id = c.stint_id),
          (SELECT json_array(reached, contacted, resolved, satisfied) FROM hotline_callbacks x
           WHERE x.case_id = c.id ORDER BY id DESC LIMIT 1),
          (SELECT count(*) FROM supervisions v WHERE v.case_id = c.id),
          uo.name, uc.name
        FROM hotline_orders o JOIN whistle_cases c ON c.id = o.case_id
        LEFT JOIN org_units uo ON uo.id = o.dispatched_unit
        LEFT JOIN org_units uc ON uc.id = c.unit_id
        WHERE {where} ORDER BY o.received_ms, o.order_no
        """,
        params,
    ).fetchall():
        full = privacy.sees_caller(
            view,
            grid_id=r[5] if r[12] == "grid" else None,
            community_id=r[11],
            held_at=None,
        )
        timeline = "；".join(
            f"{outbox.local(h[0], tz, fmt)} {h[1]}{(' ' + h[2]) if h[2] else ''}"
            f"{('：' + h[3]) if h[3] else ''}"
            for h in db.execute(
                "SELECT h.at_ms, h.action, p.name, h.note FROM whistle_history h "
                "LEFT JOIN people p ON p.id = h.by WHERE h.case_id = ? ORDER BY h.n",
                [r[0]],
            )
        )
        rows.append(
            [
                r[1],
                TYPE_LABELS["en" if en else "zh-CN"][r[2]],
                outbox.local(r[3], tz, fmt),
                r[19] or r[4],
                r[20] or r[5],
                labels["state"].get(r[6], r[6]),
                r[7] if full else privacy.mask_name(r[7]),
                r[8] if full else privacy.mask_phone(r[8]),
                r[9],
                r[10],
                outbox.local(r[13], tz, fmt),
                outbox.local(r[14], tz, fmt),
                outbox.local(r[15], tz, fmt),
                outbox.local(r[16], tz, fmt),
                _callback_text(r[17], en),
                r[18] > 0,
                timeline,
            ]
        )
    header = [c[2] if en else c[1] for c in ORDER_COLUMNS]
    return OrderExport(header, rows)


def record_order_export(
    db: sqlite_utils.Database, actor: Actor, fmt: str, rows: int, full: bool
) -> None:
    """An export of orders is audited (callers in full or masked)."""
    audit.record(
        db,
        actor,
        "hotline.export",
        target=fmt,
        detail={"orders": rows, "phones": "all" if full else "masked"},
    )


def _callback_text(value: str | None, en: bool) -> str:
    if value is None:
        return "not yet" if en else "未回访"
    reached, contacted, resolved, satisfied = msgspec.json.decode(value)
    if not reached:
        return "not reached" if en else "未联系上"
    yes_no = ("no", "yes") if en else ("否", "是")
    parts = (("contacted", "响应"), ("resolved", "解决"), ("satisfied", "满意"))
    return " ".join(
        f"{p[0] if en else p[1]}:{yes_no[int(bool(v))]}"
        for p, v in zip(parts, (contacted, resolved, satisfied))
    )

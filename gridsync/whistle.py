"""Whistle cases (吹哨报到): raising, the action state machine, levels and deadlines, backflow,
the cases a scope sees changed (for the pull source in ``gridsync/sync/whistle.py``), and the
report.

A case climbs grid -> community -> street -> department -> district. Each stay at a level is a
*stint* (``whistle_stints``) with its own accept / arrive / resolve deadlines, counted from the
moment the case reached that level on the **server's** clock (a case raised offline starts its
clock at receipt; the device's ``raised_at`` is kept and reported beside ``received_at``).
A missed deadline escalates the case one level (``check_deadlines``, run by the sweep) and alerts
the next level and its supervisor. A case sent back down (``return``) is backflow (案件回流).

Every change allocates a change sequence number (phones receive cases through pull) and writes
its notifications to the outbox in the same transaction.

A case's history is bounded (:data:`MAX_CASE_COMMENTS` and what follows it): every phone of the
grid pulls an open case whole. The actions that move a case are never refused for that bound;
comments are, and the state machine's two loops (reopen, return) are capped.
``tests/test_whistle_bounds.py`` checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

import msgspec
import sqlite_utils

from gridsync import audit, privacy
from gridsync.audit import Actor
from gridsync.auth import Principal
from gridsync.clock import device_time_ms, iso_ms, parse_ms
from gridsync.config import Settings, deep_link
from gridsync.db import and_given, next_seq, paged
from gridsync.errors import Conflict, Forbidden, GridsyncError, Invalid, NotFound, OutOfScope
from gridsync.models import (
    CASE_LEVELS,
    CallbackInfo,
    CaseAction,
    CaseEvent,
    CaseLevel,
    CasePage,
    CaseState,
    Deadlines,
    OrderInfo,
    ReportRow,
    SupervisionInfo,
    WhistleAct,
    WhistleCase,
    WhistleRaise,
    WhistleReport,
)
from gridsync.notify import outbox
from gridsync.notify.routing import Router, router_for
from gridsync.org import Scope
from gridsync.workdays import working_deadline

OPEN_STATES = ("raised", "accepted", "on_site", "reopened")
CLOSED_VISIBLE_DAYS = 30  # pull sends closed cases for this long (SPEC 3.2)

# The bound of a case's history (issue 12). Every phone of the grid pulls an open case whole,
# history and all, and every action on it is a write under the one write lock: 3,000 comments
# made one case 6.4 MB. Comments are bounded in number and in the bytes of their notes, and
# may not take the last CASE_NOTE_RESERVE of the budget: that room is kept for the notes of the
# actions that move a case, which this bound never refuses (past the whole budget such an action
# applies without its note, ``ignored``). Actions that move a case are bounded by the state
# machine itself (each stay at a level takes accept, arrive, resolve and close once; the
# sweep's escalations stop at the district), except its two loops, reopen and return, which
# are capped. The worst case a phone pulls is then about 240 KB of JSON (README, "Whistle cases").
MAX_CASE_COMMENTS = 100
# Bytes of people's notes (raise, actions, comments) as a case's JSON carries them (UTF-8, with
# JSON's escapes: a control character takes six bytes there), :func:`note_size`.
MAX_CASE_NOTE_BYTES = 64 * 1024
CASE_NOTE_RESERVE = 16 * 1024  # of those, never taken by comments
MAX_CASE_REOPENS = 10  # then raise a new case
MAX_CASE_RETURNS = 10  # sent back down (backflow) at most this often
HOUR_MS = 3_600_000


# -- rows ---------------------------------------------------------------------------------------

_CASE_COLS = (
    "id, household_id, grid_id, location, category, description, raised_by, "
    "raised_device, raised_at, raised_ms, received_ms, level, unit_id, department_id, "
    "state, accepted_by, satisfaction, closed_ms, stint_id, seq, comments, note_bytes, source"
)
_STINT_COLS = (
    "id, case_id, level, unit_id, started_ms, accept_due_ms, arrive_due_ms, "
    "resolve_due_ms, accepted_ms, arrived_ms, resolved_ms, ended_ms, end_reason, "
    "missed, warned"
)
_list = msgspec.json.Decoder(list[str])
_json = msgspec.json.Encoder()


def note_size(note: str) -> int:
    """The bytes a note takes in a case's JSON (what :data:`MAX_CASE_NOTE_BYTES` counts): its
    UTF-8 with JSON's escapes, as SQLite's ``json_quote`` writes them too (migration 0015)."""
    return len(_json.encode(note)) - 2


@dataclass
class CaseRow:
    id: str
    household_id: str | None
    grid_id: str
    location: str
    category: str
    description: str
    raised_by: str
    raised_device: str | None
    raised_at: str
    raised_ms: int
    received_ms: int
    level: CaseLevel
    unit_id: str
    department_id: str | None
    state: CaseState
    accepted_by: str | None
    satisfaction: int | None
    closed_ms: int | None
    stint_id: int
    seq: int
    comments: int  # comments in the history (:data:`MAX_CASE_COMMENTS`)
    note_bytes: int  # bytes of people's notes in the history (:func:`note_size`)
    source: str  # "whistle" (raised by a phone or the web) or "hotline" (a 12345 order)


@dataclass
class Stint:
    id: int
    case_id: str
    level: CaseLevel
    unit_id: str
    started_ms: int
    accept_due_ms: int
    arrive_due_ms: int
    resolve_due_ms: int
    accepted_ms: int | None
    arrived_ms: int | None
    resolved_ms: int | None
    ended_ms: int | None
    end_reason: str | None
    missed: str
    warned: str

    def due(self, kind: str) -> int:
        return getattr(self, f"{kind}_due_ms")

    def done(self, kind: str) -> int | None:
        return {"accept": self.accepted_ms, "arrive": self.arrived_ms, "resolve": self.resolved_ms}[
            kind
        ]


def _load_case(db: sqlite_utils.Database, case_id: str) -> CaseRow | None:
    row = db.execute(f"SELECT {_CASE_COLS} FROM whistle_cases WHERE id = ?", [case_id]).fetchone()
    return CaseRow(*row) if row else None


def _load_stint(db: sqlite_utils.Database, stint_id: int) -> Stint:
    return Stint(
        *db.execute(f"SELECT {_STINT_COLS} FROM whistle_stints WHERE id = ?", [stint_id]).fetchone()
    )


def get_case(
    db: sqlite_utils.Database,
    case_id: str,
    scope: Scope | None = None,
    *,
    viewer: Scope | None = None,
) -> WhistleCase:
    """The wire form of a case; with ``scope``, one the scope cannot see is not found. The
    caller of an order is read as ``scope`` (or ``viewer``) may read it (masked without
    either)."""
    case = _load_case(db, case_id)
    if case is None or (scope is not None and not can_see(case, scope)):
        raise NotFound(f"no whistle case {case_id}", code="case_not_found")
    return _wire(db, case, scope or viewer)


def _order_info(db: sqlite_utils.Database, case: CaseRow, viewer: Scope | None) -> OrderInfo:
    """The order of a hotline case, its caller as ``viewer`` may read them (THE rule,
    :func:`privacy.sees_caller`), with its latest callback."""
    row = db.execute(
        "SELECT order_no, type, caller_name, caller_phone, address, dispatched_level, "
        "dispatched_unit, community_id, received_ms FROM hotline_orders WHERE case_id = ?",
        [case.id],
    ).fetchone()
    full = viewer is not None and privacy.sees_caller(
        viewer.phones,
        grid_id=case.grid_id if case.level == "grid" else None,
        community_id=row[7],
        held_at=case.level if responsible(case, viewer) else None,
    )
    callback = db.execute(
        "SELECT by, at_ms, reached, contacted, resolved, satisfied, note FROM hotline_callbacks "
        "WHERE case_id = ? ORDER BY id DESC LIMIT 1",
        [case.id],
    ).fetchone()
    return OrderInfo(
        order_no=row[0],
        type=row[1],
        caller_name=row[2] if full else privacy.mask_name(row[2]),
        caller_phone=row[3] if full else privacy.mask_phone(row[3]),
        address=row[4],
        dispatched_level=row[5],
        dispatched_unit_id=row[6],
        received_at=iso_ms(row[8]),
        callback=None
        if callback is None
        else CallbackInfo(
            by=callback[0],
            at=iso_ms(callback[1]),
            reached=bool(callback[2]),
            contacted=_flag(callback[3]),
            resolved=_flag(callback[4]),
            satisfied=_flag(callback[5]),
            note=callback[6],
        ),
    )


def _flag(value: int | None) -> bool | None:
    return None if value is None else bool(value)


def supervision_of(db: sqlite_utils.Database, case_id: str) -> SupervisionInfo | None:
    """A case's latest supervision (督办); ``met`` once the case was resolved after it (by the
    due time or not), null while it is not."""
    row = db.execute(
        "SELECT by, at_ms, note, due_ms, (SELECT min(h.at_ms) FROM whistle_history h "
        " WHERE h.case_id = s.case_id AND h.action = 'resolve' AND h.at_ms >= s.at_ms) "
        "FROM supervisions s WHERE case_id = ? ORDER BY id DESC LIMIT 1",
        [case_id],
    ).fetchone()
    if row is None:
        return None
    return SupervisionInfo(
        by=row[0],
        at=iso_ms(row[1]),
        note=row[2],
        due_at=iso_ms(row[3]),
        met=supervision_met(row[4], row[3]),
    )


def supervision_met(resolved_ms: int | None, due_ms: int, now_ms: int | None = None) -> bool | None:
    """Whether a supervised case met its new due time: resolved by then; ``False`` once past it
    unresolved when ``now_ms`` is known (the report); ``None`` while it may still (the case on
    the wire, which does not change with the clock)."""
    if resolved_ms is not None:
        return resolved_ms <= due_ms
    if now_ms is not None and now_ms > due_ms:
        return False
    return None


def _wire(db: sqlite_utils.Database, case: CaseRow, viewer: Scope | None = None) -> WhistleCase:
    stint = _load_stint(db, case.stint_id)
    history = [
        CaseEvent(
            action=r[0], by=r[1], at=iso_ms(r[2]), level=r[3], state=r[4], note=r[5], device_at=r[6]
        )
        for r in db.execute(
            "SELECT action, by, at_ms, level, state, note, device_at FROM whistle_history "
            "WHERE case_id = ? ORDER BY n",
            [case.id],
        ).fetchall()
    ]
    backflow = db.execute(
        "SELECT count(*) FROM whistle_stints WHERE case_id = ? AND end_reason = 'returned'",
        [case.id],
    ).fetchone()[0]
    return WhistleCase(
        id=case.id,
        household_id=case.household_id,
        grid_id=case.grid_id,
        location=case.location,
        category=case.category,
        description=case.description,
        raised_by=case.raised_by,
        raised_at=case.raised_at,
        received_at=iso_ms(case.received_ms),
        level=case.level,
        state=case.state,
        deadlines=Deadlines(
            level=stint.level,
            since=iso_ms(stint.started_ms),
            accept=iso_ms(stint.accept_due_ms),
            arrive=iso_ms(stint.arrive_due_ms),
            resolve=iso_ms(stint.resolve_due_ms),
            missed=_list.decode(stint.missed),
        ),
        history=history,
        satisfaction=case.satisfaction,
        unit_id=case.unit_id,
        department_id=case.department_id,
        accepted_by=case.accepted_by,
        backflow=backflow,
        source="hotline" if case.source == "hotline" else "whistle",
        order=_order_info(db, case, viewer) if case.source == "hotline" else None,
        supervised=supervision_of(db, case.id),
    )


# -- scope --------------------------------------------------------------------------------------


def can_see(case: CaseRow, scope: Scope) -> bool:
    return (
        scope.allows_grid(case.grid_id)
        or scope.allows_unit(case.unit_id)
        or (case.department_id is not None and scope.allows_unit(case.department_id))
    )


def responsible(case: CaseRow | WhistleCase, scope: Scope) -> bool:
    """May act for the level that holds the case now (the grid's team: anyone whose scope
    holds the grid, its grid workers as its members; the community, the street, the department
    it is dispatched to, the district)."""
    if case.level == "grid":
        return scope.allows_grid(case.grid_id)
    return scope.allows_unit(case.unit_id)


def actions_open_to(case: WhistleCase, scope: Scope) -> list[str]:
    """The actions :data:`TRANSITIONS` lets the scope's reader try on a case now (its state,
    and the holder's actions only for the level that holds it), for a screen to offer. The
    checks that need more (``self_review``, the caps) are not asked here: taking the action
    answers them as it does for everyone."""
    holds = responsible(case, scope)
    return [
        action
        for action, rule in TRANSITIONS.items()
        if case.state in rule.sources and (rule.by == VIEWER or holds)
    ]


def _visibility_sql(scope: Scope, table: str = "") -> tuple[str, list[Any]]:
    """SQL condition: cases the scope can see (``table`` is an optional alias prefix)."""
    if scope.everything:
        return "1", []
    p = f"{table}." if table else ""
    grid_cond, grid_params = scope.grid_filter(f"{p}grid_id")
    units = msgspec.json.encode(sorted(scope.unit_ids)).decode()
    return (
        f"({grid_cond} OR {p}unit_id IN (SELECT value FROM json_each(?)) "
        f"OR {p}department_id IN (SELECT value FROM json_each(?)))",
        [*grid_params, units, units],
    )


visibility_sql = _visibility_sql  # public for the hotline's reports (``gridsync/hotline.py``)


# -- the org chain ------------------------------------------------------------------------------


def _unit(db: sqlite_utils.Database, unit_id: str) -> tuple[str, str, str | None] | None:
    """(kind, name, parent_id)"""
    return db.execute(
        "SELECT kind, name, parent_id FROM org_units WHERE id = ?", [unit_id]
    ).fetchone()


def _unit_name(db: sqlite_utils.Database, unit_id: str | None) -> str:
    row = _unit(db, unit_id) if unit_id else None
    return row[1] if row else (unit_id or "")


def _district_of(db: sqlite_utils.Database, unit_id: str) -> str | None:
    current: str | None = unit_id
    while current is not None:
        row = _unit(db, current)
        if row is None:
            return None
        if row[0] == "district":
            return current
        current = row[2]
    return None


def level_tags(level: str, unit_id: str) -> list[str]:
    """The routing tags of the people who answer for a level (see notify/routing.py)."""
    return {
        "grid": [f"grid:{unit_id}"],
        "community": [f"community:{unit_id}:secretary"],
        "street": [f"street:{unit_id}:duty"],
        "department": [f"dept:{unit_id}"],
        "district": [f"district:{unit_id}:duty"],
    }[level]


def district_supervisor_tags(db: sqlite_utils.Database, unit_id: str) -> list[str]:
    """The routing tag of the supervisors (督办, role ``supervisor``) of a unit's district."""
    district = _district_of(db, unit_id)
    return [f"supervisor:{district}"] if district else []


def supervisor_tags(db: sqlite_utils.Database, level: str, unit_id: str) -> list[str]:
    """Who supervises a level: the level above (the district supervises itself)."""
    if level == "district":
        return level_tags("district", unit_id)
    up = _next_level(db, level, unit_id, None)
    if up is None:
        return []
    up_level, up_unit = up
    if up_level == "department":  # departments are dispatched, not supervising: the district is
        district = _district_of(db, unit_id)
        return level_tags("district", district) if district else []
    return level_tags(up_level, up_unit)


def _next_level(
    db: sqlite_utils.Database, level: str, unit_id: str, department_id: str | None
) -> tuple[str, str] | None:
    """Where an escalation from (level, unit) goes; None at the top."""
    row = _unit(db, unit_id)
    parent = row[2] if row else None
    if level in ("grid", "community"):
        if parent is None:
            return None
        return ("community" if level == "grid" else "street"), parent
    if level == "street":
        district = parent
        if department_id is not None:
            dept = _unit(db, department_id)
            if dept is None or dept[0] != "department":
                raise Invalid(f"no department {department_id}", field="department_id")
            return "department", department_id
        if district is not None:
            depts = db.execute(
                "SELECT id FROM org_units WHERE kind = 'department' AND parent_id = ?", [district]
            ).fetchall()
            if len(depts) == 1:  # one department: dispatch there; several: the district decides
                return "department", depts[0][0]
            return "district", district
        return None
    if level == "department":
        district = parent or _district_of(db, unit_id)
        return ("district", district) if district else None
    return None


# -- writing helpers ----------------------------------------------------------------------------


def _open_stint(
    db: sqlite_utils.Database,
    case_id: str,
    level: str,
    unit_id: str,
    now_ms: int,
    settings: Settings,
) -> int:
    """A new stay of a case at a level, with its deadlines. A whistle case's count in minutes
    (``Settings.whistle_deadlines``); a hotline order's in working time (THE function,
    :func:`workdays.working_deadline`): first contact (accepting the order) within
    ``hotline.contact_hours``, resolution within ``hotline.resolve_days``. An order has no
    on-site step: its ``arrive`` is met as the stay starts, so the sweep's machinery (warn,
    escalate at a missed deadline) runs on contact and resolution alone."""
    source = db.execute("SELECT source FROM whistle_cases WHERE id = ?", [case_id]).fetchone()
    if source is not None and source[0] == "hotline":
        calendar, tz, hotline = settings.calendar, settings.timezone, settings.hotline
        contact_due = working_deadline(now_ms, calendar, tz, hours=hotline.contact_hours)
        resolve_due = max(
            contact_due, working_deadline(now_ms, calendar, tz, days=hotline.resolve_days)
        )
        dues, arrived = (contact_due, resolve_due, resolve_due), now_ms
    else:
        d = settings.whistle_deadlines[level]
        minute = 60_000
        dues = (
            now_ms + int(d.accept_minutes * minute),
            now_ms + int(d.arrive_minutes * minute),
            now_ms + int(d.resolve_minutes * minute),
        )
        arrived = None
    cursor = db.execute(
        "INSERT INTO whistle_stints (case_id, level, unit_id, started_ms, accept_due_ms, "
        "arrive_due_ms, resolve_due_ms, arrived_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, level, unit_id, now_ms, *dues, arrived],
    )
    stint_id = cursor.lastrowid
    assert stint_id is not None  # sqlite3 sets it after every INSERT of a rowid table
    return stint_id


def _history(
    db: sqlite_utils.Database,
    case_id: str,
    action: str,
    by: str | None,
    device_id: str | None,
    now_ms: int,
    level: str,
    state: str,
    note: str = "",
    device_at: str | None = None,
) -> None:
    """One event of a case's history. A person's event counts in the case's bound (its note's
    bytes, a comment); the system's (the sweep's escalations, ``by`` None) are bounded by the
    stays and do not."""
    db.execute(
        "INSERT INTO whistle_history (case_id, n, action, by, device_id, at_ms, device_at, level, "
        "state, note) VALUES (?, (SELECT coalesce(max(n), 0) + 1 FROM whistle_history "
        "WHERE case_id = ?), ?, ?, ?, ?, ?, ?, ?, ?)",
        [case_id, case_id, action, by, device_id, now_ms, device_at, level, state, note],
    )
    if by is not None and (note or action == "comment"):
        db.execute(
            "UPDATE whistle_cases SET note_bytes = note_bytes + ?, comments = comments + ? "
            "WHERE id = ?",
            [note_size(note), int(action == "comment"), case_id],
        )


def _touch(db: sqlite_utils.Database, case_id: str, now_ms: int, **columns: Any) -> None:
    columns["seq"] = next_seq(db)
    columns["updated_ms"] = now_ms
    assignments = ", ".join(f"{k} = ?" for k in columns)
    db.execute(f"UPDATE whistle_cases SET {assignments} WHERE id = ?", [*columns.values(), case_id])


def _person_name(db: sqlite_utils.Database, person_id: str | None) -> str:
    if not person_id:
        return ""
    row = db.execute("SELECT name FROM people WHERE id = ?", [person_id]).fetchone()
    return row[0] if row else person_id


def _context(
    db: sqlite_utils.Database, case_id: str, settings: Settings, **extra: Any
) -> Callable[[str], dict[str, Any]]:
    """A ``locale -> dict`` template context for a case's notifications."""
    case = _load_case(db, case_id)
    assert case is not None
    stint = _load_stint(db, case.stint_id)
    tz = settings.timezone
    base = {
        "id": case.id,
        "category": case.category,
        "location": case.location,
        "description": case.description,
        "grid_name": _unit_name(db, case.grid_id),
        "unit_name": _unit_name(db, case.unit_id),
        "raised_by_name": _person_name(db, case.raised_by),
        "raised_at_local": outbox.local(_safe_ms(case.raised_at, case.received_ms), tz),
        "received_at_local": outbox.local(case.received_ms, tz),
        "accept_due_local": outbox.local(stint.accept_due_ms, tz),
        "arrive_due_local": outbox.local(stint.arrive_due_ms, tz),
        "resolve_due_local": outbox.local(stint.resolve_due_ms, tz),
        "closed_at_local": outbox.local(case.closed_ms, tz),
        "satisfaction": case.satisfaction,
        "note": "",
        "link": deep_link(settings, f"/console/cases/{case.id}"),
    }
    next_up = _next_level_quiet(db, case.level, case.unit_id)

    def for_locale(locale: str) -> dict[str, Any]:
        labels = outbox.labels(locale)
        ctx = dict(base)
        ctx["level_name"] = labels["level"][case.level]
        ctx["state_name"] = labels["state"][case.state]
        ctx["next_level_name"] = labels["level"][next_up] if next_up else labels["top"]
        for key, value in extra.items():
            ctx[key] = value(labels) if callable(value) else value
        return ctx

    return for_locale


def _next_level_quiet(db: sqlite_utils.Database, level: str, unit_id: str) -> str | None:
    try:
        up = _next_level(db, level, unit_id, None)
    except GridsyncError:
        return None
    return up[0] if up else None


def _safe_ms(value: str, default: int) -> int:
    try:
        return parse_ms(value)
    except ValueError:
        return default


def _router(settings: Settings, router: Router | None) -> Router:
    return router or router_for(settings.notify.apprise_config, settings.notify.locale)


# -- raising ------------------------------------------------------------------------------------


def raised_ms_for_figures(
    db: sqlite_utils.Database, device_ms: int, principal: Principal, received_ms: int
) -> int:
    """When a case was raised, as the report counts it (``raised_ms``: raised offline, the
    delay): the phone's time, but never before its device was enrolled (it could not raise a
    case then: a clock reset to 1970 made the average delay 56 years) nor after the server
    received it. ``raised_at`` keeps the phone's time as sent."""
    row = db.execute(
        "SELECT created_at FROM devices WHERE id = ?", [principal.device_id]
    ).fetchone()
    if row is not None:
        device_ms = max(device_ms, _safe_ms(row[0], device_ms))
    return min(device_ms, received_ms)


def raised_by_device(db: sqlite_utils.Database, device_id: str, since_ms: int) -> int:
    """Cases a device raised that the server received at or after ``since_ms`` (the phone
    path's rate limit, ``gridsync/sync/whistle.py``)."""
    return db.execute(
        "SELECT count(*) FROM whistle_cases WHERE raised_device = ? AND received_ms >= ?",
        [device_id, since_ms],
    ).fetchone()[0]


def raise_case(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: WhistleRaise,
    *,
    received_ms: int,
    settings: Settings,
    router: Router | None = None,
) -> WhistleCase:
    """Open a case at the grid level. Deadlines count from ``received_ms`` (server receipt)."""
    if _load_case(db, case_id) is not None:
        raise Conflict(f"whistle case {case_id} already exists", code="case_exists")
    grid_id = data.grid_id
    if data.household_id is not None:
        row = db.execute(
            "SELECT grid_id FROM households WHERE id = ?", [data.household_id]
        ).fetchone()
        if row is None or not principal.scope.allows_grid(row[0]):
            raise NotFound(f"no household {data.household_id}", field="household_id")
        if grid_id is not None and grid_id != row[0]:
            raise Invalid(
                f"household {data.household_id} is in grid {row[0]}, not {grid_id}", field="grid_id"
            )
        grid_id = row[0]
    if grid_id is None:
        raise Invalid("a case needs a grid_id or a household_id", field="grid_id")
    unit = _unit(db, grid_id)
    if unit is None or unit[0] != "grid":
        raise Invalid(f"no grid {grid_id}", field="grid_id")
    if not principal.scope.allows_grid(grid_id):
        raise OutOfScope(f"grid {grid_id} is outside your scope")
    raised_at = data.raised_at or iso_ms(received_ms)
    try:
        raised_ms = raised_ms_for_figures(db, device_time_ms(raised_at), principal, received_ms)
    except ValueError as exc:
        raise Invalid(f"raised_at: {exc}", code="invalid_time", field="raised_at") from None
    open_case(
        db,
        case_id=case_id,
        source="whistle",
        household_id=data.household_id,
        grid_id=grid_id,
        level="grid",
        unit_id=grid_id,
        location=data.location,
        category=data.category,
        description=data.description,
        actor=principal.actor,
        raised_at=raised_at,
        raised_ms=raised_ms,
        received_ms=received_ms,
        settings=settings,
        device_at=data.raised_at,
    )
    outbox.enqueue(
        db,
        _router(settings, router),
        event_key=f"whistle:{case_id}:raised",
        kind="whistle_raised",
        tags=level_tags("grid", grid_id),
        context=_context(db, case_id, settings),
        now_ms=received_ms,
        cause=case_id,
        exclude=principal.person_id,
    )
    audit.record(
        db,
        principal.actor,
        "whistle.raise",
        target=case_id,
        detail={"grid_id": grid_id, "category": data.category},
    )
    return get_case(db, case_id, viewer=principal.scope)


def open_case(
    db: sqlite_utils.Database,
    *,
    case_id: str,
    source: str,
    household_id: str | None,
    grid_id: str,
    level: str,
    unit_id: str,
    location: str,
    category: str,
    description: str,
    actor: Actor,
    raised_at: str,
    raised_ms: int,
    received_ms: int,
    settings: Settings,
    device_at: str | None = None,
    raised_by: str | None = None,
) -> None:
    """Write a new case (a phone's or the web's whistle, or a hotline order, ``source``) at
    ``level``/``unit_id``: its row, its first stay with its deadlines (:func:`_open_stint`) and
    the ``raise`` event. The callers check and notify."""
    db.execute(
        "INSERT INTO whistle_cases (id, household_id, grid_id, location, category, description, "
        "raised_by, raised_device, raised_at, raised_ms, received_ms, level, unit_id, "
        "department_id, state, stint_id, seq, updated_ms, source) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'raised', 0, ?, ?, ?)",
        [
            case_id,
            household_id,
            grid_id,
            location,
            category,
            description,
            raised_by or actor.person_id,
            actor.device_id,
            raised_at,
            raised_ms,
            received_ms,
            level,
            unit_id,
            unit_id if level == "department" else None,
            next_seq(db),
            received_ms,
            source,
        ],
    )
    stint_id = _open_stint(db, case_id, level, unit_id, received_ms, settings)
    db.execute("UPDATE whistle_cases SET stint_id = ? WHERE id = ?", [stint_id, case_id])
    _history(
        db,
        case_id,
        "raise",
        actor.person_id,
        actor.device_id,
        received_ms,
        level,
        "raised",
        description[:200],
        device_at=device_at,
    )


def record_event(
    db: sqlite_utils.Database,
    case_id: str,
    action: str,
    actor: Actor,
    now_ms: int,
    note: str = "",
) -> None:
    """An event of a case that is no action of the state machine (a hotline callback, a
    supervision): in its history, and the case changes (a new change seq: phones pull it)."""
    case = _load_case(db, case_id)
    assert case is not None
    _history(
        db, case_id, action, actor.person_id, actor.device_id, now_ms, case.level, case.state, note
    )
    _touch(db, case_id, now_ms)


def case_context(
    db: sqlite_utils.Database, case_id: str, settings: Settings, **extra: Any
) -> Callable[[str], dict[str, Any]]:
    """The template context of a case's notifications (for hotline and supervision notices)."""
    return _context(db, case_id, settings, **extra)


def case_row(db: sqlite_utils.Database, case_id: str, scope: Scope) -> CaseRow:
    """A case the scope can see, or ``case_not_found``."""
    case = _load_case(db, case_id)
    if case is None or not can_see(case, scope):
        raise NotFound(f"no whistle case {case_id}", code="case_not_found")
    return case


def handlers(db: sqlite_utils.Database, case_id: str) -> set[str]:
    """Everyone who took a step of the case's handling path (:data:`HANDLING_ACTIONS`, and
    handing it down: :func:`hand_down`)."""
    actions = ", ".join(f"'{a}'" for a in (*HANDLING_ACTIONS, "forward"))
    return {
        r[0]
        for r in db.execute(
            f"SELECT DISTINCT by FROM whistle_history WHERE case_id = ? AND action IN ({actions}) "
            "AND by IS NOT NULL",
            [case_id],
        )
    }


# -- acting: the state machine of SPEC 5 as a table ------------------------------------------

HOLDER = "holder"  # the level that holds the case now (:func:`responsible`)
VIEWER = "viewer"  # anyone who can see the case (:func:`can_see`)
ALL_STATES: tuple[str, ...] = get_args(CaseState)

# The deadlines of a stay at a level (a stint), in the order they fall due; the stint's column
# that records each one met.
_MET_COLUMN = {"accept": "accepted_ms", "arrive": "arrived_ms", "resolve": "resolved_ms"}

# Where a transition's next stay starts, with new deadlines: at the level that holds the case,
# one level up (the whistle), or back at the level that held it before (backflow).
HERE, UP, BACK = "here", "up", "back"

Refusal = Callable[[sqlite_utils.Database, CaseRow], GridsyncError]
Check = Callable[[sqlite_utils.Database, CaseRow, WhistleAct | CaseAction, str | None], None]


@dataclass(frozen=True, slots=True)
class Transition:
    """One action on a case: the states it may be taken from, the state it leads to, who may
    take it, which deadlines it meets, whether the stay at the level ends and where the next
    one starts. :func:`apply_action` is the one interpreter of the table."""

    sources: tuple[str, ...]
    to: str | None  # None: the state stays (a comment)
    by: str  # HOLDER or VIEWER
    meets: tuple[str, ...] = ()  # deadlines met now: the first one, then any not met before it
    ends: str | None = None  # the stay ends, for this reason (``whistle_stints.end_reason``)
    starts: str | None = None  # HERE, UP or BACK: a new stay with new deadlines
    # A source state refused with its own error rather than ``illegal_transition``.
    refused: dict[str, Refusal] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()  # after the state's check, in order


def _already_accepted(db: sqlite_utils.Database, case: CaseRow) -> GridsyncError:
    return Conflict(
        f"{_person_name(db, case.accepted_by)} has already accepted this case",
        code="already_accepted",
        accepted_by=case.accepted_by,
    )


def _not_self_review(
    db: sqlite_utils.Database, case: CaseRow, data: WhistleAct | CaseAction, who: str | None
) -> None:
    if who is not None and who == latest_resolver(db, case.id):
        raise Conflict(
            "the person who resolved a case may not close it or give its satisfaction: "
            "someone else closes it with the resident's score",
            code="self_review",
            resolved_by=who,
        )


def _scored(
    db: sqlite_utils.Database, case: CaseRow, data: WhistleAct | CaseAction, who: str | None
) -> None:
    if data.satisfaction is None:
        raise Invalid(
            "closing a case needs the resident's satisfaction (1-5)",
            code="invalid_satisfaction",
            field="satisfaction",
        )


def _room_for_comment(
    db: sqlite_utils.Database, case: CaseRow, data: WhistleAct | CaseAction, who: str | None
) -> None:
    """A comment fits the case's bound: :data:`MAX_CASE_COMMENTS`, and its note within
    :data:`MAX_CASE_NOTE_BYTES` less the room kept for the actions that move the case."""
    size = note_size(data.note)
    room = MAX_CASE_NOTE_BYTES - CASE_NOTE_RESERVE - case.note_bytes
    if case.comments >= MAX_CASE_COMMENTS or size > room:
        raise Conflict(
            f"this case holds {case.comments} comments and {case.note_bytes:,} bytes of notes: "
            f"it takes at most {MAX_CASE_COMMENTS} comments and "
            f"{MAX_CASE_NOTE_BYTES - CASE_NOTE_RESERVE:,} bytes of them (every phone of the "
            "grid receives the whole case); say it in the action that moves the case, or "
            "raise a new case",
            code="case_too_long",
            comments=case.comments,
            note_bytes=case.note_bytes,
        )


def _stays_ended(db: sqlite_utils.Database, case_id: str, reason: str) -> int:
    return db.execute(
        "SELECT count(*) FROM whistle_stints WHERE case_id = ? AND end_reason = ?",
        [case_id, reason],
    ).fetchone()[0]


def _loop_cap(reason: str, cap: int, what: str) -> Check:
    """A cap on one of the state machine's two loops (reopen, return): the other actions are
    bounded by the stays, so these bound the whole history."""

    def check(
        db: sqlite_utils.Database, case: CaseRow, data: WhistleAct | CaseAction, who: str | None
    ) -> None:
        if _stays_ended(db, case.id, reason) >= cap:
            raise Conflict(
                f"this case was {what} {cap} times, the most a case takes: raise a new case "
                "for what is left",
                code="case_too_long",
            )

    return check


# action -> Transition(from states, new state, who may take it, deadlines and stays, checks)
TRANSITIONS: dict[str, Transition] = {
    # Handling, by the level that holds the case: accept (the accept deadline), arrive on site,
    # resolve (arriving too, if nobody said so before).
    "accept": Transition(
        ("raised", "reopened"),
        "accepted",
        HOLDER,
        meets=("accept",),
        refused={"accepted": _already_accepted, "on_site": _already_accepted},
    ),
    "arrive": Transition(("accepted",), "on_site", HOLDER, meets=("arrive",)),
    "resolve": Transition(("accepted", "on_site"), "resolved", HOLDER, meets=("resolve", "arrive")),
    # The whistle: one level up, and the level that held it before (backflow), with new
    # deadlines there.
    "escalate": Transition(OPEN_STATES, "raised", HOLDER, ends="escalated", starts=UP),
    "return": Transition(
        OPEN_STATES,
        "raised",
        HOLDER,
        ends="returned",
        starts=BACK,
        checks=(_loop_cap("returned", MAX_CASE_RETURNS, "sent back down"),),
    ),
    # Review, by anyone who can see the case: close with the resident's score (not by the one
    # who resolved it), reopen (new deadlines at the same level), comment.
    "close": Transition(
        ("resolved",), "closed", VIEWER, ends="closed", checks=(_not_self_review, _scored)
    ),
    "reopen": Transition(
        ("resolved", "closed"),
        "reopened",
        VIEWER,
        ends="reopened",
        starts=HERE,
        checks=(_loop_cap("reopened", MAX_CASE_REOPENS, "reopened"),),
    ),
    "comment": Transition(ALL_STATES, None, VIEWER, checks=(_room_for_comment,)),
}

# Who acted on a case's handling path (the response the report measures). Comments, closing and
# reopening are not handling: closing is the review of it, by someone else (``self_review``).
HANDLING_ACTIONS = tuple(a for a, t in TRANSITIONS.items() if t.by == HOLDER)


def latest_resolver(db: sqlite_utils.Database, case_id: str) -> str | None:
    """The person of the case's latest ``resolve`` (after a reopen, the one who resolved it
    again): only they are barred from closing it (``self_review``)."""
    row = db.execute(
        "SELECT by FROM whistle_history WHERE case_id = ? AND action = 'resolve' "
        "ORDER BY n DESC LIMIT 1",
        [case_id],
    ).fetchone()
    return row[0] if row else None


def self_handled_sql(case: str = "c") -> str:
    """SQL condition on a ``whistle_cases`` row aliased ``case``: a case one person raised and
    resolved alone (随手办). It is resolved or closed, and nobody but its raiser took a step
    of the handling path (:data:`HANDLING_ACTIONS`; the system's escalations at a missed
    deadline are no one's step). The one definition the report counts ``self_handled`` by."""
    actions = ", ".join(f"'{a}'" for a in HANDLING_ACTIONS)
    return (
        f"({case}.state IN ('resolved', 'closed') AND NOT EXISTS (SELECT 1 FROM whistle_history h "
        f"WHERE h.case_id = {case}.id AND h.action IN ({actions}) AND h.by IS NOT NULL "
        f"AND h.by != {case}.raised_by))"
    )


def _illegal(case: CaseRow, action: str) -> GridsyncError:
    return Conflict(
        f"cannot {action} a case that is {case.state} at the {case.level} level",
        code="illegal_transition",
        state=case.state,
        action=action,
    )


def _level_up(
    db: sqlite_utils.Database, case: CaseRow, stint: Stint, data: WhistleAct | CaseAction
) -> tuple[str, str]:
    target = _next_level(db, case.level, case.unit_id, data.department_id)
    if target is None:
        raise Conflict(
            "the case is already at the district level",
            code="illegal_transition",
            state=case.state,
            action=data.action,
        )
    return target


def _level_back(
    db: sqlite_utils.Database, case: CaseRow, stint: Stint, data: WhistleAct | CaseAction
) -> tuple[str, str]:
    """The level that held the case before this one; none below the grid."""
    if case.level == "grid":
        raise _illegal(case, data.action)
    previous = db.execute(
        "SELECT level, unit_id FROM whistle_stints WHERE case_id = ? AND id < ? "
        "AND level != ? ORDER BY id DESC LIMIT 1",
        [case.id, stint.id, case.level],
    ).fetchone()
    if previous is None:
        raise _illegal(case, data.action)
    return previous[0], previous[1]


_MOVES = {UP: _level_up, BACK: _level_back}


def act(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: WhistleAct | CaseAction,
    *,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
) -> WhistleCase:
    """Apply one action to a case and answer the case as it is now (REST, the CLI): see
    :func:`apply_action`. The push path calls that alone: rebuilding the whole case after each
    action made a batch of actions on one case cost the square of its history."""
    apply_action(db, principal, case_id, data, now_ms=now_ms, settings=settings, router=router)
    return get_case(db, case_id, viewer=principal.scope)


def apply_action(
    db: sqlite_utils.Database,
    principal: Principal,
    case_id: str,
    data: WhistleAct | CaseAction,
    *,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
    device_at: str | None = None,
) -> list[dict[str, str]]:
    """Apply one action to a case (phones through ``whistle.act``, the web through REST): the
    interpreter of :data:`TRANSITIONS`. Refusals, in order: the score, the case (not found
    unless visible), who (``not_responsible``), the state (``illegal_transition`` or the
    transition's own refusal), the transition's checks (a comment past the case's bound, a
    reopen or return past its cap: ``case_too_long``), where a move goes.

    What of the action was not kept: an action that moves the case is never refused for the
    case's length, but past :data:`MAX_CASE_NOTE_BYTES` it applies without its note
    (``[{"field": "note", "code": "case_too_long"}]``)."""
    router = _router(settings, router)
    if data.satisfaction is not None and not 1 <= data.satisfaction <= 5:
        raise Invalid(
            "satisfaction is a score from 1 to 5", code="invalid_satisfaction", field="satisfaction"
        )
    if data.satisfaction is not None and data.action != "close":
        raise Invalid("satisfaction is given when closing a case", field="satisfaction")
    case = _load_case(db, case_id)
    if case is None or not can_see(case, principal.scope):
        raise NotFound(f"no whistle case {case_id}", code="case_not_found")
    action = data.action
    rule = TRANSITIONS.get(action)
    if rule is None:  # pragma: no cover - WhistleAction is a closed Literal
        raise Invalid(f"unknown action {action}", field="action")
    who, device = principal.person_id, principal.device_id
    if rule.by == HOLDER and not responsible(case, principal.scope):
        raise Forbidden(
            f"the case is with {case.unit_id} ({case.level} level); you cannot {action} it",
            code="not_responsible",
        )
    stint = _load_stint(db, case.stint_id)
    if case.state not in rule.sources:
        refusal = rule.refused.get(case.state)
        raise refusal(db, case) if refusal else _illegal(case, action)
    for check in rule.checks:
        check(db, case, data, who)
    note, ignored = data.note, []
    if note_size(note) > MAX_CASE_NOTE_BYTES - case.note_bytes:  # a comment was refused
        note, ignored = "", [{"field": "note", "code": "case_too_long"}]
    if rule.starts in _MOVES:  # to another level: the stay there starts with new deadlines
        target = _MOVES[rule.starts](db, case, stint, data)
        assert rule.ends is not None
        _move(
            db,
            case,
            stint,
            target,
            rule.ends,
            now_ms,
            settings,
            router,
            by=who,
            device_id=device,
            note=note,
            device_at=device_at,
        )
    else:
        _step(db, case, stint, rule, data, who, now_ms, settings)
        new_state = rule.to or case.state
        _history(db, case_id, action, who, device, now_ms, case.level, new_state, note, device_at)
        if rule.ends == "closed":
            _tell_closed(db, case, stint, who, now_ms, settings, router)
    _audit_act(db, principal, case_id, action, case.level)
    return ignored


def _step(
    db: sqlite_utils.Database,
    case: CaseRow,
    stint: Stint,
    rule: Transition,
    data: WhistleAct | CaseAction,
    who: str | None,
    now_ms: int,
    settings: Settings,
) -> None:
    """A transition at the level that holds the case: its deadlines met, its stay ended (a
    close keeps the score in the stint too), a new stay here (reopen), the case's columns."""
    if rule.meets:
        first, *implied = (_MET_COLUMN[kind] for kind in rule.meets)
        sets = ", ".join([f"{first} = ?"] + [f"{c} = coalesce({c}, ?)" for c in implied])
        db.execute(
            f"UPDATE whistle_stints SET {sets} WHERE id = ?",
            [now_ms] * len(rule.meets) + [stint.id],
        )
    # A stay already over (a closed case's) keeps its end and score; a resolved case's is open.
    if rule.ends is not None and stint.ended_ms is None:
        db.execute(
            "UPDATE whistle_stints SET satisfaction = ?, ended_ms = ?, end_reason = ? WHERE id = ?",
            [data.satisfaction, now_ms, rule.ends, stint.id],
        )
    columns: dict[str, Any] = {}
    if rule.to is not None:
        columns["state"] = rule.to
    if "accept" in rule.meets:  # who accepts a case holds it
        columns["accepted_by"] = who
    if rule.ends == "closed":
        columns.update(satisfaction=data.satisfaction, closed_ms=now_ms)
    if rule.starts == HERE:  # a new stay: nobody holds the case, nobody has scored it
        new_stint = _open_stint(db, case.id, case.level, case.unit_id, now_ms, settings)
        columns.update(stint_id=new_stint, accepted_by=None, satisfaction=None, closed_ms=None)
    _touch(db, case.id, now_ms, **columns)


def _tell_closed(
    db: sqlite_utils.Database,
    case: CaseRow,
    stint: Stint,
    who: str | None,
    now_ms: int,
    settings: Settings,
    router: Router,
) -> None:
    """The raiser and the one who accepted the case learn it was closed (not the closer)."""
    tags = [f"member:{case.raised_by}"]
    if case.accepted_by:
        tags.append(f"member:{case.accepted_by}")
    outbox.enqueue(
        db,
        router,
        event_key=f"whistle:{case.id}:stint:{stint.id}:closed",
        kind="whistle_closed",
        tags=tags,
        context=_context(db, case.id, settings),
        now_ms=now_ms,
        cause=case.id,
        exclude=who,
    )


def _audit_act(
    db: sqlite_utils.Database, principal: Principal, case_id: str, action: str, level: str
) -> None:
    audit.record(db, principal.actor, f"whistle.{action}", target=case_id, detail={"level": level})


def _move(
    db: sqlite_utils.Database,
    case: CaseRow,
    stint: Stint,
    target: tuple[str, str],
    reason: str,
    now_ms: int,
    settings: Settings,
    router: Router,
    *,
    by: str | None,
    device_id: str | None,
    note: str = "",
    device_at: str | None = None,
    missed: str | None = None,
) -> None:
    """Hand the case to another level: close this stint, open the next, alert."""
    level, unit_id = target
    db.execute(
        "UPDATE whistle_stints SET ended_ms = ?, end_reason = ? WHERE id = ?",
        [now_ms, reason, stint.id],
    )
    new_stint = _open_stint(db, case.id, level, unit_id, now_ms, settings)
    extra: dict[str, Any] = {}
    if level == "department":
        extra["department_id"] = unit_id
    _touch(
        db,
        case.id,
        now_ms,
        level=level,
        unit_id=unit_id,
        state="raised",
        accepted_by=None,
        stint_id=new_stint,
        **extra,
    )
    action = "return" if reason == "returned" else "escalate"
    _history(
        db,
        case.id,
        action,
        by,
        device_id,
        now_ms,
        level,
        "raised",
        note or (f"missed:{missed}" if missed else ""),
        device_at,
    )
    tz = settings.timezone
    from_level, from_unit = case.level, case.unit_id
    if reason == "returned":
        outbox.enqueue(
            db,
            router,
            event_key=f"whistle:{case.id}:stint:{new_stint}:returned",
            kind="whistle_returned",
            tags=level_tags(level, unit_id),
            context=_context(
                db, case.id, settings, note=note, from_unit_name=_unit_name(db, from_unit)
            ),
            now_ms=now_ms,
            cause=case.id,
            exclude=by,
        )
        return

    def reason_text(labels: dict) -> str:
        template = labels["reason"]["missed" if missed else "escalate"]
        return template.format(
            level=labels["level"][from_level],
            deadline=labels["deadline"].get(missed or "", ""),
            due=outbox.local(stint.due(missed), tz) if missed else "",
        )

    tags = level_tags(level, unit_id) + supervisor_tags(db, level, unit_id)
    if reason == "missed":  # a missed deadline also reaches the district's supervisors (督办)
        tags += district_supervisor_tags(db, unit_id)
    outbox.enqueue(
        db,
        router,
        event_key=f"whistle:{case.id}:stint:{new_stint}:escalated",
        kind="whistle_escalated",
        tags=tags,
        context=_context(db, case.id, settings, reason=reason_text),
        now_ms=now_ms,
        cause=case.id,
        exclude=by,
    )


# -- deadlines (run by the sweep) ---------------------------------------------------------------


def next_due_ms(db: sqlite_utils.Database, after_ms: int) -> int | None:
    """The earliest accept/arrive/resolve deadline after ``after_ms`` of an open stint that is
    not done yet: the periodic worker wakes just after it instead of waiting out its interval."""
    row = db.execute(
        "SELECT MIN(due) FROM ("
        " SELECT CASE WHEN s.accepted_ms IS NULL THEN s.accept_due_ms"
        "  WHEN s.arrived_ms IS NULL THEN s.arrive_due_ms"
        "  WHEN s.resolved_ms IS NULL THEN s.resolve_due_ms END AS due"
        " FROM whistle_stints s JOIN whistle_cases c ON c.stint_id = s.id"
        " WHERE s.ended_ms IS NULL AND c.state IN ('raised', 'accepted', 'on_site', 'reopened')"
        ") WHERE due > ?",
        [after_ms],
    ).fetchone()
    return row[0] if row else None


SYSTEM = Actor(person_id=None, device_id="sweep")


def check_deadlines(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router | None = None
) -> dict[str, int]:
    """Escalate cases whose deadline at their level has passed; warn when one is near.

    Idempotent: a stint escalates once (it is closed by the escalation); a warning is noted in
    the stint and its outbox row has a dedup key."""
    router = _router(settings, router)
    counts = {"escalated": 0, "warned": 0, "missed_at_top": 0}
    rows = db.execute(
        f"SELECT {', '.join('s.' + c.strip() for c in _STINT_COLS.split(','))} "
        "FROM whistle_stints s JOIN whistle_cases c ON c.stint_id = s.id "
        "WHERE s.ended_ms IS NULL AND c.state IN ('raised', 'accepted', 'on_site', 'reopened') "
        "ORDER BY s.id"
    ).fetchall()
    for row in rows:
        stint = Stint(*row)
        case = _load_case(db, stint.case_id)
        assert case is not None
        pending = [k for k in ("accept", "arrive", "resolve") if stint.done(k) is None]
        missed = next((k for k in pending if now_ms > stint.due(k)), None)
        if missed is None:
            counts["warned"] += _warn_near(db, case, stint, pending, now_ms, settings, router)
        elif missed not in _list.decode(stint.missed):
            counts[_missed(db, case, stint, missed, now_ms, settings, router)] += 1
    return counts


def _missed(
    db: sqlite_utils.Database,
    case: CaseRow,
    stint: Stint,
    missed: str,
    now_ms: int,
    settings: Settings,
    router: Router,
) -> str:
    """A deadline of the stay passed, seen for the first time: noted in the stint, and the
    case escalates one level (``escalated``), or at the top level the level is alerted once
    (``missed_at_top``). Which of the two it was."""
    missed_list = [*_list.decode(stint.missed), missed]
    db.execute(
        "UPDATE whistle_stints SET missed = ? WHERE id = ?",
        [msgspec.json.encode(missed_list).decode(), stint.id],
    )
    target = _next_level(db, case.level, case.unit_id, None)
    if target is not None:
        _move(
            db,
            case,
            stint,
            target,
            "missed",
            now_ms,
            settings,
            router,
            by=None,
            device_id=None,
            missed=missed,
        )
        outcome = "escalated"
    else:
        _touch(db, case.id, now_ms)
        _history(
            db, case.id, "overdue", None, None, now_ms, case.level, case.state, f"missed:{missed}"
        )
        tags = level_tags(case.level, case.unit_id)
        _deadline_notice(db, router, settings, case, stint, missed, "missed", tags, now_ms)
        outcome = "missed_at_top"
    audit.record(
        db,
        SYSTEM,
        "whistle.deadline_missed",
        target=case.id,
        detail={"level": case.level, "deadline": missed},
    )
    return outcome


def _warn_near(
    db: sqlite_utils.Database,
    case: CaseRow,
    stint: Stint,
    pending: list[str],
    now_ms: int,
    settings: Settings,
    router: Router,
) -> int:
    """Warn the level (and whoever accepted the case) that the earliest pending deadline not
    warned of yet is near (``notify.near_fraction`` of its window left); one warning at a time.
    How many warnings were sent (0 or 1)."""
    near = settings.notify.near_fraction
    warned = _list.decode(stint.warned)
    for kind in pending:
        window = stint.due(kind) - stint.started_ms
        if kind in warned or now_ms < stint.due(kind) - window * near:
            continue
        warned.append(kind)
        db.execute(
            "UPDATE whistle_stints SET warned = ? WHERE id = ?",
            [msgspec.json.encode(warned).decode(), stint.id],
        )
        tags = level_tags(case.level, case.unit_id)
        if case.accepted_by:
            tags.append(f"member:{case.accepted_by}")
        _deadline_notice(db, router, settings, case, stint, kind, "near", tags, now_ms)
        return 1
    return 0


_DEADLINE_NOTICES = {"missed": "whistle_overdue", "near": "whistle_near"}
# The notifications that ask their recipient to act on a case, each queued with the case as its
# ``cause`` (``whistle_closed`` only tells): the burden report counts how many its recipients
# acted on (gridsync/burden.py).
ALERT_KINDS = (
    "whistle_raised",
    "whistle_near",
    "whistle_overdue",
    "whistle_escalated",
    "whistle_returned",
)


def _deadline_notice(
    db: sqlite_utils.Database,
    router: Router,
    settings: Settings,
    case: CaseRow,
    stint: Stint,
    deadline: str,
    event: str,
    tags: list[str],
    now_ms: int,
) -> None:
    """Queue the notice that ``deadline`` of a stint was missed at the top level or is near;
    its event key names the stint, the event and the deadline, so each is queued once."""
    outbox.enqueue(
        db,
        router,
        event_key=f"whistle:{case.id}:stint:{stint.id}:{event}:{deadline}",
        kind=_DEADLINE_NOTICES[event],
        tags=tags,
        context=_context(
            db,
            case.id,
            settings,
            due_local=outbox.local(stint.due(deadline), settings.timezone),
            deadline_name=lambda labels: labels["deadline"][deadline],
        ),
        now_ms=now_ms,
        cause=case.id,
    )


# -- listing and pull ---------------------------------------------------------------------------


def list_cases(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    state: str | None = None,
    level: str | None = None,
    grid_id: str | None = None,
    open_only: bool = False,
    source: str | None = None,
    by_deadline: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> CasePage:
    """A page of the cases the scope sees, newest first; ``by_deadline``: the one whose next
    deadline (contact or acceptance, then resolution) falls first, first."""
    where, params = and_given(
        *_visibility_sql(scope),
        ("state = ?", state),
        ("level = ?", level),
        ("grid_id = ?", grid_id),
        ("source = ?", source),
    )
    if open_only:
        where += " AND state NOT IN ('resolved', 'closed')"
    order_by = "received_ms DESC, id"
    if by_deadline:
        order_by = (
            "(SELECT CASE WHEN s.accepted_ms IS NULL THEN s.accept_due_ms "
            "ELSE s.resolve_due_ms END FROM whistle_stints s "
            "WHERE s.id = whistle_cases.stint_id), id"
        )
    rows, total = paged(
        db,
        _CASE_COLS,
        "whistle_cases WHERE " + where,
        params,
        order_by=order_by,
        limit=limit,
        offset=offset,
    )
    return CasePage(
        items=[_wire(db, CaseRow(*r), scope) for r in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


def cases_held(db: sqlite_utils.Database, scope: Scope, *, limit: int = 200) -> list[WhistleCase]:
    """Open cases (not resolved or closed) that the scope's level holds now (:func:`responsible`):
    what waits for this person to act, next deadline first."""
    page = list_cases(db, scope, open_only=True, limit=500)
    held = [c for c in page.items if responsible(c, scope)]
    held.sort(key=lambda c: ((next_deadline(c) or ("", "9999"))[1], c.id))
    return held[:limit]


def next_deadline(case: WhistleCase) -> tuple[str, str] | None:
    """The deadline the case's state waits on at its level, as (``accept`` | ``arrive`` |
    ``resolve``, ISO time): accept, then arrive, then resolve (a hotline order: accept, then
    resolve); None for a resolved or closed case."""
    if case.state in ("raised", "reopened"):
        return "accept", case.deadlines.accept
    if case.state == "accepted":
        if case.source == "hotline":  # an order has no on-site step (gridsync/hotline.py)
            return "resolve", case.deadlines.resolve
        return "arrive", case.deadlines.arrive
    if case.state == "on_site":
        return "resolve", case.deadlines.resolve
    return None


def open_cases_by_level(db: sqlite_utils.Database) -> dict[str, int]:
    """Cases still to be handled (not resolved or closed, as ``list_cases(open_only=True)``),
    by the level that holds them: the operator's gauge (/metrics)."""
    rows = db.execute(
        "SELECT level, count(*) FROM whistle_cases "
        "WHERE state NOT IN ('resolved', 'closed') GROUP BY level"
    ).fetchall()
    return {level: n for level, n in rows}


def changed_cases(
    db: sqlite_utils.Database,
    scope: Scope,
    after_seq: int,
    upto_seq: int,
    limit: int,
    *,
    closed_since_ms: int,
) -> list[tuple[int, WhistleCase]]:
    """(seq, case) of the cases the scope sees with ``after_seq < seq <= upto_seq``, by seq, at
    most ``limit``: open ones, and closed ones closed at or after ``closed_since_ms`` (the pull
    source ``whistle`` in ``gridsync/sync/whistle.py`` passes now minus
    :data:`CLOSED_VISIBLE_DAYS`)."""
    cond, params = _visibility_sql(scope)
    rows = db.execute(
        f"SELECT {_CASE_COLS} FROM whistle_cases WHERE seq > ? AND seq <= ? AND {cond} "
        "AND (state != 'closed' OR closed_ms >= ?) ORDER BY seq LIMIT ?",
        [after_seq, upto_seq, *params, closed_since_ms, limit],
    ).fetchall()
    return [(r[19], _wire(db, CaseRow(*r), scope)) for r in rows]


# -- the report ---------------------------------------------------------------------------------


def _rate(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def whistle_report(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    now_ms: int | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    level: str | None = None,
    source: str = "whistle",
) -> WhistleReport:
    """Response, on-time and resolution rates, satisfaction and backflow per level and org unit,
    over the stays (stints) of cases at each level that began in [since, until).

    A stay counts as responded when accepted, on time when no deadline of it was missed (an
    open stay past a deadline the sweep has not yet seen counts as late), resolved when resolved
    at that level; ``escalated`` stays went up (by hand or by a missed deadline), ``backflow``
    stays were sent back down. Satisfaction is that of cases closed at the level.

    A case one person raised and resolved alone (随手办, :func:`self_handled_sql`) is a good
    practice but no measure of a response: its stays are counted in ``self_handled`` and in
    none of the other figures (a phone that raises, accepts, resolves and has its case closed
    would otherwise report 100% response, on time).

    ``source``: whistle cases (default) or hotline orders (whose own rates, from callbacks,
    are ``gridsync/hotline.py``'s report); the two are never mixed."""
    if now_ms is None:
        from gridsync.clock import SYSTEM_CLOCK

        now_ms = SYSTEM_CLOCK.now_ms()
    figures = _stay_figures(db, scope, now_ms, since_ms, until_ms, level, source)
    raised, offline, delay = _raised_figures(db, scope, since_ms, until_ms, source)
    return WhistleReport(
        generated_at=iso_ms(now_ms),
        since=iso_ms(since_ms) if since_ms is not None else None,
        until=iso_ms(until_ms) if until_ms is not None else None,
        rows=_report_rows(db, figures),
        cases_raised=raised,
        raised_offline=int(offline or 0),
        offline_delay_avg_seconds=round(delay / 1000, 1) if delay else None,
    )


def _stay_figures(
    db: sqlite_utils.Database,
    scope: Scope,
    now_ms: int,
    since_ms: int | None,
    until_ms: int | None,
    level: str | None,
    source: str = "whistle",
) -> list[tuple]:
    """Per (level, unit): the stays that count, responded, on time, resolved, escalated,
    backflow, the sum and count of satisfaction scores, the self-handled stays (see
    :func:`whistle_report`), in the order of :data:`CASE_LEVELS`, then unit."""
    cond, params = _visibility_sql(scope, "c")
    where = [cond, "c.source = ?"]
    params.append(source)
    if since_ms is not None:
        where.append("s.started_ms >= ?")
        params.append(since_ms)
    if until_ms is not None:
        where.append("s.started_ms < ?")
        params.append(until_ms)
    if level is not None:
        where.append("s.level = ?")
        params.append(level)
    # ``o``: the stay counts in the figures (its case is not 随手办); self-handled stays are
    # counted apart, in ``self_handled`` only.
    rows = db.execute(
        f"""
        SELECT level, unit_id, sum(o),
          sum(o AND accepted_ms IS NOT NULL),
          sum(o AND missed = '[]'
              AND coalesce(accepted_ms, min(?, coalesce(ended_ms, ?))) <= accept_due_ms
              AND coalesce(arrived_ms, min(?, coalesce(ended_ms, ?))) <= arrive_due_ms
              AND coalesce(resolved_ms, min(?, coalesce(ended_ms, ?))) <= resolve_due_ms),
          sum(o AND resolved_ms IS NOT NULL),
          sum(o AND end_reason IN ('escalated', 'missed')),
          sum(o AND end_reason = 'returned'),
          sum(CASE WHEN o THEN satisfaction END), count(CASE WHEN o THEN satisfaction END),
          sum(NOT o)
        FROM (
          SELECT s.*, NOT {self_handled_sql("c")} AS o
          FROM whistle_stints s JOIN whistle_cases c ON c.id = s.case_id
          WHERE {" AND ".join(where)}
        )
        GROUP BY level, unit_id
        """,
        [*([now_ms] * 6), *params],
    ).fetchall()
    return sorted(rows, key=lambda r: (_LEVEL_ORDER.get(r[0], 99), r[1]))


_LEVEL_ORDER: dict[str, int] = {name: i for i, name in enumerate(CASE_LEVELS)}


def _report_rows(db: sqlite_utils.Database, figures: list[tuple]) -> list[ReportRow]:
    """A row per unit, then a total per level, then ``all``."""
    out: list[ReportRow] = []
    totals: dict[str, list[int]] = {}
    for r in figures:
        values = [int(x or 0) for x in r[2:]]
        out.append(_report_row(r[0], r[1], _unit_name(db, r[1]), values))
        acc = totals.setdefault(r[0], [0] * 9)
        for i, x in enumerate(values):
            acc[i] += x
    grand = [0] * 9
    for level_name in sorted(totals, key=lambda k: _LEVEL_ORDER.get(k, 99)):
        out.append(_report_row(level_name, None, "", totals[level_name]))
        for i, x in enumerate(totals[level_name]):
            grand[i] += x
    out.append(_report_row("all", None, "", grand))
    return out


def _report_row(level_name: str, unit_id: str | None, name: str, v: list[int]) -> ReportRow:
    cases, responded, on_time, resolved, escalated, backflow, sat_sum, sat_n, self_n = v
    return ReportRow(
        level=level_name,
        unit_id=unit_id,
        unit_name=name,
        cases=cases,
        responded=responded,
        on_time=on_time,
        resolved=resolved,
        escalated=escalated,
        backflow=backflow,
        response_rate=_rate(responded, cases),
        on_time_rate=_rate(on_time, cases),
        resolution_rate=_rate(resolved, cases),
        satisfaction=round(sat_sum / sat_n, 2) if sat_n else None,
        satisfaction_n=sat_n,
        self_handled=self_n,
    )


def _raised_figures(
    db: sqlite_utils.Database,
    scope: Scope,
    since_ms: int | None,
    until_ms: int | None,
    source: str = "whistle",
) -> tuple[int, int | None, float | None]:
    """Cases raised in [since, until) (by server receipt), those raised offline (received more
    than a minute after the phone raised them), and their average delay in ms."""
    case_cond, case_params = _visibility_sql(scope)
    bounds = " AND source = ?"
    case_params.append(source)
    if since_ms is not None:
        bounds += " AND received_ms >= ?"
        case_params.append(since_ms)
    if until_ms is not None:
        bounds += " AND received_ms < ?"
        case_params.append(until_ms)
    return db.execute(
        f"SELECT count(*), sum(received_ms - raised_ms > 60000), "
        f"avg(CASE WHEN received_ms - raised_ms > 60000 THEN received_ms - raised_ms END) "
        f"FROM whistle_cases WHERE {case_cond}{bounds}",
        case_params,
    ).fetchone()


# -- handing a case down (a hotline order forwarded by the street, issue 17) -------------------


def is_below(db: sqlite_utils.Database, unit_id: str, ancestor_id: str) -> bool:
    """``unit_id`` lies strictly under ``ancestor_id`` in the org tree."""
    row = _unit(db, unit_id)
    current = row[2] if row else None
    while current is not None:
        if current == ancestor_id:
            return True
        up = _unit(db, current)
        current = up[2] if up else None
    return False


def hand_down(
    db: sqlite_utils.Database,
    principal: Principal,
    case: CaseRow,
    level: str,
    unit_id: str,
    *,
    note: str,
    now_ms: int,
    settings: Settings,
    router: Router | None = None,
) -> None:
    """The stay of an open case ends (``forwarded``) and the next starts at a unit below the
    one holding it, with the **same deadlines**: handing a case down buys no time. The unit
    there is alerted. The caller checks who may and where to (``gridsync/hotline.py``)."""
    stint = _load_stint(db, case.stint_id)
    db.execute(
        "UPDATE whistle_stints SET ended_ms = ?, end_reason = 'forwarded' WHERE id = ?",
        [now_ms, stint.id],
    )
    cursor = db.execute(
        "INSERT INTO whistle_stints (case_id, level, unit_id, started_ms, accept_due_ms, "
        "arrive_due_ms, resolve_due_ms, accepted_ms, arrived_ms) VALUES (?, ?, ?, ?, ?, ?, ?, "
        "NULL, ?)",
        [
            case.id,
            level,
            unit_id,
            now_ms,
            stint.accept_due_ms,
            stint.arrive_due_ms,
            stint.resolve_due_ms,
            now_ms if case.source == "hotline" else None,
        ],
    )
    columns: dict[str, Any] = {
        "level": level,
        "unit_id": unit_id,
        "state": "raised",
        "accepted_by": None,
        "stint_id": cursor.lastrowid,
    }
    if level == "grid":
        columns["grid_id"] = unit_id
    _touch(db, case.id, now_ms, **columns)
    _history(
        db,
        case.id,
        "forward",
        principal.person_id,
        principal.device_id,
        now_ms,
        level,
        "raised",
        note,
    )
    tags = level_tags(level, unit_id)
    outbox.enqueue(
        db,
        _router(settings, router),
        event_key=f"whistle:{case.id}:stint:{cursor.lastrowid}:forwarded",
        kind="case_forwarded",
        tags=tags,
        context=_context(
            db, case.id, settings, note=note, from_unit_name=_unit_name(db, case.unit_id)
        ),
        now_ms=now_ms,
        cause=case.id,
        exclude=principal.person_id,
    )
    _audit_act(db, principal, case.id, "forward", case.level)

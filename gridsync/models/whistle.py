"""Wire types of whistle cases (吹哨报到, SPEC section 5): raising and acting (REST and push), the
case as phones and the web read it, and the report."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta, Struct

from gridsync.models.core import ID_PATTERN, LONG_TEXT_PATTERN, SHORT_TEXT_PATTERN
from gridsync.models.sync import DeviceTime

CaseState = Literal["raised", "accepted", "on_site", "resolved", "closed", "reopened"]
# The levels a case climbs, in order (each has its deadlines in ``Settings.whistle_deadlines``).
CaseLevel = Literal["grid", "community", "street", "department", "district"]
CASE_LEVELS: tuple[CaseLevel, ...] = get_args(CaseLevel)
WhistleAction = Literal[
    "accept", "arrive", "resolve", "escalate", "comment", "close", "reopen", "return"
]

CaseId = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
RefId = Annotated[str, Meta(min_length=1, max_length=64)]  # an existing record's id
Text = Annotated[str, Meta(max_length=4000, pattern=LONG_TEXT_PATTERN)]
Note = Annotated[str, Meta(max_length=2000, pattern=LONG_TEXT_PATTERN)]
Category = Annotated[str, Meta(min_length=1, max_length=64, pattern=SHORT_TEXT_PATTERN)]
Location = Annotated[str, Meta(max_length=500, pattern=SHORT_TEXT_PATTERN)]


class WhistleRaise(Struct, kw_only=True):
    """``data`` of a ``whistle.raise`` push mutation (the case id is the mutation's ``id``).
    Tolerates unknown fields: newer phones may send more."""

    category: Category
    grid_id: RefId | None = None
    household_id: RefId | None = None
    location: Location = ""
    description: Text = ""
    raised_at: DeviceTime | None = None  # device clock, ISO 8601 with offset


class WhistleAct(Struct, kw_only=True):
    """``data`` of a ``whistle.act`` push mutation (the case id is the mutation's ``id``)."""

    action: WhistleAction
    note: Note = ""
    # for close: 1-5, checked by act() (invalid_satisfaction); the range only keeps out numbers
    # no score is near
    satisfaction: Annotated[int, Meta(ge=-(2**31), le=2**31)] | None = None
    department_id: RefId | None = None  # for escalate from the street: the department
    at: DeviceTime | None = None  # device clock of the action


class CaseCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """REST: raise a case from the web (a secretary, a department responder)."""

    category: Category
    id: CaseId | None = None  # client UUID; generated (UUIDv7) when absent
    grid_id: CaseId | None = None
    household_id: CaseId | None = None
    location: Location = ""
    description: Text = ""


class CaseAction(Struct, kw_only=True, forbid_unknown_fields=True):
    """REST: act on a case."""

    action: WhistleAction
    note: Note = ""
    satisfaction: Annotated[int, Meta(ge=1, le=5)] | None = None
    department_id: CaseId | None = None


class Deadlines(Struct, kw_only=True):
    """Deadlines at the current level, counted from ``since`` (arrival at the level, server)."""

    level: CaseLevel
    since: str
    accept: str
    arrive: str
    resolve: str
    missed: list[str] = msgspec.field(default_factory=list)


class CaseEvent(Struct, kw_only=True):
    action: str  # raise, accept, ..., and escalate/return by the system ("by": null)
    by: str | None
    at: str  # server clock
    level: CaseLevel
    state: CaseState
    note: str = ""
    device_at: str | None = None  # the phone's clock when it sent one


CaseSource = Literal["whistle", "hotline"]
# The five types of a hotline order, and the Chinese the city platform writes them in.
OrderType = Literal["consult", "help", "complaint", "report", "suggestion"]
ORDER_TYPES: tuple[OrderType, ...] = get_args(OrderType)
ORDER_TYPE_NAMES: dict[str, OrderType] = {
    "咨询": "consult",
    "求助": "help",
    "投诉": "complaint",
    "举报": "report",
    "建议": "suggestion",
}


class CallbackInfo(Struct, kw_only=True):
    """A callback (回访) to the caller of an order: whether it reached them and, if it did,
    the caller's own verdict: the unit contacted them, the problem is resolved, they are
    satisfied."""

    by: str
    at: str
    reached: bool
    contacted: bool | None = None
    resolved: bool | None = None
    satisfied: bool | None = None
    note: str = ""


class OrderInfo(Struct, kw_only=True):
    """What a hotline order (12345, 接诉即办) adds to its case. The caller's name and phone are
    masked unless the reader may read them (gridsync/privacy.py)."""

    order_no: str
    type: OrderType
    caller_name: str
    caller_phone: str
    address: str
    dispatched_level: CaseLevel  # where the city platform dispatched it
    dispatched_unit_id: str
    received_at: str  # the platform's receipt, as sent
    callback: CallbackInfo | None = None  # the latest callback


class SupervisionInfo(Struct, kw_only=True):
    """A case under supervision (督办): the supervisor's note and the new due time; ``met`` is
    true once it was resolved by then, false once the time passed unresolved, else null."""

    by: str
    at: str
    note: str
    due_at: str
    met: bool | None = None


class WhistleCase(Struct, kw_only=True):
    id: str
    household_id: str | None
    grid_id: str
    location: str
    category: str
    description: str
    raised_by: str
    raised_at: str  # device clock, as sent
    received_at: str  # server clock: deadlines count from here
    level: CaseLevel
    state: CaseState
    deadlines: Deadlines
    history: list[CaseEvent]
    satisfaction: int | None = None
    unit_id: str = ""  # the org unit responsible now
    department_id: str | None = None
    accepted_by: str | None = None
    backflow: int = 0
    source: CaseSource = "whistle"  # "hotline": a 12345 order, with ``order``
    order: OrderInfo | None = None
    supervised: SupervisionInfo | None = None  # the latest supervision (督办), if any


class CasePage(Struct, kw_only=True):
    items: list[WhistleCase]
    total: int
    limit: int
    offset: int


class ReportRow(Struct, kw_only=True):
    level: str  # a level, or "all"
    unit_id: str | None  # None on a level's total row
    unit_name: str
    cases: int  # stays of cases at this level/unit
    responded: int
    on_time: int
    resolved: int
    escalated: int
    backflow: int
    response_rate: float | None
    on_time_rate: float | None
    resolution_rate: float | None
    satisfaction: float | None
    satisfaction_n: int
    # Stays of cases raised and resolved by one person alone (随手办): counted here and in none
    # of the figures above.
    self_handled: int = 0


class WhistleReport(Struct, kw_only=True):
    generated_at: str
    since: str | None
    until: str | None
    rows: list[ReportRow]
    # Both clocks (cases raised in the period): how many reached the server more than a minute
    # after the phone raised them (raised offline), and the mean delay of those.
    cases_raised: int = 0
    raised_offline: int = 0
    offline_delay_avg_seconds: float | None = None

"""Wire types of hotline orders (12345, 接诉即办) and supervision (督办): an order as the city
platform or the daily spreadsheet gives it, a callback (回访), the three rates' report, a
supervision and its report. The order as read is a :class:`~gridsync.models.whistle.WhistleCase`
with ``source: "hotline"`` and ``order``."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta, Struct

from gridsync.models.core import ID_PATTERN, LONG_TEXT_PATTERN, SHORT_TEXT_PATTERN, PhoneNumber
from gridsync.models.sync import DeviceTime
from gridsync.models.whistle import Note, Text

OrderNo = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
# ``type`` as sent: the English word or the platform's Chinese.
OrderTypeIn = Literal[
    "consult", "help", "complaint", "report", "suggestion", "咨询", "求助", "投诉", "举报", "建议"
]
Address = Annotated[str, Meta(max_length=500, pattern=SHORT_TEXT_PATTERN)]
UnitRef = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]


class OrderCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/hotline/orders``: an order dispatched by the city platform. The same
    ``order_no`` twice is the same order (the first one's case answers, 200)."""

    order_no: OrderNo
    type: OrderTypeIn
    caller_name: Annotated[str, Meta(max_length=100, pattern=SHORT_TEXT_PATTERN)] = ""
    caller_phone: PhoneNumber = ""
    address: Address = ""
    description: Text = ""
    unit_id: UnitRef  # the street, community, department or grid it is dispatched to
    received_at: DeviceTime  # the platform's receipt, ISO 8601 with offset


class ForwardRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST .../forward``: the unit holding an order hands it down to a unit below it (a
    street to one of its communities or grids, a community to one of its grids)."""

    unit_id: UnitRef
    note: Note = ""


class CallbackCreate(Struct, kw_only=True, forbid_unknown_fields=True):
    """A callback (回访) to the caller, by someone other than the order's handlers. When it
    reached the caller, the three verdicts are the caller's own and all three are required."""

    reached: bool
    contacted: bool | None = None  # the unit contacted the caller (响应)
    resolved: bool | None = None  # the problem is resolved (解决)
    satisfied: bool | None = None  # the caller is satisfied (满意)
    note: Note = ""


class HotlineRow(Struct, kw_only=True):
    """The three rates of a unit (``unit_id`` null: every unit) and a type (``"all"``: every
    type), from callbacks only: over the orders whose latest callback reached the caller
    (``rated``); the other orders are ``unrated`` (not yet rated, never counted as 100%)."""

    unit_id: str | None
    unit_name: str
    type: str
    orders: int
    rated: int
    unrated: int
    contacted: int
    resolved: int
    satisfied: int
    response_rate: float | None
    resolution_rate: float | None
    satisfaction_rate: float | None


class HotlineReport(Struct, kw_only=True):
    generated_at: str
    scope: str | None
    since: str | None  # orders received by the platform from then
    until: str | None  # ... and before then
    rows: list[HotlineRow]


class SuperviseRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST .../supervise``: mark a case (an order or a whistle case) supervised (督办)."""

    note: Annotated[str, Meta(min_length=1, max_length=2000, pattern=LONG_TEXT_PATTERN)]
    due_at: DeviceTime  # the new time it must be resolved by, ISO 8601 with offset


class SupervisedRow(Struct, kw_only=True):
    case_id: str
    source: str
    order_no: str | None
    level: str  # the level and unit that held the case when it was supervised
    unit_id: str
    unit_name: str
    supervised_by: str
    supervised_at: str
    note: str
    due_at: str
    resolved_at: str | None  # the first resolution after it was supervised
    met: bool | None  # resolved by due_at; null while open and not yet due


class SupervisedReport(Struct, kw_only=True):
    generated_at: str
    rows: list[SupervisedRow]
    supervised: int
    met: int
    missed: int
    pending: int

"""Wire types of the 1-5-N coverage rule (SPEC section 4): policy overrides, roll-ups,
violations, assignments, rebalancing, the assessors' sample and recorded checks (抽检)."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from msgspec import UNSET, Meta, Struct, UnsetType

from gridsync.models.core import (
    ID_PATTERN,
    LONG_TEXT_PATTERN,
    SHORT_TEXT_PATTERN,
    Household,
    Policy,
    Visit,
)

CoverageLevel = Literal["member", "branch", "grid", "community", "street", "district"]
COVERAGE_LEVELS: tuple[CoverageLevel, ...] = get_args(CoverageLevel)

ViolationKind = Literal[
    "unassigned",
    "overdue",
    "contacted_by_others_only",
    "priority_overdue",
    "member_under_min",
    "member_over_cap",
]
VIOLATION_KINDS: tuple[ViolationKind, ...] = get_args(ViolationKind)

Days = Annotated[int, Meta(ge=1, le=366)]
Count = Annotated[int, Meta(ge=0, le=10_000)]
TagName = Annotated[str, Meta(min_length=1, max_length=64, pattern=SHORT_TEXT_PATTERN)]


class PolicyOverride(Struct, kw_only=True, forbid_unknown_fields=True):
    """A community's override: fields left out follow the district default."""

    min_households_per_member: Count | UnsetType = UNSET
    max_households_per_member: Annotated[int, Meta(ge=1, le=10_000)] | UnsetType = UNSET
    cycle_days: Days | UnsetType = UNSET
    priority_tags: Annotated[list[TagName], Meta(max_length=50)] | UnsetType = UNSET
    priority_cycle_days: Days | UnsetType = UNSET
    service_kinds: Annotated[list[TagName], Meta(min_length=1, max_length=50)] | UnsetType = UNSET
    group_contact_counts_for_priority: bool | UnsetType = UNSET


class CommunityPolicy(Struct, kw_only=True):
    community_id: str
    policy: Policy
    overridden: list[str]  # the fields that differ from the district default by override


# Built positionally (a district roll-up with members has ~38,000 rows) and not tracked by the
# garbage collector (a row holds numbers, strings and a tuple of strings, never a cycle). Rows
# with the same figures share one ``kinds_covered``, a tuple for that reason.
class CoverageRow(Struct, gc=False):
    """One org unit (or member) in a roll-up. ``contacted``: active households contacted this
    cycle by anyone; ``contacted_by_responsible``: by their own responsible member (the 1-5-N
    rule; README "Coverage" defines every figure). Rates are 0..1 (4 decimals), null when their
    denominator is 0: assigned_rate, contact_rate and compliance_rate (contacted by the
    responsible member: what 1-5-N compliance is judged by) over households, overdue_rate over
    assigned, priority_overdue_rate over priority_households, members_under_min_rate and
    members_over_cap_rate over members, kinds_rate over kinds_total.

    ``verified_rate`` (最近抽检核实率) and ``verified_at``: the newest recorded check of this very
    unit drawn at or before the report's time that has a verified rate (confirmed of reached,
    ``gridsync/coverage/verified.py``), and when it was drawn; null without one (and on
    member rows). ``group_contacted``: households contacted this cycle by group visits
    (楼栋会) only, a part of ``contacted``."""

    level: CoverageLevel
    unit_id: str
    name: str
    parent_id: str | None
    households: int
    assigned: int
    unassigned: int
    contacted: int
    contacted_by_responsible: int
    overdue: int
    priority_households: int
    priority_overdue: int
    members: int
    members_under_min: int
    members_over_cap: int
    kinds_covered: tuple[str, ...]
    kinds_total: int
    assigned_rate: float | None
    contact_rate: float | None
    compliance_rate: float | None
    overdue_rate: float | None
    priority_overdue_rate: float | None
    members_under_min_rate: float | None
    members_over_cap_rate: float | None
    kinds_rate: float | None
    verified_rate: float | None = None
    verified_at: str | None = None
    # households contacted this cycle by group visits (楼栋会) only (counted in ``contacted``)
    group_contacted: int = 0


class CoverageReport(Struct, kw_only=True):
    scope_id: str | None
    at: str  # the "now" the cycle is counted back from
    rows: list[CoverageRow]


class Violation(Struct, kw_only=True):
    kind: ViolationKind
    subject: Literal["household", "member"]
    id: str
    name: str
    phone: str  # masked unless the reader may read it in full (gridsync/privacy.py)
    grid_id: str | None
    address: str = ""  # building/unit/room of a household
    member_id: str | None = None  # the responsible member of a household
    last_visit_at: str | None = None
    days_since_visit: int | None = None
    households: int | None = None  # a member's load
    limit: int | None = None  # the minimum or the cap a member is judged against


class ViolationPage(Struct, kw_only=True):
    items: list[Violation]
    total: int
    limit: int
    offset: int
    counts: dict[str, int]  # per kind, within the filter


class AssignRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    household_id: Annotated[str, Meta(min_length=1, max_length=64)]
    member_id: Annotated[str, Meta(min_length=1, max_length=64)]
    replace: bool = False  # move a household that already has a responsible member
    override_cap: bool = False  # exceed the member's cap on purpose (logged)
    reason: Annotated[str, Meta(max_length=500, pattern=LONG_TEXT_PATTERN)] = ""


class Assignment(Struct, kw_only=True):
    household_id: str
    member_id: str
    previous_member_id: str | None
    status: Literal["assigned", "moved", "unchanged"]
    seq: int | None
    load: int  # the member's households after the change
    cap: int
    override_cap: bool = False


class Suggestion(Struct, kw_only=True):
    id: str  # "<household_id>><member_id>"
    household_id: str
    member_id: str
    member_name: str
    grid_id: str
    building: str
    reason: Literal["neighbour", "least_loaded"]
    member_load: int  # before this suggestion
    cap: int


class RebalancePlan(Struct, kw_only=True):
    scope_id: str | None
    suggestions: list[Suggestion]
    unplaced: list[str]  # unassigned households with no member of spare capacity


class SuggestionPick(Struct, kw_only=True, forbid_unknown_fields=True):
    household_id: Annotated[str, Meta(min_length=1, max_length=64)]
    member_id: Annotated[str, Meta(min_length=1, max_length=64)]


class ApplyRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    items: Annotated[list[SuggestionPick], Meta(min_length=1, max_length=5000)]


class ApplyOutcome(Struct, kw_only=True):
    household_id: str
    member_id: str
    status: Literal["assigned", "moved", "unchanged", "refused"]
    code: str | None = None
    message: str | None = None


class ApplyResult(Struct, kw_only=True):
    applied: int
    refused: int
    items: list[ApplyOutcome]


class SampledHousehold(Struct, kw_only=True):
    household: Household
    last_visits: list[Visit]


class Sample(Struct, kw_only=True):
    scope_id: str | None
    seed: str
    n: int
    population: int
    items: list[SampledHousehold]


# -- recorded checks (抽检) -----------------------------------------------------------------------

CheckOutcome = Literal["confirmed", "denied", "unreachable"]
CHECK_OUTCOMES: tuple[CheckOutcome, ...] = get_args(CheckOutcome)
MAX_CHECK_HOUSEHOLDS = 200  # a check is a call or a knock per household: not a census
MAX_CHECK_NOTE = 500


class CheckRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """Draw a recorded check: ``n`` households of the org unit ``scope``, with a seed the
    server makes."""

    scope: Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
    n: Annotated[int, Meta(ge=1, le=MAX_CHECK_HOUSEHOLDS)] = 20


class CheckResult(Struct, kw_only=True, forbid_unknown_fields=True):
    """The checker's outcome for one household of a check: ``confirmed`` (the household says
    the contact happened), ``denied`` (it says it did not), ``unreachable`` (nobody reached)."""

    outcome: CheckOutcome
    note: Annotated[str, Meta(max_length=MAX_CHECK_NOTE, pattern=LONG_TEXT_PATTERN)] = ""


class CheckedVisit(Struct, kw_only=True):
    """A household's newest non-voided visit when the check was drawn: what the checker asks
    the household about."""

    id: str
    at: str  # device clock, ISO 8601 with offset, as the phone sent it
    member_id: str
    channel: str
    kinds: list[str] = []


class CheckedHousehold(Struct, kw_only=True):
    household_id: str
    last_visit: CheckedVisit | None  # null: never visited when drawn
    outcome: CheckOutcome | None  # null until the checker records one
    note: str = ""


class Check(Struct, kw_only=True):
    """A recorded check (抽检): who drew it and when, the server's seed (``gridsync coverage
    sample --scope SCOPE --n N --seed SEED`` draws the same households over the same
    households), and the outcomes. ``verified_rate``: confirmed of reached (confirmed +
    denied), 4 decimals; null when no household was reached."""

    id: str
    scope: str
    n: int
    seed: str
    drawn_by: str | None  # person id; null: the operator at the CLI
    drawn_at: str
    households: list[CheckedHousehold]
    verified_rate: float | None

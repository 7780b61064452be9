"""Wire types of the org, people, households, visits, devices and errors, with the bounds and
vocabularies (roles, channels, id shape) that define their fields.

Field names of Household and Visit are the phone app's contract (SPEC section 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta, Struct

Role = Literal[
    "admin",
    "street",
    "community_secretary",
    "branch_secretary",
    "grid_worker",  # 网格员: serves one or more whole grids (their scope names the grids)
    "member",
    "department",
    "supervisor",  # 督办: the district's supervisors (scope: the district)
    "hotline",  # the 12345 platform's integration credential (scope: the district)
    # 党建指导员: scoped to one or more communities; syncs, visits and raises cases like a
    # member, never a household's responsible member (gridsync/coverage/members.py)
    "instructor",
]
ROLES: tuple[Role, ...] = get_args(Role)
# Why a person left (gridsync/lifecycle.py): 迁出, 去世, 转出, 其他.
InactiveReason = Literal["moved_away", "deceased", "transferred", "other"]
INACTIVE_REASONS: tuple[InactiveReason, ...] = get_args(InactiveReason)
UnitKind = Literal["district", "street", "community", "grid", "branch", "department"]
HouseholdStatus = Literal["active", "moved_out", "archived"]
Channel = Literal["door", "phone", "wechat", "other"]

# The shape of every id a client may create (REST and phones alike). msgspec and Litestar apply
# a pattern with re.search, where a bare ``$`` also matches before a final newline ("id\n" would
# pass); ``(?!\n)`` closes that and keeps the pattern valid ECMA-262 for the JSON Schema.
ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$(?!\n)"
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]

# The one text rule (issue 12's review): no control character in what people type. A short text
# (a name, an address part, a phone, a label, a category, a URL) is one line: no C0 control (tab
# and newline included), no DEL, no C1 control. A long text (a note, a description, a reason)
# may hold tab, newline and carriage return (a note typed in lines, or a CSV cell written on
# Windows with CRLF), and no other control. Control characters are invisible in every reader
# of these texts and corrupt some (an XLSX cannot hold them; a terminal or a log reader obeys
# ESC). The wire types carry these patterns; the domain checks what the CLI passes against
# the same types (``org.checked``); the importer reads them from ``HouseholdFields``.
SHORT_TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*$(?!\n)"
LONG_TEXT_PATTERN = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
Limit = Annotated[int, Meta(ge=1, le=500)]

# Tags are a short vocabulary (elderly_alone, disabled, low_income, renter, ...): at most
# MAX_TAGS on a household and in one mutation's tags_add or tags_remove, each at most
# MAX_TAG_LENGTH characters. Without a cap 20,000 tags held the write lock for 38 s (issue 12).
MAX_TAGS = 32
MAX_TAG_LENGTH = 32
# Channel URLs per person: each is parsed by Apprise when the person is saved (notify/routing.py).
MAX_CHANNELS = 10
MAX_CHANNEL_LENGTH = 500
# A list of ids in a request body (a person's scope): far above any real scope.
MAX_IDS = 1000

# A phone number as most readers receive it: masked (``138****5678``; who reads which in full is
# gridsync/privacy.py). Both ends of the wire need the shape: the server never stores a mask
# sent back as a number, and the reference client never sends one.
MASK_CHAR = "*"


def is_masked(value: object) -> bool:
    """Whether a phone value is (or could be) a mask rather than a number: it holds a ``*``
    (or a full-width ``＊``, as a Chinese input method types a mask retyped by hand). No phone
    number does (the importer accepts digits, spaces, ``+``, ``-`` and brackets)."""
    return isinstance(value, str) and (MASK_CHAR in value or "＊" in value)


def field_types(struct: type[Struct]) -> Iterator[tuple[str, msgspec.inspect.Type]]:
    """Each field of a wire type with each type it may take (every member of a union): where
    the CLI and the import read the bounds a wire type sets (lengths, ranges, patterns), so the
    wire type stays their one owner and they refuse what the API would."""
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)  # type[Struct] is inspected as one
    for f in info.fields:
        types = f.type.types if isinstance(f.type, msgspec.inspect.UnionType) else (f.type,)
        for t in types:
            yield f.name, t


class ErrorBody(Struct, kw_only=True):
    """Every 4xx and 5xx body. Besides the keys named here, an error may carry keys of its own
    that say more (``load`` and ``cap`` of ``over_cap``, ``state`` and ``action`` of
    ``illegal_transition``): a client reads ``code`` and ignores what it does not know."""

    code: str
    message: str
    field: str | None = None
    # 5xx only: the id of the request in the server's log (also the X-Request-ID header)
    request_id: str | None = None
    # 409 seq_gap: the seq the server expects next from this device
    expected_seq: int | None = None
    # 401 device_revoked: the phone must wipe its data
    wipe: bool | None = None
    # 403 device_draining: the phone must push what it holds (once), then wipe
    drain: bool | None = None


class OrgUnit(Struct, kw_only=True):
    id: str
    kind: UnitKind
    name: str
    parent_id: str | None = None
    grid_id: str | None = None  # a branch's grid


class Person(Struct, kw_only=True):
    id: str
    name: str
    roles: list[Role]
    scope: list[str]  # org unit ids
    branch_id: str | None = None
    active: bool = True
    # set when the person left (active false): why, and when (ISO 8601)
    inactive_reason: InactiveReason | None = None
    inactive_since: str | None = None


class Geo(Struct, kw_only=True, frozen=True):
    lat: Annotated[float, Meta(ge=-90, le=90)]
    lon: Annotated[float, Meta(ge=-180, le=180)]


class Household(Struct, kw_only=True):
    id: str
    grid_id: str
    building: str = ""
    unit: str = ""
    room: str = ""
    head_name: str = ""
    phone: str = ""
    size: int = 1
    tags: list[str] = msgspec.field(default_factory=list)
    notes: str = ""
    responsible_member_id: str | None = None
    status: HouseholdStatus = "active"


class Visit(Struct, kw_only=True):
    id: str
    household_id: str
    member_id: str
    device_id: str | None
    at: str  # device clock, ISO 8601 with offset, as the phone sent it
    channel: Channel
    # a tuple: Visits built from rows share one per stored value (gridsync/households.py)
    kinds: tuple[str, ...] = ()
    note: str = ""
    geo: Geo | None = None
    voided: bool = False
    # a group visit (楼栋会): every household it was a contact of (``household_id`` the first)
    household_ids: list[str] | None = None


class Policy(Struct, kw_only=True):
    """The coverage policy in force for a community (SPEC section 4)."""

    min_households_per_member: int
    max_households_per_member: int
    cycle_days: int
    priority_tags: list[str]
    priority_cycle_days: int
    service_kinds: list[str]
    # whether a group visit (楼栋会) satisfies a priority household's cycle; by default a
    # priority household needs a visit of its own
    group_contact_counts_for_priority: bool = False


class Me(Struct, kw_only=True):
    person: Person
    device_id: str
    roles: list[Role]
    scope: list[str]
    grid_ids: list[str]
    policy: Policy
    server_time: str


class Device(Struct, kw_only=True):
    id: str
    person_id: str
    label: str
    created_at: str
    revoked_at: str | None = None
    last_seen_at: str | None = None
    # Revoked with drain: it may push once more, then is revoked (``revoked_at``) and wiped.
    draining_since: Annotated[str, Meta(max_length=64)] | None = None


Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=SHORT_TEXT_PATTERN)]
PhoneNumber = Annotated[str, Meta(max_length=32, pattern=SHORT_TEXT_PATTERN)]
ChannelUrl = Annotated[str, Meta(max_length=MAX_CHANNEL_LENGTH, pattern=SHORT_TEXT_PATTERN)]
Label = Annotated[str, Meta(max_length=100, pattern=SHORT_TEXT_PATTERN)]
Reason = Annotated[str, Meta(max_length=500, pattern=LONG_TEXT_PATTERN)]


class UnitWrite(Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/org-units/{id}``: create or rename/move an org unit (admins)."""

    kind: UnitKind
    name: Name
    parent_id: Id | None = None
    grid_id: Id | None = None  # a branch's grid


class PersonWrite(Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/people/{id}``: create or update a person and their scope (admins)."""

    name: Name
    roles: Annotated[list[Role], Meta(min_length=1, max_length=16)]
    scope: Annotated[list[Id], Meta(max_length=MAX_IDS)] = msgspec.field(
        default_factory=list
    )  # org unit ids
    branch_id: Id | None = None
    phone: PhoneNumber = ""
    channels: Annotated[list[ChannelUrl], Meta(max_length=MAX_CHANNELS)] = msgspec.field(
        default_factory=list
    )
    locale: Literal["zh-CN", "en"] = "zh-CN"


class ScopeWrite(Struct, kw_only=True, forbid_unknown_fields=True):
    """``PUT /api/v1/people/{id}/scope``: replace a person's scope (admins)."""

    units: Annotated[list[Id], Meta(max_length=MAX_IDS)]


class EnrollRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    person_id: Id
    label: Label = ""
    device_id: Id | None = None


class Enrolled(Struct, kw_only=True):
    """Shown once: the server keeps only a hash of the token."""

    device_id: str
    person_id: str
    token: str


class RevokeRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    reason: Reason = ""
    # Let the device push what it holds once (its unsent work), then wipe it; meanwhile it may
    # pull nothing. Without drain the device is shut out at once.
    drain: bool = False


class DeactivateRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/v1/people/{id}/deactivate`` (admins): the person left the district's work."""

    reason: InactiveReason
    # revoke their phones with a drain (each pushes its unsent work once), not at once
    drain: bool = False


class Deactivation(Struct, kw_only=True):
    """What deactivating a person did: ``status`` ``deactivated`` or ``unchanged`` (already
    inactive); the households they were responsible for (now unassigned) and the devices
    revoked (or set draining)."""

    person_id: str
    status: Literal["deactivated", "unchanged"]
    reason: InactiveReason
    unassigned: list[str]
    devices: list[str]
    drain: bool


class OrgUnitPage(Struct, kw_only=True):
    items: list[OrgUnit]
    total: int
    limit: int
    offset: int


class PersonPage(Struct, kw_only=True):
    items: list[Person]
    total: int
    limit: int
    offset: int


class HouseholdPage(Struct, kw_only=True):
    items: list[Household]
    total: int
    limit: int
    offset: int


class VisitPage(Struct, kw_only=True):
    items: list[Visit]
    total: int
    limit: int
    offset: int


class DevicePage(Struct, kw_only=True):
    items: list[Device]
    total: int
    limit: int
    offset: int


HOUSEHOLD_STATUSES: tuple[HouseholdStatus, ...] = get_args(HouseholdStatus)

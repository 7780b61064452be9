"""Wire Structs of the sync protocol (SPEC section 3): push, pull, status, conflicts.

Sync payloads come from phones of several app versions, so envelopes tolerate unknown keys
(a newer phone's extra fields are ignored) while every known field is checked strictly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from gridsync.models.core import (
    LONG_TEXT_PATTERN,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    SHORT_TEXT_PATTERN,
    Channel,
    Geo,
)

# The layout of a hybrid logical clock string (gridsync/sync/hlc.py reads and writes them).
HLC_PATTERN = r"^[0-9]{15}:[0-9]{5}:[A-Za-z0-9_.:\-]{1,64}$"

# Hot-path strings carry length bounds only: msgspec checks a regex pattern per value at about
# ten times the cost of the whole decode, so push checks the HLC layout itself (push.py).
HlcStr = Annotated[
    str,
    Meta(
        min_length=23,
        max_length=86,
        description=(
            "hybrid logical clock <15-digit wall ms>:<5-digit counter>:<device id>, pattern "
            + HLC_PATTERN
        ),
    ),
]
Mid = Annotated[str, Meta(min_length=1, max_length=64)]
# Ids on the hot path carry length bounds only; push checks their layout (ID_PATTERN) itself.
SyncId = Annotated[str, Meta(min_length=1, max_length=64)]
# Texts follow the one text rule (models.core): a short text is one line without control
# characters, a long one may hold tabs and line breaks. The pattern costs about 1 µs per text
# of a push (measured with msgspec 0.19), nothing beside the writes of the mutation.
ShortText = Annotated[str, Meta(max_length=200, pattern=SHORT_TEXT_PATTERN)]
LongText = Annotated[str, Meta(max_length=4000, pattern=LONG_TEXT_PATTERN)]
PhoneText = Annotated[str, Meta(max_length=40, pattern=SHORT_TEXT_PATTERN)]
Tag = Annotated[str, Meta(min_length=1, max_length=MAX_TAG_LENGTH, pattern=SHORT_TEXT_PATTERN)]
Tags = Annotated[list[Tag], Meta(max_length=MAX_TAGS)]
Kind = Annotated[str, Meta(min_length=1, max_length=64)]
# A phone's clock reading, ISO 8601 with offset; checked by ``clock.device_time_ms`` (range,
# offset), which is what keeps year 9999 out (issue 12).
DeviceTime = Annotated[
    str,
    Meta(
        min_length=16,
        max_length=40,
        description="ISO 8601 with offset, e.g. 2026-11-20T09:30:00+08:00",
    ),
]
FieldName = Annotated[str, Meta(min_length=1, max_length=64)]
# ``fields`` of household.update: HouseholdFields has 8 names; room for a few unknown ones, so
# that they are refused by name (forbidden_field, validation_error) rather than by count.
MAX_UPDATE_FIELDS = 16

# -- push ---------------------------------------------------------------------------------------


class Mutation(Struct, kw_only=True, gc=False):
    """One queued change from a device (SPEC 3.1). ``data`` stays raw until the op's handler
    type decodes it, so a bad ``data`` rejects one mutation, not the batch. Hot-path Structs
    skip the cyclic GC (``gc=False``): they hold plain values only."""

    mid: Mid
    seq: Annotated[int, Meta(ge=1, le=2**53)]
    hlc: HlcStr
    op: Annotated[str, Meta(min_length=1, max_length=64)]
    id: SyncId
    base_seq: Annotated[int, Meta(ge=0, le=2**53)] | None = None
    # The values are checked when converted to HouseholdFields (bounded there); their size here
    # is bounded by the body cap (4 MiB) like ``data``.
    fields: Annotated[dict[FieldName, Any], Meta(max_length=MAX_UPDATE_FIELDS)] | None = None
    tags_add: Tags = []
    tags_remove: Tags = []
    # The op's payload, kept raw (any JSON/msgpack value). Absent = empty Raw; a client building
    # Mutations to encode should set it (``msgspec.Raw(msgspec.json.encode(...))``) or use dicts.
    # A Raw takes no Meta: its size is bounded by the body cap (``max_push_bytes``, 4 MiB, before
    # and after gzip), its content by the op's data Struct, whose every field is bounded.
    data: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)


class PushRequest(Struct, kw_only=True):
    device_id: SyncId
    mutations: Annotated[list[Mutation], Meta(max_length=100_000)]
    # the device's pull cursor, echoed back (see PushResponse); bounded as the pull's query
    cursor: Annotated[str, Meta(max_length=1024)] | None = None
    # Whether this is the device's drain push (its last, after a revoke with drain). A client
    # that marks its drain push sends false on every other push: a device being drained then
    # has an unmarked push refused (403 device_draining, nothing stored) and sends everything
    # it holds in one push marked true, so a drain landing between two batches loses nothing.
    # Absent (an older client): the first push of a draining device that applies is its last.
    drain: bool | None = None


class LostValue(Struct, kw_only=True, gc=False):
    """A value that lost a merge: ``value`` lost to ``winner``; both are in the conflict log.
    Tag membership conflicts use ``field`` = ``tags:<tag>`` with boolean values."""

    field: str
    value: Any
    winner: Any
    conflict_id: int | None = None


class IgnoredField(Struct, kw_only=True, gc=False):
    """A field of an applied mutation that was not stored: ``masked_phone`` is a ``phone``
    holding a mask (``138****1234``, as the phone received it), never taken for the number."""

    field: str
    code: str


class MutationResult(Struct, kw_only=True, gc=False, omit_defaults=True):
    mid: str
    status: Literal["applied", "merged", "duplicate", "rejected"]
    lost: list[LostValue] | None = None
    ignored: list[IgnoredField] | None = None
    clock: Literal["clamped"] | None = None
    code: str | None = None
    message: str | None = None


class PushResponse(Struct, kw_only=True, omit_defaults=True):
    results: list[MutationResult]
    server_hlc: str
    last_seq: int = 0  # the device's highest applied push seq after this batch
    cursor: str | None = None  # the request's cursor, unchanged: pull to see merged state
    # This was the drain push of a device revoked with drain: it is now revoked; wipe it.
    drained: bool = False


# -- op payloads ---------------------------------------------------------------------------------


class HouseholdCreate(Struct, kw_only=True, frozen=True):
    """``data`` of ``household.create`` (``id`` is the client UUID of the new household).
    ``responsible_member_id`` is not a field here: it is set by secretaries."""

    grid_id: SyncId
    building: ShortText = ""
    unit: ShortText = ""
    room: ShortText = ""
    head_name: ShortText = ""
    phone: PhoneText = ""
    size: Annotated[int, Meta(ge=0, le=9999)] = 1
    tags: Tags = msgspec.field(default_factory=list)
    notes: LongText = ""


class HouseholdFields(Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """What ``fields`` of ``household.update`` may set, per field last-writer-wins."""

    grid_id: SyncId | UnsetType = UNSET
    building: ShortText | UnsetType = UNSET
    unit: ShortText | UnsetType = UNSET
    room: ShortText | UnsetType = UNSET
    head_name: ShortText | UnsetType = UNSET
    phone: PhoneText | UnsetType = UNSET
    size: Annotated[int, Meta(ge=0, le=9999)] | UnsetType = UNSET
    notes: LongText | UnsetType = UNSET


class HouseholdMoveOut(Struct, kw_only=True, frozen=True):
    note: LongText = ""


# A group visit (楼栋会): at most this many households in one ``visit.create``.
MAX_GROUP_HOUSEHOLDS = 50


class VisitCreate(Struct, kw_only=True, gc=False, frozen=True):
    """A visit of ONE household (``household_id``), or a group visit (``household_ids``: 1 to
    50 distinct households of the member's scope, one record counted as a contact of each):
    exactly one of the two (else ``validation_error``)."""

    household_id: SyncId | None = None
    household_ids: (
        Annotated[list[SyncId], Meta(min_length=1, max_length=MAX_GROUP_HOUSEHOLDS)] | None
    ) = None
    at: DeviceTime  # device clock; kept as the phone sent it
    channel: Channel
    kinds: Annotated[list[Kind], Meta(max_length=32)] = msgspec.field(default_factory=list)
    note: LongText = ""
    geo: Geo | None = None


class VisitVoid(Struct, kw_only=True, frozen=True):
    reason: LongText = ""


# -- pull ----------------------------------------------------------------------------------------

ChangeType = Literal["org_unit", "person", "household", "visit", "whistle", "policy", "notice"]


class Change(Struct, kw_only=True, gc=False, omit_defaults=True):
    """One change: ``put`` carries the record's wire fields in ``data``; ``remove`` has none."""

    type: ChangeType
    id: str
    seq: int
    op: Literal["put", "remove"]
    data: Any = None


class PullResponse(Struct, kw_only=True):
    changes: list[Change]
    cursor: str
    has_more: bool
    reset: bool
    server_hlc: str


class SyncStatus(Struct, kw_only=True):
    server_hlc: str
    server_seq: int
    device_last_seq: int  # the highest push seq applied for this device: the next is +1
    # Records a full sync would download for this person: org units, people, households and
    # visits (the bulk; whistle cases and the policy come on top).
    full_sync_changes: int
    full_sync_bytes: int  # estimated gzip bytes of that full sync
    pending_conflicts: int  # open conflicts in the person's scope
    # The device was revoked with drain: push everything it holds in one request, then wipe.
    draining: bool = False


# -- conflicts -----------------------------------------------------------------------------------


class ConflictEntry(Struct, kw_only=True):
    """A value that lost a merge, with both sides (SPEC 3.1)."""

    id: int
    household_id: str
    grid_id: str
    field: str
    value: Any  # the losing value
    winner: Any  # the value that won
    lost_hlc: str
    lost_person_id: str | None
    lost_device_id: str | None
    winner_hlc: str | None
    winner_person_id: str | None
    winner_device_id: str | None
    mid: str | None
    created_at: str
    status: Literal["open", "restored", "dismissed"]
    resolved_at: str | None = None
    resolved_by: str | None = None


class ConflictPage(Struct, kw_only=True):
    items: list[ConflictEntry]
    total: int
    limit: int
    offset: int


class RestoreRequest(Struct, kw_only=True):
    note: Annotated[str, Meta(max_length=500, pattern=LONG_TEXT_PATTERN)] = ""

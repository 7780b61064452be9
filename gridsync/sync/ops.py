"""Push ops: what a handler is given (:class:`OpContext`), what it answers (:class:`Outcome`),
and :class:`OpSpec`, an op's name with the Struct its ``data`` decodes into and its handler.

Push (``gridsync/sync/push.py``) decodes a mutation's envelope, looks the op up in
``gridsync/sync/registry.py`` (``OPS``), decodes ``data`` (when the op has a data type; JSON or
msgpack, whichever the request body was), and calls the handler inside the batch's
transaction. A handler returns an :class:`Outcome` or raises a
:class:`gridsync.errors.GridsyncError`, which push turns into a ``rejected`` result with the
error's ``code`` and message (no poison pill: the rest of the batch goes on).

Each area's handlers are plain functions in its module of ``sync/`` (``sync/households.py``,
``sync/whistle.py``), beside its pull sources; the registry lists them as data::

    op("whistle.raise", whistle.raise_case, data_type=WhistleRaise, new_id=True)

An op on the hot path may instead have a *batch* handler (:func:`batch_op`): push then hands it
every consecutive run of that op in one call, so it can check, insert and update with one
query per run instead of one per mutation (visits and household updates do this). Order is
kept: runs are consecutive. A batch handler has no savepoint per mutation: it must refuse a
mutation (return its error) before writing anything of it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
import sqlite_utils

from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.errors import GridsyncError
from gridsync.models import Mutation
from gridsync.sync.hlc import ms_of

__all__ = [
    "BatchItem",
    "Mutation",
    "OpContext",
    "OpSpec",
    "Outcome",
    "batch_op",
    "by_name",
    "op",
]


@dataclass
class OpContext:
    """What a handler may use: the open write transaction, who is pushing, and the clocks."""

    db: sqlite_utils.Database
    principal: Principal
    settings: Settings
    clock: Clock
    hlc: str  # the mutation's HLC after clock sanity (clamped if it ran ahead)
    received_ms: int  # server receipt time of the push
    server_hlc: Callable[[], str] | None = None  # a fresh server HLC (restores, server stamps)
    mid: str = ""
    # When the edit was made, for "was the household in scope then": the HLC's wall time, but
    # never before the device's earlier mutations (its HLCs only go forward; see push.py).
    scope_ms: int = 0


@dataclass
class Outcome:
    # "duplicate": no effect, e.g. the same id ("rejected" is an error raised, not an outcome)
    status: Literal["applied", "merged", "duplicate"] = "applied"
    lost: list[dict[str, Any]] = field(default_factory=list)
    # False when the op's own row records the mutation (a visit is its own record, found again
    # by its id): push then skips the sync_mutations row, which halves the writes of a visit.
    logged: bool = True
    # Fields of the mutation not applied and why, e.g. {"field": "phone", "code":
    # "masked_phone"}: a mask that a phone sent back as the number (gridsync/privacy.py).
    ignored: list[dict[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class BatchItem:
    """One mutation of a run handed to a batch handler, with its decoded data and final HLC."""

    m: Mutation
    data: Any
    hlc: str
    scope_ms: int  # see OpContext.scope_ms


@dataclass(frozen=True)
class OpSpec:
    name: str
    handler: Callable[..., Outcome]
    data_type: type | None
    decoder: msgspec.json.Decoder | None
    msgpack_decoder: msgspec.msgpack.Decoder | None = None
    batch_handler: Callable[..., list[Outcome | GridsyncError]] | None = None
    # True when the op's own row records a mutation (a visit, found again by its id): push
    # then neither logs it in ``sync_mutations`` nor looks its mid up there.
    own_record: bool = False
    # True when the mutation's ``id`` names a record the op creates: push checks it against the
    # shape of ids made through REST (``models.ID_PATTERN``) before the handler runs.
    new_id: bool = False

    def decode(self, raw: msgspec.Raw | None, fmt: str) -> Any:
        """``data`` as the op's type (``None`` when the op has none); raises ValidationError."""
        if self.data_type is None:
            return None
        if raw is None or len(raw) == 0 or bytes(raw) in (b"null", b"\xc0"):
            # No data: the op's type with all defaults (fails when fields are required).
            return msgspec.convert({}, self.data_type)
        if fmt == "msgpack":
            assert self.msgpack_decoder is not None
            return self.msgpack_decoder.decode(raw)
        assert self.decoder is not None
        return self.decoder.decode(raw)


def op(
    name: str,
    handler: Callable[..., Outcome],
    *,
    data_type: type | None = None,
    new_id: bool = False,
) -> OpSpec:
    """An op handled one mutation at a time: ``handler(ctx, m, data) -> Outcome`` (``data`` as
    ``data_type``, or None when the op has none). ``new_id``: the mutation's ``id`` names a
    record the op creates (push checks its shape first)."""
    return OpSpec(
        name,
        handler,
        data_type,
        msgspec.json.Decoder(data_type) if data_type is not None else None,
        msgspec.msgpack.Decoder(data_type) if data_type is not None else None,
        new_id=new_id,
    )


def batch_op(
    name: str,
    batch_handler: Callable[..., list[Outcome | GridsyncError]],
    *,
    data_type: type | None = None,
    own_record: bool = False,
    new_id: bool = False,
) -> OpSpec:
    """An op handled by runs: ``batch_handler(ctx, items: list[BatchItem]) -> list[Outcome |
    GridsyncError]`` (one result per item, in order); push hands it every run of the op in a
    batch. Its one-mutation handler is the batch of one. ``own_record``: the op's rows are the
    record of its mutations (its outcomes say ``logged=False``)."""

    def one(ctx: OpContext, m: Mutation, data: Any) -> Outcome:
        item = BatchItem(m, data, ctx.hlc, ctx.scope_ms or ms_of(ctx.hlc))
        result = batch_handler(ctx, [item])[0]
        if isinstance(result, GridsyncError):
            raise result
        return result

    spec = op(name, one, data_type=data_type, new_id=new_id)
    return dataclasses.replace(spec, batch_handler=batch_handler, own_record=own_record)


def by_name(*specs: OpSpec) -> dict[str, OpSpec]:
    """The op table keyed by name; an op listed twice is a mistake, refused at import."""
    table: dict[str, OpSpec] = {}
    for spec in specs:
        if spec.name in table:
            raise ValueError(f"op {spec.name} is listed twice")
        table[spec.name] = spec
    return table

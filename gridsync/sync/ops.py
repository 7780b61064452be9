"""The push op registry: each op name maps to the Struct its ``data`` decodes into and a handler.

Push (``gridsync/sync/push.py``) decodes a mutation's envelope, looks the op up here, decodes
``data`` (when the op has a data type; JSON or msgpack, whichever the request body was), and
calls the handler inside the batch's transaction. A handler returns an :class:`Outcome` or
raises a :class:`gridsync.errors.GridsyncError`, which push turns into a ``rejected`` result with
the error's ``code`` and message (no poison pill: the rest of the batch goes on).

Areas register their ops at import time::

    @register("whistle.raise", data_type=WhistleRaise)
    def raise_case(ctx: OpContext, m: Mutation, data: WhistleRaise) -> Outcome: ...

and are imported by :func:`load_builtin_ops`.

An op on the hot path may also register a *batch* handler (``register_batch``): push then hands
it every consecutive run of that op in one call, so it can check, insert and update with one
query per run instead of one per mutation (visits and household updates do this). Order is
kept: runs are consecutive. A batch handler has no savepoint per mutation: it must refuse a
mutation (return its error) before writing anything of it.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils

from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.errors import GridsyncError
from gridsync.models import Mutation
from gridsync.sync.hlc import ms_of

__all__ = [
    "REGISTRY",
    "BatchItem",
    "Mutation",
    "OpContext",
    "OpSpec",
    "Outcome",
    "load_builtin_ops",
    "register",
    "register_batch",
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
    status: str = "applied"  # "applied", "merged" or "duplicate" (no effect, e.g. same id)
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


REGISTRY: dict[str, OpSpec] = {}

BUILTIN_OP_MODULES = (
    "gridsync.sync.ops_households",
    "gridsync.sync.ops_whistle",
)


def register(name: str, *, data_type: type | None = None, new_id: bool = False) -> Callable:
    def decorate(handler: Callable[..., Outcome]) -> Callable[..., Outcome]:
        if name in REGISTRY and REGISTRY[name].handler is not handler:
            raise ValueError(f"op {name} is registered twice")
        decoder = msgspec.json.Decoder(data_type) if data_type is not None else None
        mp = msgspec.msgpack.Decoder(data_type) if data_type is not None else None
        batch = REGISTRY[name].batch_handler if name in REGISTRY else None
        REGISTRY[name] = OpSpec(name, handler, data_type, decoder, mp, batch, new_id=new_id)
        return handler

    return decorate


def register_batch(
    name: str, *, data_type: type | None = None, own_record: bool = False, new_id: bool = False
) -> Callable:
    """Register an op by its batch handler ``(ctx, items: list[BatchItem]) -> list[Outcome |
    GridsyncError]`` (one result per item, in order): push hands it every run of the op in a
    batch. Its one-mutation handler is the batch of one. ``own_record``: the op's rows are the
    record of its mutations (its outcomes say ``logged=False``)."""

    def decorate(fn: Callable[..., list[Outcome | GridsyncError]]) -> Callable:
        def one(ctx: OpContext, m: Mutation, data: Any) -> Outcome:
            result = fn(ctx, [BatchItem(m, data, ctx.hlc, ctx.scope_ms or ms_of(ctx.hlc))])[0]
            if isinstance(result, GridsyncError):
                raise result
            return result

        register(name, data_type=data_type, new_id=new_id)(one)
        spec = REGISTRY[name]
        REGISTRY[name] = OpSpec(
            spec.name,
            spec.handler,
            spec.data_type,
            spec.decoder,
            spec.msgpack_decoder,
            fn,
            own_record,
            new_id,
        )
        return fn

    return decorate


@functools.cache
def load_builtin_ops() -> dict[str, OpSpec]:
    """Import the modules that register the built-in ones, once (push and pull call this on
    every request)."""
    for module in BUILTIN_OP_MODULES:
        importlib.import_module(module)
    return REGISTRY

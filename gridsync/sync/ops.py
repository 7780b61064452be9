"""The push op registry: each op name maps to the Struct its ``data`` decodes into and a handler.

Push (``gridsync/sync/push.py``) decodes a mutation's envelope, looks the op up here, decodes
``data`` (when the op has a data type), and calls the handler inside the batch's transaction.
A handler returns an :class:`Outcome` or raises a :class:`gridsync.errors.GridsyncError`, which
push turns into a ``rejected`` result with the error's ``code`` and message (no poison pill:
the rest of the batch goes on).

Areas register their ops at import time::

    @register("whistle.raise", data_type=WhistleRaise)
    def raise_case(ctx: OpContext, m: Mutation, data: WhistleRaise) -> Outcome: ...

and are imported by :func:`load_builtin_ops`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils

from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings


class Mutation(msgspec.Struct, kw_only=True):
    """One queued change from a device (SPEC 3.1). Unknown envelope keys are tolerated so that
    older servers accept newer phones' extra fields."""

    mid: str
    seq: int
    hlc: str
    op: str
    id: str
    base_seq: int | None = None
    fields: dict[str, Any] | None = None
    tags_add: list[str] = msgspec.field(default_factory=list)
    tags_remove: list[str] = msgspec.field(default_factory=list)
    data: msgspec.Raw | None = None


@dataclass
class OpContext:
    """What a handler may use: the open write transaction, who is pushing, and the clocks."""

    db: sqlite_utils.Database
    principal: Principal
    settings: Settings
    clock: Clock
    hlc: str  # the mutation's HLC after clock sanity (clamped if it ran ahead)
    received_ms: int  # server receipt time of the push


@dataclass
class Outcome:
    status: str = "applied"  # "applied" or "merged"
    lost: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class OpSpec:
    name: str
    handler: Callable[..., Outcome]
    data_type: type | None
    decoder: msgspec.json.Decoder | None


REGISTRY: dict[str, OpSpec] = {}

BUILTIN_OP_MODULES = (
    "gridsync.sync.ops_households",
    "gridsync.sync.ops_whistle",
)


def register(name: str, *, data_type: type | None = None) -> Callable:
    def decorate(handler: Callable[..., Outcome]) -> Callable[..., Outcome]:
        if name in REGISTRY and REGISTRY[name].handler is not handler:
            raise ValueError(f"op {name} is registered twice")
        decoder = msgspec.json.Decoder(data_type) if data_type is not None else None
        REGISTRY[name] = OpSpec(name, handler, data_type, decoder)
        return handler

    return decorate


def load_builtin_ops() -> dict[str, OpSpec]:
    for module in BUILTIN_OP_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return REGISTRY

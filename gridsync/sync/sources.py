"""Pull sources: each change ``type`` of SPEC 3.2 (``org_unit``, ``person``, ``household``,
``visit``, ``whistle``, ``policy``) has a function that lists that type's changes in a scope.

Pull (``gridsync/sync/pull.py``) asks every registered source for its changes with
``after_seq < seq <= upto_seq`` (``upto_seq`` pins the page to one snapshot), ordered by ``seq``,
at most ``limit``, merges them by ``seq`` and cuts the page. A source is::

    @register_source("whistle")
    def whistle_changes(db, scope, after_seq, upto_seq, limit) -> list[SourceChange]: ...

Areas register theirs at import time; :func:`load_builtin_sources` imports them. A source whose
type is numerous (visits) registers with ``bulk=True``: pull asks it last, with ``upto_seq``
already narrowed to what the other sources' rows leave room for on the page.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

import msgspec
import sqlite_utils

from gridsync.org import Scope


class SourceChange(msgspec.Struct, gc=False):
    """One change of a source (a Struct, not a NamedTuple: a page builds hundreds, and a
    Struct is several times cheaper to create)."""

    seq: int
    id: str
    op: str  # "put" or "remove"
    data: Any = None  # a wire Struct for "put", None for "remove"


Source = Callable[[sqlite_utils.Database, Scope, int, int, int], list[SourceChange]]

SOURCES: dict[str, Source] = {}
BULK: set[str] = set()

BUILTIN_SOURCE_MODULES = (
    "gridsync.sync.sources_core",  # org_unit, person, household, visit (sync area)
    "gridsync.coverage",  # policy
    "gridsync.whistle",  # whistle
)


def register_source(type_name: str, *, bulk: bool = False) -> Callable[[Source], Source]:
    def decorate(fn: Source) -> Source:
        SOURCES[type_name] = fn
        if bulk:
            BULK.add(type_name)
        return fn

    return decorate


@functools.cache
def load_builtin_sources() -> dict[str, Source]:
    """Import the modules that register the built-in ones, once (push and pull call this on
    every request)."""
    for module in BUILTIN_SOURCE_MODULES:
        importlib.import_module(module)
    return SOURCES


def ordered_sources() -> list[tuple[str, Source]]:
    """The registered sources in the order pull asks them: bulk ones last."""
    sources = load_builtin_sources()
    return sorted(sources.items(), key=lambda item: item[0] in BULK)

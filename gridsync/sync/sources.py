"""Pull sources: each change ``type`` of SPEC 3.2 (``org_unit``, ``person``, ``household``,
``visit``, ``whistle``, ``policy``, ``notice``) has a function that lists that type's changes
in a scope (a notice: in the reader's own inbox).

Pull (``gridsync/sync/pull.py``) asks every source of ``gridsync/sync/registry.py``
(``SOURCES``) for its changes with ``after_seq < seq <= upto_seq`` (``upto_seq`` pins the page
to one snapshot), ordered by ``seq``, at most ``limit``, merges them by ``seq`` and cuts the
page. A source is a plain function in its area's module of ``sync/``::

    def whistle_changes(ctx: SourceContext, after_seq, upto_seq, limit) -> list[SourceChange]: ...

Everything a source may depend on beyond the seq range comes in :class:`SourceContext`, built
once per pull from the request: the read transaction, the reader's scope, and "now" from the
request's clock (an injected ``FixedClock`` in tests). A source reads no clock and no global
state of its own: the same context gives the same page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import sqlite_utils

from gridsync.org import Scope


class SourceChange(msgspec.Struct, gc=False):
    """One change of a source (a Struct, not a NamedTuple: a page builds hundreds, and a
    Struct is several times cheaper to create)."""

    seq: int
    id: str
    op: Literal["put", "remove"]
    data: Any = None  # a wire Struct for "put", None for "remove"


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What every pull source is given, once per pull.

    ``scope`` is the reader's (its ``person_id`` is the principal's person, its ``phones`` says
    which numbers they read in full); ``now_ms`` is the request's clock read once, so every
    source of a page agrees on "now"; ``visits_since_ms`` is where the visits sent begin (the
    current and previous coverage cycle of the scope's communities)."""

    db: sqlite_utils.Database
    scope: Scope
    now_ms: int
    visits_since_ms: int = 0


Source = Callable[[SourceContext, int, int, int], list[SourceChange]]

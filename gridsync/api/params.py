"""Query parameter types shared by the controllers: one page size and offset bound everywhere
(an unbounded offset overflows SQLite's 64-bit integer: a 500, not a 400)."""

from __future__ import annotations

from typing import Annotated

from litestar.params import PathParameter, QueryParameter

from gridsync.models import ID_PATTERN

PageLimit = Annotated[int, QueryParameter(ge=1, le=500, description="page size, at most 500")]
PageOffset = Annotated[int, QueryParameter(ge=0, le=10_000_000)]
IdQuery = Annotated[str | None, QueryParameter(min_length=1, max_length=64)]
# An id in a path that a write creates: the same shape as the wire's ids (models.Id).
IdPath = Annotated[str, PathParameter(min_length=1, max_length=64, pattern=ID_PATTERN)]
# An id in a path that a read or an action looks up: as long as any id can be.
PathId = Annotated[str, PathParameter(min_length=1, max_length=64)]

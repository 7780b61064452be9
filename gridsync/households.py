"""Households and their visits: reading within a scope, and the row <-> wire conversions that
the API, sync pull and exports share. A household leaves here with its phone as the reader may
read it (:mod:`gridsync.privacy`): :func:`household_from_row` takes the reader's view."""

from __future__ import annotations

import re

import msgspec
import sqlite_utils

from gridsync.db import and_given, paged
from gridsync.errors import NotFound, OutOfScope
from gridsync.models import Geo, Household, Visit
from gridsync.org import Scope, unit_grid_filter
from gridsync.privacy import PhoneView, shown_phone

HOUSEHOLD_COLUMNS = (
    "id",
    "grid_id",
    "building",
    "unit",
    "room",
    "head_name",
    "phone",
    "size",
    "tags",
    "notes",
    "responsible_member_id",
    "status",
)
HOUSEHOLD_SELECT = ", ".join(f"h.{c}" for c in HOUSEHOLD_COLUMNS)

VISIT_COLUMNS = (
    "id",
    "household_id",
    "member_id",
    "device_id",
    "at",
    "channel",
    "kinds",
    "note",
    "geo",
    "voided",
)
# a group visit's households (JSON array; NULL for a visit of one household: no lookup)
_GROUP_HOUSEHOLDS = (
    "CASE WHEN v.group_size > 1 THEN (SELECT json_group_array(l.household_id) "
    "FROM visit_households l WHERE l.visit_id = v.id) END"
)
VISIT_SELECT = ", ".join([*(f"v.{c}" for c in VISIT_COLUMNS), _GROUP_HOUSEHOLDS])
_ids_decoder = msgspec.json.Decoder(list[str])

_tags_decoder = msgspec.json.Decoder(list[str])
_geo_decoder = msgspec.json.Decoder(Geo)


def household_from_row(row: tuple, phones: PhoneView) -> Household:
    """A household row (``HOUSEHOLD_SELECT``) for a reader with the view ``phones`` (pass
    ``privacy.ALL_PHONES`` for the stored truth)."""
    return Household(
        id=row[0],
        grid_id=row[1],
        building=row[2],
        unit=row[3],
        room=row[4],
        head_name=row[5],
        phone=shown_phone(phones, row[6], row[1], row[10]),
        size=row[7],
        tags=_tags_decoder.decode(row[8]),
        notes=row[9],
        responsible_member_id=row[10],
        status=row[11],
    )


# The stored ``kinds`` JSON takes few distinct values (a few dozen combinations of the policy's
# kinds): each is decoded once and its tuple shared by the Visits built from rows (a pull page
# builds 500), which is why ``Visit.kinds`` is a tuple.
_KINDS: dict[str, tuple[str, ...]] = {}
_kinds_decoder = msgspec.json.Decoder(tuple[str, ...])
_KINDS_MAX = 4096


def visit_from_row(row: tuple, _kinds: dict[str, tuple[str, ...]] = _KINDS) -> Visit:
    kinds = _kinds.get(row[6])
    if kinds is None:
        kinds = _kinds_decoder.decode(row[6])
        if len(_kinds) < _KINDS_MAX:
            _kinds[row[6]] = kinds
    return Visit(
        id=row[0],
        household_id=row[1],
        member_id=row[2],
        device_id=row[3],
        at=row[4],
        channel=row[5],
        kinds=kinds,
        note=row[7],
        geo=_geo_decoder.decode(row[8]) if row[8] else None,
        voided=bool(row[9]),
        household_ids=sorted(_ids_decoder.decode(row[10])) if row[10] else None,
    )


def get_household(db: sqlite_utils.Database, scope: Scope, household_id: str) -> Household:
    """A household in the scope; one outside it is reported as not found (no existence leak)."""
    row = db.execute(
        f"SELECT {HOUSEHOLD_SELECT} FROM households h WHERE h.id = ?", [household_id]
    ).fetchone()
    if row is None or not scope.allows_grid(row[1]):
        raise NotFound(f"no household {household_id}")
    return household_from_row(row, scope.phones)


def list_households(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    grid_id: str | None = None,
    status: str | None = None,
    tag: str | None = None,
    responsible_member_id: str | None = None,
    unit_id: str | None = None,
    q: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Household], int]:
    """Households of the scope (of the grids under ``unit_id``, when given), filtered; ``q``
    finds a household by its id or external id, or a part of its head's name or of its address
    (building, unit and room as one text, "3栋2单元"; ASCII letters case-insensitive)."""
    if grid_id is not None and not scope.allows_grid(grid_id):
        raise OutOfScope(f"grid {grid_id} is outside your scope")
    where, params = and_given(
        *unit_grid_filter(db, scope, unit_id, "h.grid_id"),
        ("h.grid_id = ?", grid_id),
        ("h.status = ?", status),
        ("EXISTS (SELECT 1 FROM json_each(h.tags) WHERE value = ?)", tag),
        ("h.responsible_member_id = ?", responsible_member_id),
    )
    if q:
        like = "%" + re.sub(r"([\\%_])", r"\\\1", q) + "%"
        where += (
            " AND (h.id = ? OR h.external_id = ? OR h.head_name LIKE ? ESCAPE '\\' "
            "OR (coalesce(h.building, '') || coalesce(h.unit, '') || coalesce(h.room, '')) LIKE ? ESCAPE '\\')"
        )
        params += [q, q, like, like]
    rows, total = paged(
        db,
        HOUSEHOLD_SELECT,
        "households h WHERE " + where,
        params,
        order_by="h.grid_id, h.building, h.unit, h.room, h.id",
        limit=limit,
        offset=offset,
    )
    return [household_from_row(r, scope.phones) for r in rows], total


def list_visits(
    db: sqlite_utils.Database, scope: Scope, household_id: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[Visit], int]:
    get_household(db, scope, household_id)  # raises when out of scope
    rows, total = paged(
        db,
        VISIT_SELECT,
        # its own visits and the group visits it was part of
        "visits v WHERE v.household_id = ? OR v.id IN "
        "(SELECT visit_id FROM visit_households WHERE household_id = ?)",
        [household_id, household_id],
        order_by="v.at_ms DESC, v.id",
        limit=limit,
        offset=offset,
    )
    return [visit_from_row(r) for r in rows], total

"""Visits and everything kept from them: the one writer of the ``visits`` table.

A visit (SPEC section 2) is append-only: it is inserted, voided, or follows its household to
another grid; never edited or deleted. Coverage reads what is kept from visits rather than the
visits themselves, and every write of a visit keeps, in the same transaction:

- ``households.last_visit_ms``: the newest non-voided visit of the household, by anyone (the
  household is *contacted* this cycle when it is at or after the cycle's start);
- ``households.last_responsible_visit_ms`` (migration ``0016_contacted_by_responsible``): the
  newest non-voided visit made by the household's *current* responsible member (*contacted by
  the responsible member*). When the responsible member changes, the trigger of that migration
  recounts it from the household's visits, so assignments, the import and phone edits keep it
  without knowing about it (as the triggers of ``0005_coverage_aggregates`` keep the counts);
- the service kinds covered (migration ``0007_coverage_kinds``): the newest non-voided visit
  per (grid, kind) and per (grid, member, kind), so that a report asks ``last_ms >= cycle
  start`` over a few thousand rows instead of streaming the cycle's visits (about 940,000 in a
  district). Kept here, not by triggers: a per-row trigger has to split each visit's ``kinds``
  JSON (``json_each``) and costs the push more than its budget (bench/README.md, section 3),
  whereas one batch of 500 visits touches a handful of keys.

- group visits (楼栋会, migration ``0026_group_visits``): ONE ``visits`` row (the first
  household's, ``group_size`` households) and one ``visit_households`` row per household; the
  kept times above count it for each of them, and ``households.last_single_visit_ms`` keeps the
  newest visit of the household alone (a priority household's cycle is judged by it unless the
  policy says otherwise: ``gridsync/coverage/tallying.py``, ``contact_column``);
- ``households.last_responsible_single_visit_ms`` (migration ``0027_responsible_single_visit``):
  the newest visit alone by the household's current responsible member (the member's daily
  digest judges a priority household by it under the same rule); recounted with
  ``last_responsible_visit_ms`` by the trigger when the responsible member changes.

The writers call this module and nothing else writes these tables or columns:

- :func:`insert`: new visits (sync's ``visit.create``, tests' fixtures);
- :func:`void`: sync's ``visit.void`` (the caller checks who may void);
- :func:`move`: a household's grid move (the merge's save, so phones' edits and the import);
- :func:`load` then :func:`recount`: bulk loads (the demo), kept state recounted once at the end.

Until issue 14 the sync ops, the demo and the merge each wrote visits and each had to remember
the kept state. ``tests/test_honest_figures.py`` fails when SQL anywhere else in the package
writes the visits table or what is kept from it (migrations excepted: their backfills are
frozen SQL), and ``tests/test_service_kinds.py`` compares the kept kinds with a recount from
visits after every writer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgspec
import sqlite_utils

from gridsync.db import next_seq

_kinds = msgspec.json.Decoder(list[str])


class NewVisit(NamedTuple):
    """A visit row as stored (``kinds``: the JSON array of its kinds, sorted; ``geo``: JSON or
    None)."""

    id: str
    household_id: str
    grid_id: str
    member_id: str
    device_id: str | None
    at: str
    at_ms: int
    channel: str
    kinds: str
    note: str
    geo: str | None
    seq: int
    received_at: str
    voided: int = 0
    group_size: int = 1  # a group visit: how many households (its ``GroupLink`` rows)


class GroupLink(NamedTuple):
    """One household of a group visit (``visit_households``; the first household included)."""

    visit_id: str
    household_id: str
    grid_id: str


_INSERT = (
    "INSERT INTO visits (id, household_id, grid_id, member_id, device_id, at, at_ms, channel, "
    "kinds, note, geo, seq, received_at, voided, group_size) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_LINK = "INSERT INTO visit_households (visit_id, household_id, grid_id) VALUES (?, ?, ?)"


def insert(
    db: sqlite_utils.Database, rows: Sequence[NewVisit], links: Sequence[GroupLink] = ()
) -> None:
    """Insert new visits (ids not taken: the caller checked) and keep what is kept from them:
    each household's newest visit, its newest by its responsible member, its newest alone (not
    a group visit), its newest alone by its responsible member, the service kinds. A group visit (``group_size`` > 1) comes with one
    ``links`` row per household, and is a contact of each. One ``executemany`` insert, one read
    of the batch's households, one update per household whose kept times move (as a rule,
    each household visited), one upsert per kinds key."""
    if not rows:
        return
    db.conn.executemany(_INSERT, rows)
    db.conn.executemany(_INSERT_LINK, links)
    members: dict[str, list[str]] = {}
    for link in links:
        members.setdefault(link.visit_id, []).append(link.household_id)
    newest: dict[str, int] = {}
    single: dict[str, int] = {}
    single_by_member: dict[tuple[str, str], int] = {}
    by_member: dict[tuple[str, str], int] = {}
    decoded: dict[str, list[str]] = {}
    kept: list[tuple[str, str, list[str], int]] = []
    for v in rows:
        if v.voided:
            continue
        if v.group_size == 1:
            if v.at_ms > single.get(v.household_id, -1):
                single[v.household_id] = v.at_ms
            own = (v.household_id, v.member_id)
            if v.at_ms > single_by_member.get(own, -1):
                single_by_member[own] = v.at_ms
            visited = [v.household_id]
        else:
            visited = members.get(v.id, [v.household_id])
        for hid in visited:
            if v.at_ms > newest.get(hid, -1):
                newest[hid] = v.at_ms
            key = (hid, v.member_id)
            if v.at_ms > by_member.get(key, -1):
                by_member[key] = v.at_ms
        if v.kinds != "[]":
            kinds = decoded.get(v.kinds)
            if kinds is None:
                kinds = decoded[v.kinds] = _kinds.decode(v.kinds)
            kept.append((v.grid_id, v.member_id, kinds, v.at_ms))
    updates = []
    for hid, member, last, last_own, last_single, last_own_single in db.execute(
        "SELECT id, responsible_member_id, last_visit_ms, last_responsible_visit_ms, "
        "last_single_visit_ms, last_responsible_single_visit_ms "
        "FROM households WHERE id IN (SELECT value FROM json_each(?))",
        [msgspec.json.encode(list(newest)).decode()],
    ):
        kept_now = (
            _later(last, newest[hid]),
            _later(last_own, by_member.get((hid, member))),
            _later(last_single, single.get(hid)),
            _later(last_own_single, single_by_member.get((hid, member))),
        )
        if kept_now != (last, last_own, last_single, last_own_single):
            updates.append((*kept_now, hid))
    db.conn.executemany(
        "UPDATE households SET last_visit_ms = ?, last_responsible_visit_ms = ?, "
        "last_single_visit_ms = ?, last_responsible_single_visit_ms = ? WHERE id = ?",
        updates,
    )
    _note_kinds(db, kept)


def _later(a: int | None, b: int | None) -> int | None:
    """The later of two times, None standing for never."""
    return b if a is None else a if b is None else max(a, b)


def void(db: sqlite_utils.Database, visit_id: str) -> bool:
    """Void a visit (the caller checked that it exists and who may void it) with a new change
    seq, and bring what is kept back to the newest visits left. False when it was voided
    already (nothing changes)."""
    row = db.execute(
        "SELECT household_id, grid_id, voided, member_id, kinds, at_ms FROM visits WHERE id = ?",
        [visit_id],
    ).fetchone()
    if row is None or row[2]:
        return False
    household_id, grid_id, _, member_id, kinds, at_ms = row
    db.execute("UPDATE visits SET voided = 1, seq = ? WHERE id = ?", [next_seq(db), visit_id])
    # a group visit: every household of it (its links hold the first household too)
    db.execute(
        f"UPDATE households SET {_KEPT} WHERE id = ? OR id IN "
        "(SELECT household_id FROM visit_households WHERE visit_id = ?)",
        [household_id, visit_id],
    )
    _kinds_voided(db, grid_id, member_id, kinds, at_ms)
    return True


def move(db: sqlite_utils.Database, household_id: str, old_grid: str, grid_id: str) -> None:
    """A household's visits follow it to its new grid, each with a new change seq, so that the
    phones of the new grid receive them (those of the old grid drop them with the household);
    both grids' kept service kinds are recounted."""
    # the household's place in the group visits it was part of follows it too
    db.execute(
        "UPDATE visit_households SET grid_id = ? WHERE household_id = ?", [grid_id, household_id]
    )
    ids = [
        r[0]
        for r in db.execute(
            "SELECT id FROM visits WHERE household_id = ? ORDER BY id", [household_id]
        ).fetchall()
    ]
    if not ids:
        return
    first = next_seq(db, len(ids))
    db.conn.executemany(
        "UPDATE visits SET grid_id = ?, seq = ? WHERE id = ?",
        [(grid_id, first + i, vid) for i, vid in enumerate(ids)],
    )
    recount_kinds(db, [old_grid, grid_id])


def load(
    db: sqlite_utils.Database, rows: Iterable[NewVisit], links: Iterable[GroupLink] = ()
) -> None:
    """Bulk insert (the demo): nothing is kept until :func:`recount` runs once at the end."""
    db.conn.executemany(_INSERT, rows)
    db.conn.executemany(_INSERT_LINK, links)


def _newest(extra: str) -> str:
    """The newest non-voided visit of a household (``households`` row) meeting ``extra``, its
    own visits and the group visits it was part of, as two indexed lookups (an OR of both
    would scan the visits)."""
    return (
        "nullif(max("
        "coalesce((SELECT max(v.at_ms) FROM visits v WHERE v.household_id = households.id "
        f"AND v.voided = 0{extra}), -1), "
        "coalesce((SELECT max(v.at_ms) FROM visit_households l JOIN visits v ON v.id = l.visit_id "
        f"WHERE l.household_id = households.id AND v.voided = 0{extra}), -1)), -1)"
    )


# every household's newest visit, its newest by its responsible member, its newest alone, and
# its newest alone by its responsible member
_KEPT = ", ".join(
    (
        f"last_visit_ms = {_newest('')}",
        "last_responsible_visit_ms = "
        + _newest(" AND v.member_id = households.responsible_member_id"),
        "last_single_visit_ms = (SELECT max(v.at_ms) FROM visits v "
        "WHERE v.household_id = households.id AND v.voided = 0 AND v.group_size = 1)",
        "last_responsible_single_visit_ms = (SELECT max(v.at_ms) FROM visits v "
        "WHERE v.household_id = households.id AND v.voided = 0 AND v.group_size = 1 "
        "AND v.member_id = households.responsible_member_id)",
    )
)


def recount(db: sqlite_utils.Database, grid_ids: Iterable[str] | None = None) -> None:
    """Recount everything kept from the visits of ``grid_ids`` (default: every grid)."""
    cond, params = _grids(grid_ids)
    db.execute(f"UPDATE households SET {_KEPT} WHERE {cond}", params)
    recount_kinds(db, grid_ids)


def _grids(grid_ids: Iterable[str] | None) -> tuple[str, list[str]]:
    if grid_ids is None:
        return "1", []
    return "grid_id IN (SELECT value FROM json_each(?))", [
        msgspec.json.encode(sorted(set(grid_ids))).decode()
    ]


# -- the kept service kinds -------------------------------------------------------------------

_UPSERT_MEMBER = (
    "INSERT INTO coverage_member_kinds (grid_id, member_id, kind, last_ms) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (grid_id, member_id, kind) DO UPDATE SET last_ms = excluded.last_ms "
    "WHERE excluded.last_ms > last_ms"
)
_UPSERT_GRID = (
    "INSERT INTO coverage_grid_kinds (grid_id, kind, last_ms) VALUES (?, ?, ?) "
    "ON CONFLICT (grid_id, kind) DO UPDATE SET last_ms = excluded.last_ms "
    "WHERE excluded.last_ms > last_ms"
)


def _note_kinds(
    db: sqlite_utils.Database, visits: Iterable[tuple[str, str, Iterable[str], int]]
) -> None:
    """Keep the kinds of newly inserted, non-voided visits: ``(grid_id, member_id, kinds,
    at_ms)`` each. One upsert per distinct key of the batch, the newest time winning."""
    by_member: dict[tuple[str, str, str], int] = {}
    for grid, member, kinds, at_ms in visits:
        for kind in kinds:
            key = (grid, member, kind)
            if at_ms > by_member.get(key, -1):
                by_member[key] = at_ms
    if not by_member:
        return
    by_grid: dict[tuple[str, str], int] = {}
    for (grid, _, kind), at_ms in by_member.items():
        if at_ms > by_grid.get((grid, kind), -1):
            by_grid[(grid, kind)] = at_ms
    db.conn.executemany(_UPSERT_MEMBER, [(*key, ms) for key, ms in by_member.items()])
    db.conn.executemany(_UPSERT_GRID, [(*key, ms) for key, ms in by_grid.items()])


def _kinds_voided(
    db: sqlite_utils.Database, grid_id: str, member_id: str, kinds: str, at_ms: int
) -> None:
    """After voiding a visit (``kinds`` as stored): its grid is recounted only if the visit was
    the newest of one of its keys; otherwise a newer visit keeps every kept time as it is."""
    listed = _kinds.decode(kinds)
    if not listed:
        return
    newest = db.execute(
        "SELECT 1 FROM coverage_member_kinds WHERE grid_id = ? AND member_id = ? AND last_ms = ? "
        "AND kind IN (SELECT value FROM json_each(?)) LIMIT 1",
        [grid_id, member_id, at_ms, kinds],
    ).fetchone()
    if newest is not None:
        recount_kinds(db, [grid_id])


def recount_kinds(db: sqlite_utils.Database, grid_ids: Iterable[str] | None = None) -> None:
    """Recount the kept kinds of ``grid_ids`` (default: every grid) from their visits."""
    cond, params = _grids(grid_ids)
    db.execute(f"DELETE FROM coverage_member_kinds WHERE {cond}", params)
    db.execute(f"DELETE FROM coverage_grid_kinds WHERE {cond}", params)
    # (grid, member, kinds JSON) first: a kinds list has few distinct values, so each is split
    # once per member instead of once per visit
    rows = db.execute(
        f"""SELECT grid_id, member_id, kinds, max(at_ms) FROM visits
            WHERE voided = 0 AND kinds <> '[]' AND {cond}
            GROUP BY grid_id, member_id, kinds""",
        params,
    )
    decoded: dict[str, list[str]] = {}

    def kinds_of(raw: str) -> list[str]:
        if raw not in decoded:
            decoded[raw] = _kinds.decode(raw)
        return decoded[raw]

    _note_kinds(db, ((grid, member, kinds_of(raw), at_ms) for grid, member, raw, at_ms in rows))

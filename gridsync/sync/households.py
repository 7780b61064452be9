"""Households and visits on the phone path: the push ops ``household.create``,
``household.update``, ``household.move_out``, ``visit.create`` (batched: the hot path),
``visit.void``, and the pull sources ``household`` and ``visit`` (listed in
``gridsync/sync/registry.py``).

Phones may not set ``responsible_member_id`` (the "1" of 1-5-N is a secretary's act) nor
``status`` through ``fields`` (``household.move_out`` does that): such a mutation is rejected
with ``forbidden_field`` and nothing of it applies. A mutation that would leave a household with
more than ``models.MAX_TAGS`` tags is rejected with ``too_many_tags``.

A phone reads most households' numbers masked (gridsync/privacy.py) and may send the mask back
with an edit of another field (an app that posts the whole form). A ``phone`` that
:func:`~gridsync.models.is_masked` is never stored: ``household.update`` drops that field and
applies the rest, ``household.create`` stores the household without a number, and the result
says so (``ignored: [{"field": "phone", "code": "masked_phone"}]``). Dropping, not rejecting,
keeps the rest of the person's edit. Values a phone lost to (or overwrote unseen) come back in
``lost`` as the pusher may read them: its own value as sent, another's number by the rule.
"""

from __future__ import annotations

from typing import Any

import msgspec
import sqlite_utils

from gridsync import coverage, visits
from gridsync.clock import device_time_ms, iso_ms
from gridsync.db import next_seq
from gridsync.errors import Conflict, Forbidden, GridsyncError, Invalid, NotFound, OutOfScope
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.models import (
    MAX_TAGS,
    HouseholdCreate,
    HouseholdFields,
    HouseholdMoveOut,
    VisitCreate,
    VisitVoid,
    is_masked,
)
from gridsync.org import Scope
from gridsync.privacy import shown_phone
from gridsync.sync import merge
from gridsync.sync import scope as sync_scope
from gridsync.sync.hlc import ms_of
from gridsync.sync.merge import HouseholdState, Lost, Stamp
from gridsync.sync.ops import BatchItem, Mutation, OpContext, Outcome
from gridsync.sync.sources import SourceChange, SourceContext

FORBIDDEN_FIELDS = {
    "responsible_member_id": "responsible_member_id is assigned by secretaries, not by phones",
    "status": "status changes through household.move_out",
    "tags": "tags change through tags_add and tags_remove",
    "id": "a household's id never changes",
}

_json = msgspec.json.Encoder()
MASKED_PHONE = {"field": "phone", "code": "masked_phone"}


class ForbiddenField(GridsyncError):
    status = 403
    code = "forbidden_field"


def _check_scope(ctx: OpContext, household_id: str, grid_id: str) -> None:
    scope = ctx.principal.scope
    if scope.allows_grid(grid_id):
        return
    if sync_scope.was_in_scope(ctx.db, scope, household_id, ctx.scope_ms or ms_of(ctx.hlc)):
        return
    raise OutOfScope(f"household {household_id} is outside your scope")


def _writer(ctx: OpContext, seq: int) -> Stamp:
    return Stamp(ctx.hlc, seq, ctx.principal.device_id, ctx.principal.person_id)


def _load_in_scope(ctx: OpContext, household_id: str) -> HouseholdState:
    state = merge.load(ctx.db, household_id)
    if state is None:
        raise NotFound(f"no household {household_id}")
    _check_scope(ctx, household_id, state.values["grid_id"])
    return state


def _finish(ctx: OpContext, state: HouseholdState, lost: list[Lost], seq: int) -> Outcome:
    if state.changed:
        merge.save(ctx.db, state, seq, iso_ms(ctx.received_ms))
    ids = merge.record_conflicts(ctx.db, state, lost, ctx.mid, ctx.received_ms)
    if not lost:
        return Outcome("applied")
    return Outcome(
        "merged",
        [
            {"field": item.field, "value": item.value, "winner": item.winner, "conflict_id": cid}
            for item, cid in zip(lost, ids)
        ],
    )


def _check_tags(tags: list[str]) -> None:
    for tag in tags:
        if not tag.strip():
            raise Invalid("a tag must not be blank", field="tags")


class TooManyTags(GridsyncError):
    status = 409
    code = "too_many_tags"


def _check_tag_count(state: HouseholdState, m: Mutation, writer: Stamp) -> None:
    """Refuse (before any write) a mutation that would take a household past MAX_TAGS; one
    that leaves an over-full household (an old import) no fuller passes."""
    if not m.tags_add:
        return
    before = len(state.tags)
    after = len(merge.tags_after(state, m.tags_add, m.tags_remove, writer, m.base_seq))
    if after > MAX_TAGS and after > before:
        raise TooManyTags(
            f"household {m.id} would have {after} tags; at most {MAX_TAGS}", field="tags_add"
        )


def household_create(ctx: OpContext, m: Mutation, data: HouseholdCreate) -> Outcome:
    if not ctx.principal.scope.allows_grid(data.grid_id):
        raise OutOfScope(f"grid {data.grid_id} is outside your scope")
    if (
        ctx.db.execute(
            "SELECT 1 FROM org_units WHERE id = ? AND kind = 'grid'", [data.grid_id]
        ).fetchone()
        is None
    ):
        raise NotFound(f"no grid {data.grid_id}")
    if ctx.db.execute("SELECT 1 FROM households WHERE id = ?", [m.id]).fetchone():
        raise GridsyncError(f"household {m.id} exists already", code="already_exists", status=409)
    _check_tags(data.tags)
    ignored = []
    if is_masked(data.phone):
        data = msgspec.structs.replace(data, phone="")
        ignored.append(MASKED_PHONE)
    seq = next_seq(ctx.db)
    writer = _writer(ctx, seq)
    fields = msgspec.structs.asdict(data)
    tags = sorted(set(fields.pop("tags")))
    stamps: dict[str, Any] = {name: writer.encode() for name in fields}
    if tags:
        stamps["tags"] = {t: writer.encode() for t in tags}
    now = iso_ms(ctx.received_ms)
    ctx.db.execute(
        "INSERT INTO households (id, grid_id, building, unit, room, head_name, phone, size, "
        "tags, notes, status, field_hlc, seq, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?)",
        [
            m.id,
            data.grid_id,
            data.building,
            data.unit,
            data.room,
            data.head_name,
            data.phone,
            data.size,
            _json.encode(tags).decode(),
            data.notes,
            _json.encode(stamps).decode(),
            seq,
            now,
            now,
        ],
    )
    return Outcome("applied", ignored=ignored)


def _update_fields(m: Mutation) -> dict[str, Any]:
    """The fields a ``household.update`` sets, checked (no writes: a refusal changes nothing);
    a masked ``phone`` is not among them (the caller reports it ignored)."""
    raw_fields = m.fields or {}
    for name in raw_fields:
        if name in FORBIDDEN_FIELDS:
            raise ForbiddenField(f"{name}: {FORBIDDEN_FIELDS[name]}", field=f"fields.{name}")
    try:
        fields = msgspec.convert(raw_fields, HouseholdFields)
    except msgspec.ValidationError as exc:
        raise Invalid(f"invalid fields: {exc}", field="fields") from None
    _check_tags(m.tags_add)
    _check_tags(m.tags_remove)
    return {
        k: v
        for k, v in msgspec.structs.asdict(fields).items()
        if v is not msgspec.UNSET and not (k == "phone" and is_masked(v))
    }


def household_update_batch(ctx: OpContext, items: list[BatchItem]) -> list[Outcome | GridsyncError]:
    """A run of household updates, in order: one query loads every household of the run, the
    merges run on those states in memory (a later update of the same household sees the
    earlier ones), and the changed rows are written at the end (one ``executemany`` per set of
    changed columns, the conflict log with one more). A
    refused update is refused before it touches its state, so nothing of it is written. An
    update that moves a household to another grid is written at once, so that the move is on
    record (``household_moves``) for the scope checks of the updates after it."""
    db = ctx.db
    states = {
        row[0]: merge.state_from_row(row)
        for row in db.execute(
            f"SELECT {merge.ROW_SELECT} FROM households WHERE id IN "
            "(SELECT value FROM json_each(?))",
            [_json.encode(list({it.m.id for it in items})).decode()],
        ).fetchall()
    }
    scope = ctx.principal.scope
    device, person = ctx.principal.device_id, ctx.principal.person_id
    now = iso_ms(ctx.received_ms)
    first = next_seq(db, len(items))  # unused numbers of refused items are harmless gaps
    dirty: dict[str, tuple[HouseholdState, set[str]]] = {}  # id -> (state, names changed)
    results: list[Outcome | GridsyncError] = []
    conflicts: list[list[Any]] = []  # sync_conflicts rows of the run, in order
    lost_entries: list[dict[str, Any]] = []  # their entries in the answers
    for n, it in enumerate(items):
        m = it.m
        try:
            changes = _update_fields(m)
            state = states.get(m.id)
            if state is None:
                raise NotFound(f"no household {m.id}")
            grid = state.values["grid_id"]
            if not scope.allows_grid(grid) and not sync_scope.was_in_scope(
                db, scope, m.id, it.scope_ms
            ):
                raise OutOfScope(f"household {m.id} is outside your scope")
            new_grid = changes.get("grid_id")
            if new_grid is not None and new_grid != grid:
                if not scope.allows_grid(new_grid):
                    raise OutOfScope(f"grid {new_grid} is outside your scope")
                if (
                    db.execute(
                        "SELECT 1 FROM org_units WHERE id = ? AND kind = 'grid'", [new_grid]
                    ).fetchone()
                    is None
                ):
                    raise NotFound(f"no grid {new_grid}")
        except GridsyncError as exc:
            results.append(exc)
            continue
        ignored = [MASKED_PHONE] if is_masked((m.fields or {}).get("phone")) else []
        seq = first + n
        writer = Stamp(it.hlc, seq, device, person)
        try:
            _check_tag_count(state, m, writer)
        except GridsyncError as exc:
            results.append(exc)
            continue
        lost: list[Lost] = []
        for name, value in changes.items():
            item = merge.merge_field(state, name, value, writer, m.base_seq)
            if item is not None:
                lost.append(item)
        for tag in m.tags_add:
            item = merge.add_tag(state, tag, writer, m.base_seq)
            if item is not None:
                lost.append(item)
        for tag in m.tags_remove:
            if tag in m.tags_add:
                continue
            item = merge.remove_tag(state, tag, writer, m.base_seq)
            if item is not None:
                lost.append(item)
        if state.changed:
            state.seq = seq
            if state.values["grid_id"] != state.loaded_grid:
                merge.save(db, state, seq, now)
                dirty.pop(m.id, None)
            else:
                dirty.setdefault(m.id, (state, set()))[1].update(state.changed)
            state.changed = set()
        if not lost:
            results.append(Outcome("applied", ignored=ignored) if ignored else _APPLIED)
            continue
        entries = [
            {
                "field": item.field,
                "value": _as_read(scope, state, changes, item.field, item.value),
                "winner": _as_read(scope, state, changes, item.field, item.winner),
            }
            for item in lost
        ]
        results.append(Outcome("merged", entries, ignored=ignored))
        conflicts.extend(merge.conflict_row(state, item, m.mid, ctx.received_ms) for item in lost)
        lost_entries.extend(entries)
    # the conflict log of the whole run in one insert; the answers carry the ids
    for entry, cid in zip(lost_entries, merge.insert_conflicts(db, conflicts), strict=True):
        entry["conflict_id"] = cid
    if dirty:
        merge.save_many(db, list(dirty.values()), now)
    return results


_APPLIED = Outcome("applied")


def _as_read(
    scope: Scope, state: HouseholdState, sent: dict[str, Any], field: str, value: Any
) -> Any:
    """A value of a merge's ``lost`` entry as the pusher may read it: a phone number it did not
    send itself is shown by the rule (gridsync/privacy.py); the conflict log keeps it whole."""
    if field != "phone" or not isinstance(value, str) or value == sent.get("phone"):
        return value
    v = state.values
    return shown_phone(scope.phones, value, v["grid_id"], v["responsible_member_id"])


def household_move_out(ctx: OpContext, m: Mutation, data: HouseholdMoveOut) -> Outcome:
    state = _load_in_scope(ctx, m.id)
    seq = next_seq(ctx.db)
    item = merge.merge_field(state, "status", "moved_out", _writer(ctx, seq), m.base_seq)
    return _finish(ctx, state, [item] if item else [], seq)


# -- visits: append-only; the hot path is batched ------------------------------------------------


_VISIT_APPLIED = Outcome("applied", logged=False)
_VISIT_DUPLICATE = Outcome("duplicate", logged=False)


def _visited(data: VisitCreate) -> list[str] | GridsyncError:
    """The households a ``visit.create`` names: exactly one of ``household_id`` and
    ``household_ids`` (distinct), else ``validation_error``."""
    if (data.household_id is None) == (data.household_ids is None):
        return Invalid(
            "give household_id (one household) or household_ids (a group visit), not both",
            field="data.household_ids",
        )
    if data.household_id is not None:
        return [data.household_id]
    if data.household_ids is None:  # (excluded above; spelled out for the type checker)
        return Invalid("no household", field="data.household_ids")
    if len(set(data.household_ids)) != len(data.household_ids):
        return Invalid("household_ids names a household twice", field="data.household_ids")
    return list(data.household_ids)


def visit_create_batch(ctx: OpContext, items: list[BatchItem]) -> list[Outcome | GridsyncError]:
    """A run of visit creates: one query for their households, one for existing ids, then
    :func:`gridsync.visits.insert` (one ``executemany`` insert; what is kept from visits updated
    once per household and key). Visits are their own record of the mutation (found again by
    id), so push does not log them separately. A group visit (``household_ids``) is one visit
    of its first household with every household linked: each must exist and be in scope."""
    db = ctx.db
    named = [_visited(it.data) for it in items]
    household_ids = {h for hs in named if isinstance(hs, list) for h in hs}
    households = {
        r[0]: r[1]
        for r in db.execute(
            "SELECT id, grid_id FROM households WHERE id IN (SELECT value FROM json_each(?))",
            [_json.encode(list(household_ids)).decode()],
        ).fetchall()
    }
    existing = dict(
        db.execute(  # visit id -> the member who logged it
            "SELECT id, member_id FROM visits WHERE id IN (SELECT value FROM json_each(?))",
            [_json.encode([it.m.id for it in items]).decode()],
        ).fetchall()
    )
    default_kinds = frozenset(ctx.settings.coverage.service_kinds)
    community_kinds = coverage.service_kinds_of_grids(db, ctx.settings, set(households.values()))
    scope = ctx.principal.scope
    allowed_grids = {g for g in households.values() if scope.allows_grid(g)}
    person, device = ctx.principal.person_id, ctx.principal.device_id
    received = iso_ms(ctx.received_ms)
    results: list[Outcome | GridsyncError] = []
    rows: list[visits.NewVisit] = []
    links: list[visits.GroupLink] = []
    first = next_seq(db, len(items))  # unused numbers of refused items are harmless gaps
    kinds_cache: dict[tuple, str] = {}  # (allowed kinds, *kinds) -> JSON
    for n, it in enumerate(items):
        data: VisitCreate = it.data
        vid = it.m.id
        if vid in existing:
            # a resend is the same member's; another's visit under a taken id is not stored
            results.append(
                _VISIT_DUPLICATE
                if existing[vid] == person
                else Conflict(
                    f"visit id {vid} is taken by another visit: create it under a new id",
                    code="id_taken",
                )
            )
            continue
        visited = named[n]
        if not isinstance(visited, list):
            results.append(visited)
            continue
        refused = _refused_household(db, scope, households, allowed_grids, visited, it.scope_ms)
        if refused is not None:
            results.append(refused)
            continue
        hid = visited[0]
        grid = households[hid]
        kinds_allowed = community_kinds.get(grid, default_kinds)
        kinds = (kinds_allowed, *data.kinds)
        encoded = kinds_cache.get(kinds)
        if encoded is None:
            bad = [k for k in data.kinds if k not in kinds_allowed]
            if bad:
                results.append(
                    Invalid(
                        f"unknown service kinds {bad}; configured: "
                        f"{', '.join(sorted(kinds_allowed))}",
                        field="data.kinds",
                    )
                )
                continue
            encoded = kinds_cache[kinds] = _json.encode(sorted(set(data.kinds))).decode()
        try:
            # a visit cannot happen after its push: a clock set ahead must not make the
            # household count as contacted into the future (``at`` is kept as sent)
            at_ms = min(device_time_ms(data.at), ctx.received_ms)
        except ValueError as exc:
            results.append(Invalid(f"at: {exc}", code="invalid_time", field="data.at"))
            continue
        existing[vid] = person
        rows.append(
            visits.NewVisit(
                vid,
                hid,
                grid,
                person,
                device,
                data.at,
                at_ms,
                data.channel,
                encoded,
                data.note,
                _json.encode(data.geo).decode() if data.geo else None,
                first + n,
                received,
                0,
                1 if data.household_ids is None else len(visited),
            )
        )
        if data.household_ids is not None:
            links.extend(visits.GroupLink(vid, h, households[h]) for h in visited)
        results.append(_VISIT_APPLIED)
    # with the households' newest visits and the kept service kinds
    visits.insert(db, rows, links)
    return results


def _refused_household(
    db: sqlite_utils.Database,
    scope: Scope,
    households: dict[str, str],
    allowed_grids: set[str],
    visited: list[str],
    scope_ms: int,
) -> GridsyncError | None:
    """The refusal of the first household of a visit that does not exist or is outside the
    pusher's scope (one household out of scope refuses the whole group visit)."""
    for hid in visited:
        grid = households.get(hid)
        if grid is None:
            return NotFound(f"no household {hid}")
        if grid not in allowed_grids and not sync_scope.was_in_scope(db, scope, hid, scope_ms):
            return OutOfScope(f"household {hid} is outside your scope")
    return None


# Who may void another person's visit (within their scope): the secretaries and admins above
# it, the roles that also assign households and restore conflicts. Everyone else, a member or a
# grid worker, voids only the visits they logged themselves.
VOIDER_ROLES = ("admin", "street", "community_secretary", "branch_secretary")


def visit_void(ctx: OpContext, m: Mutation, data: VisitVoid) -> Outcome:
    """Void a visit (append-only: a wrong visit is voided, never edited). Allowed to the person
    who logged it, and to a secretary or admin whose scope holds it; anyone else in scope is
    ``rejected``/``forbidden``: a visit counts for 1-5-N, and one member must not be able to
    undo another's work (issue 12's review). Voiding a voided visit changes nothing."""
    row = ctx.db.execute(
        "SELECT household_id, grid_id, member_id FROM visits WHERE id = ?", [m.id]
    ).fetchone()
    if row is None:
        raise NotFound(f"no visit {m.id}")
    household_id, grid_id, member_id = row
    _check_scope(ctx, household_id, grid_id)
    if member_id != ctx.principal.person_id and not ctx.principal.has_role(*VOIDER_ROLES):
        raise Forbidden(
            f"visit {m.id} was logged by {member_id}: only they, or a secretary above it, may "
            "void it"
        )
    visits.void(ctx.db, m.id)  # (voiding a voided visit changes nothing)
    return Outcome("applied")


# -- pull sources -----------------------------------------------------------------------------


def household_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    """Households of the scope's grids, with the reader's view of each phone number; those that
    left the scope by moving to another grid come as ``remove`` (``household_moves``)."""
    db, scope = ctx.db, ctx.scope
    cond, params = scope.grid_filter("h.grid_id")
    rows = db.execute(
        f"SELECT {HOUSEHOLD_SELECT}, h.seq FROM households h "
        f"WHERE h.seq > ? AND h.seq <= ? AND {cond} ORDER BY h.seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    phones = scope.phones  # each household's phone as this reader may read it
    changes = [SourceChange(r[-1], r[0], "put", household_from_row(r, phones)) for r in rows]
    if not scope.everything:
        from_cond, from_params = scope.grid_filter("m.from_grid")
        to_cond, to_params = scope.grid_filter("m.to_grid")
        # Left the scope by this move (a later move back in comes as a put at a later seq).
        moves = db.execute(
            f"SELECT m.household_id, m.seq FROM household_moves m "
            f"WHERE m.seq > ? AND m.seq <= ? AND {from_cond} AND NOT ({to_cond}) "
            f"ORDER BY m.seq LIMIT ?",
            [after_seq, upto_seq, *from_params, *to_params, limit],
        ).fetchall()
        if moves:
            changes += [SourceChange(seq, hid, "remove", None) for hid, seq in moves]
            changes.sort(key=lambda c: c.seq)
            changes = changes[:limit]
    return changes


def visit_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    """Visits ordered by seq across the scope's grids, read in seq windows.

    One ``grid_id IN (...) AND seq > after ORDER BY seq LIMIT n`` query reads and sorts every
    remaining visit of the scope on each page, so a snapshot would cost the square of its size
    (bench/README.md). Instead the page is read in windows ``(lo, hi]`` of seq: SQLite reads
    each grid's range of the window on ``visits_grid_seq`` and sorts only the window's rows. The
    first window spans ``limit`` seqs; the next ones are sized from the density seen so far, so
    a dense scope (a street's snapshot) takes one or two queries a page and a sparse one (a
    member's single grid in a district) a few growing probes. Visits older than
    ``ctx.visits_since_ms`` (the current and previous coverage cycle) are not sent; a device
    drops older visits itself.
    """
    db, scope, since = ctx.db, ctx.scope, ctx.visits_since_ms
    grids = (
        sorted(r[0] for r in db.execute("SELECT id FROM org_units WHERE kind = 'grid'"))
        if scope.everything
        else sorted(scope.grid_ids)
    )
    if not grids or after_seq >= upto_seq:
        return []
    grid_list = _json.encode(grids).decode()
    sql = (
        f"SELECT {VISIT_SELECT}, v.seq FROM visits v INDEXED BY visits_grid_seq "
        "WHERE v.grid_id IN (SELECT value FROM json_each(?)) AND v.seq > ? AND v.seq <= ? "
        "AND v.at_ms >= ? ORDER BY v.seq LIMIT ?"
    )
    rows: list[tuple] = []
    lo, width = after_seq, limit
    while lo < upto_seq:
        hi = min(upto_seq, lo + width)
        got = db.execute(sql, [grid_list, lo, hi, since, limit - len(rows)]).fetchall()
        rows += got
        if len(rows) >= limit:
            break
        # Next window: eight times wider after an empty one, else sized from the density seen
        # (a quarter more, so that the page is usually complete after it).
        width = width * 8 if not got else (limit - len(rows)) * (hi - lo) * 5 // (4 * len(got)) + 1
        lo = hi
    # group visits of another grid that name a household of these grids (few: read through
    # the link table), up to where this page's own visits reach, merged in seq order
    reach = rows[-1][-1] if len(rows) >= limit else upto_seq
    rows += db.execute(
        f"SELECT {VISIT_SELECT}, v.seq FROM visit_households l CROSS JOIN visits v "
        "ON v.id = l.visit_id WHERE l.grid_id IN (SELECT value FROM json_each(?1)) "
        "AND v.grid_id NOT IN (SELECT value FROM json_each(?1)) AND v.seq > ?2 AND v.seq <= ?3 "
        "AND v.at_ms >= ?4 GROUP BY v.id ORDER BY v.seq LIMIT ?5",
        [grid_list, after_seq, reach, since, limit],
    ).fetchall()
    rows.sort(key=lambda r: r[-1])
    return [SourceChange(r[-1], r[0], "put", visit_from_row(r)) for r in rows[:limit]]

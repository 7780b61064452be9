"""Field-level merge of households (SPEC 3.1) and the conflict log.

Rules:

* Each household field is last-writer-wins by HLC. ``households.field_hlc`` keeps, per field, a
  *stamp* ``[hlc, seq, device_id, person_id]``: the HLC of the value, the server seq at which it
  was written, and who wrote it.
* A write *saw* the current value when the value's seq is at or below the mutation's
  ``base_seq``, or the same device wrote it. Overwriting a value the writer did not see, or
  losing to a newer one, is a conflict: the losing value goes to ``sync_conflicts`` with both
  sides (the ``lost`` list of the result says the same).
* Tags are an add-wins observed-remove set: an add always applies; a remove deletes a tag only
  when the remover saw the tag's latest add (its seq <= ``base_seq``, or its own add). A remove
  that loses to an unseen add, and an add that undoes an unseen remove, are logged as
  conflicts of field ``tags:<tag>`` with boolean values (membership).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils

from gridsync import visits
from gridsync.households import HOUSEHOLD_COLUMNS

STAMPS = "stamps"
# Remove stamps kept per household (see remove_tag); twice the tags a household may hold.
MAX_TAG_TOMBSTONES = 64
_ROW_COLS = (*HOUSEHOLD_COLUMNS, "field_hlc", "seq")
ROW_SELECT = ", ".join(_ROW_COLS)
MERGED_FIELDS = (
    "grid_id",
    "building",
    "unit",
    "room",
    "head_name",
    "phone",
    "size",
    "notes",
    "status",
    "responsible_member_id",
)

_json = msgspec.json.Encoder()
_any = msgspec.json.Decoder()


class Stamp(msgspec.Struct, array_like=True, gc=False):
    """Stored as ``[hlc, seq, device_id, person_id]`` (``array_like``: it encodes as that list
    and ``field_hlc`` decodes straight into stamps)."""

    hlc: str
    seq: int
    device_id: str | None = None
    person_id: str | None = None

    def encode(self) -> list[Any]:
        return [self.hlc, self.seq, self.device_id, self.person_id]

    @classmethod
    def decode(cls, raw: Any, default_seq: int) -> Stamp:
        if type(raw) is Stamp:
            return raw
        if isinstance(raw, str):  # a bare HLC (written by other tools)
            return cls(raw, default_seq)
        if isinstance(raw, list) and raw:
            return cls(
                str(raw[0]),
                int(raw[1]) if len(raw) > 1 else default_seq,
                raw[2] if len(raw) > 2 else None,
                raw[3] if len(raw) > 3 else None,
            )
        return cls("", default_seq)


# ``field_hlc`` as this module writes it, decoded in one pass; anything else (a bare HLC, a
# short or oddly typed list written by other tools) falls back to :meth:`Stamp.decode`.
_field_hlc = msgspec.json.Decoder(dict[str, Stamp | str | dict[str, Stamp | str]])


@dataclass
class Lost:
    """One losing value, before it is written to the conflict log."""

    field: str
    value: Any
    winner: Any
    lost: Stamp
    won: Stamp


@dataclass
class HouseholdState:
    """A household row being merged: values, per-field stamps, tag add/remove stamps."""

    values: dict[str, Any]
    seq: int
    stamps: dict[str, Stamp]
    tag_adds: dict[str, Stamp]
    tag_removes: dict[str, Stamp]
    changed: set[str] = field(default_factory=set)
    loaded_grid: str = ""

    def __post_init__(self) -> None:
        self.loaded_grid = self.loaded_grid or self.values["grid_id"]

    @property
    def id(self) -> str:
        return self.values["id"]

    @property
    def tags(self) -> list[str]:
        return self.values["tags"]

    def stamp(self, name: str) -> Stamp:
        return self.stamps.get(name) or Stamp("", self.seq)


def load(db: sqlite_utils.Database, household_id: str) -> HouseholdState | None:
    row = db.execute(f"SELECT {ROW_SELECT} FROM households WHERE id = ?", [household_id]).fetchone()
    return state_from_row(row) if row else None


def state_from_row(row: tuple) -> HouseholdState:
    values = dict(zip(_ROW_COLS, row))
    values["tags"] = list(_any.decode(values["tags"]))
    text = values.pop("field_hlc") or "{}"
    try:
        raw = _field_hlc.decode(text)
    except msgspec.ValidationError:
        raw = _any.decode(text)
    seq = values.pop("seq")
    decode = Stamp.decode
    tag_adds = raw.pop("tags", None)
    tag_removes = raw.pop("tags_removed", None)
    stamps = {k: decode(v, seq) for k, v in raw.items()}
    # A field never written through sync (import, admin) was last written at or before the
    # row's current seq: pin that bound now, so later writes of other fields do not move it.
    for name in MERGED_FIELDS:
        if name not in stamps:
            stamps[name] = Stamp("", seq)
    adds = {k: decode(v, seq) for k, v in tag_adds.items()} if isinstance(tag_adds, dict) else {}
    removes = (
        {k: decode(v, seq) for k, v in tag_removes.items()} if isinstance(tag_removes, dict) else {}
    )
    for tag in values["tags"]:
        adds.setdefault(tag, Stamp("", seq))
    return HouseholdState(values, seq, stamps, adds, removes)


def _saw(stamp: Stamp, writer: Stamp, base_seq: int | None) -> bool:
    if writer.device_id is not None and stamp.device_id == writer.device_id:
        return True
    return base_seq is not None and stamp.seq <= base_seq


def merge_field(
    state: HouseholdState, name: str, value: Any, writer: Stamp, base_seq: int | None
) -> Lost | None:
    """LWW one field; returns the losing side when there is a conflict."""
    current = state.values[name]
    stamp = state.stamp(name)
    if value == current:
        if writer.hlc > stamp.hlc:
            state.stamps[name] = writer
            state.changed.add(STAMPS)
        return None
    if writer.hlc > stamp.hlc:
        state.values[name] = value
        state.stamps[name] = writer
        state.changed.add(name)
        if not _saw(stamp, writer, base_seq):
            return Lost(name, current, value, lost=stamp, won=writer)
        return None
    return Lost(name, value, current, lost=writer, won=stamp)


def add_tag(state: HouseholdState, tag: str, writer: Stamp, base_seq: int | None) -> Lost | None:
    lost = None
    if tag not in state.tags:
        removed = state.tag_removes.get(tag)
        if removed is not None and not _saw(removed, writer, base_seq):
            lost = Lost(f"tags:{tag}", False, True, lost=removed, won=writer)
        state.values["tags"] = sorted({*state.tags, tag})
        state.changed.add("tags")
    state.tag_adds[tag] = writer
    state.tag_removes.pop(tag, None)
    state.changed.add(STAMPS)
    return lost


def _latest_add(state: HouseholdState, tag: str) -> Stamp:
    return state.tag_adds.get(tag) or Stamp("", state.seq)


def remove_tag(state: HouseholdState, tag: str, writer: Stamp, base_seq: int | None) -> Lost | None:
    if tag not in state.tags:
        return None
    added = _latest_add(state, tag)
    if not _saw(added, writer, base_seq):
        return Lost(f"tags:{tag}", False, True, lost=writer, won=added)
    state.values["tags"] = [t for t in state.tags if t != tag]
    state.tag_adds.pop(tag, None)
    state.tag_removes[tag] = writer
    if len(state.tag_removes) > MAX_TAG_TOMBSTONES:
        # Tombstones only let a later add that undoes an unseen remove be logged as a
        # conflict (the add wins either way): the oldest may go, so that adding and removing
        # ever new tags cannot grow ``field_hlc`` without end.
        oldest = min(state.tag_removes, key=lambda t: state.tag_removes[t].hlc)
        del state.tag_removes[oldest]
    state.changed.update(("tags", STAMPS))
    return None


def tags_after(
    state: HouseholdState,
    adds: list[str],
    removes: list[str],
    writer: Stamp,
    base_seq: int | None,
) -> set[str]:
    """The tags a household would have after :func:`add_tag` of ``adds`` then
    :func:`remove_tag` of ``removes`` not in ``adds`` (as household.update applies them),
    without changing ``state``: callers check a cap before writing."""
    current = set(state.tags)
    gone = {
        t
        for t in removes
        if t in current and t not in adds and _saw(_latest_add(state, t), writer, base_seq)
    }
    return (current | set(adds)) - gone


def overwrite(state: HouseholdState, values: dict[str, Any], writer: Stamp) -> None:
    """A write that saw the whole row and wins outright (a secretary's register import): each
    value is set with the writer's stamp, and ``tags`` (a list) is made the tag set through
    :func:`add_tag` and :func:`remove_tag`, so the stamps keep the shape this module reads.
    The writer is taken to have seen what it replaces (the register is the secretary's word),
    so nothing goes to the conflict log; its stamp (a server HLC, the newest seq) makes a
    phone's later edit that did not see it a conflict, as with any other write."""
    for name, value in values.items():
        if name == "tags":
            wanted = set(value)
            for tag in sorted(wanted - set(state.tags)):
                add_tag(state, tag, writer, writer.seq)
            for tag in sorted(set(state.tags) - wanted):
                remove_tag(state, tag, writer, writer.seq)
            continue
        if state.values[name] != value:
            state.values[name] = value
            state.changed.add(name)
        state.stamps[name] = writer
        state.changed.add(STAMPS)


def encode_stamps(state: HouseholdState) -> str:
    raw: dict[str, Any] = dict(sorted(state.stamps.items()))
    if state.tag_adds:
        raw["tags"] = dict(sorted(state.tag_adds.items()))
    if state.tag_removes:
        raw["tags_removed"] = dict(sorted(state.tag_removes.items()))
    return _json.encode(raw).decode()


_SAVE_SQL = (
    "UPDATE households SET grid_id = ?, building = ?, unit = ?, room = ?, head_name = ?, "
    "phone = ?, size = ?, tags = ?, notes = ?, responsible_member_id = ?, status = ?, "
    "field_hlc = ?, seq = ?, updated_at = ? WHERE id = ?"
)


def _save_params(state: HouseholdState, seq: int, now_iso: str) -> list[Any]:
    v = state.values
    return [
        v["grid_id"],
        v["building"],
        v["unit"],
        v["room"],
        v["head_name"],
        v["phone"],
        v["size"],
        _json.encode(sorted(set(v["tags"]))).decode(),
        v["notes"],
        v["responsible_member_id"],
        v["status"],
        encode_stamps(state),
        seq,
        now_iso,
        v["id"],
    ]


def save(db: sqlite_utils.Database, state: HouseholdState, seq: int, now_iso: str) -> None:
    """Write the merged row (values, stamps) with its new change seq."""
    v = state.values
    if v["grid_id"] != state.loaded_grid:
        visits.move(db, v["id"], state.loaded_grid, v["grid_id"])
    db.execute(_SAVE_SQL, _save_params(state, seq, now_iso))
    state.seq = seq
    state.loaded_grid = v["grid_id"]


_VALUE_COLUMNS = HOUSEHOLD_COLUMNS[1:]  # every column of a household's values but its id


@functools.cache
def _save_columns_sql(columns: tuple[str, ...]) -> str:
    sets = "".join(f"{c} = ?, " for c in columns)
    return f"UPDATE households SET {sets}field_hlc = ?, seq = ?, updated_at = ? WHERE id = ?"


def save_many(
    db: sqlite_utils.Database, states: list[tuple[HouseholdState, set[str]]], now_iso: str
) -> None:
    """:func:`save` of several merged rows that stay in their grid, each with its own
    ``state.seq``, given the names it changed (``state.changed`` accumulated): only the changed
    value columns are written (with the stamps, seq and time), so the indexes on the others are
    left alone. One ``executemany`` per set of changed columns."""
    groups: dict[tuple[str, ...], list[list[Any]]] = {}
    for state, changed in states:
        v = state.values
        assert v["grid_id"] == state.loaded_grid
        columns = tuple(c for c in _VALUE_COLUMNS if c in changed)
        params = [
            _json.encode(sorted(set(v["tags"]))).decode() if c == "tags" else v[c] for c in columns
        ]
        params += [encode_stamps(state), state.seq, now_iso, v["id"]]
        groups.setdefault(columns, []).append(params)
    for columns, rows in groups.items():
        db.conn.executemany(_save_columns_sql(columns), rows)


_CONFLICT_INSERT = (
    "INSERT INTO sync_conflicts (id, household_id, grid_id, field, value, winner, lost_hlc, "
    "lost_person_id, lost_device_id, winner_hlc, winner_person_id, winner_device_id, mid, "
    "created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def conflict_row(state: HouseholdState, item: Lost, mid: str | None, now_ms: int) -> list[Any]:
    """A ``sync_conflicts`` row for :data:`_CONFLICT_INSERT`, without its id (first)."""
    return [
        state.id,
        state.values["grid_id"],
        item.field,
        _json.encode(item.value).decode(),
        _json.encode(item.winner).decode(),
        item.lost.hlc,
        item.lost.person_id,
        item.lost.device_id,
        item.won.hlc or None,
        item.won.person_id,
        item.won.device_id,
        mid,
        now_ms,
    ]


def insert_conflicts(db: sqlite_utils.Database, rows: list[list[Any]]) -> list[int]:
    """Write conflict rows (from :func:`conflict_row`) with one ``executemany``; returns their
    ids, numbered after the highest as SQLite would (call inside the write transaction)."""
    if not rows:
        return []
    first = db.execute("SELECT coalesce(max(id), 0) + 1 FROM sync_conflicts").fetchone()[0]
    db.conn.executemany(_CONFLICT_INSERT, [[first + i, *row] for i, row in enumerate(rows)])
    return list(range(first, first + len(rows)))


def record_conflicts(
    db: sqlite_utils.Database, state: HouseholdState, lost: list[Lost], mid: str | None, now_ms: int
) -> list[int]:
    """Write losing values to the conflict log; returns their ids."""
    return insert_conflicts(db, [conflict_row(state, item, mid, now_ms) for item in lost])

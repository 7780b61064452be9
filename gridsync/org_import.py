"""Import of people and org units from the spreadsheets a district keeps (CSV or XLSX), so that
36,000 party members are one file, not 36,000 commands (issue 18).

The contract is the household import's (``gridsync/importer.py``, whose reading this module
uses whole: encodings, XLSX bounds, header mapping, row numbering, ``bad_file`` and the other
file codes):

- Headers Chinese or English (:data:`PEOPLE`, :data:`UNITS`); ``编号``/``id`` is required.
- Every row is checked and every bad row reported with its number; if any row is bad nothing
  is written. A dry run writes nothing and reports the same.
- The rules are the ones ``gridsync people add`` / ``units add`` and the admin API apply: the
  row must convert to the API's own body type (``PersonWrite``, ``UnitWrite``: the same
  bounds and text rule), then pass :func:`org.check_person` / :func:`org.check_unit` (and
  :func:`org.check_kind_unchanged`), and the write goes through :func:`org.add_people` /
  :func:`org.add_units`. Nothing here writes SQL.
- Re-importing the same file changes nothing: a row equal to what is stored is counted
  ``unchanged`` and not written (a person written again would take a new scope version, and
  their phones would re-sync).
- Columns absent from the file are left as they are on existing records; a new person needs
  姓名 and 角色, a new unit 类型 and 名称.
- Org units may come in any order: parents are written before children (by kind), and a row's
  parent (or a branch's grid) may be another row of the same file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit, org
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock
from gridsync.errors import GridsyncError
from gridsync.importer import ImportRejected, Register, Sheet, cell_error
from gridsync.models import ImportResult, OrgUnit, PersonWrite, RowError, UnitWrite

PEOPLE = Register(
    {
        "id": ("编号", ("编号", "人员编号", "党员编号", "id", "person_id")),
        "name": ("姓名", ("姓名", "name")),
        "roles": ("角色", ("角色", "roles", "role")),
        "scope": ("范围", ("范围", "负责范围", "scope")),
        "branch_id": ("支部", ("支部", "所在支部", "支部编号", "branch", "branch_id")),
        "phone": ("电话", ("电话", "联系电话", "手机", "手机号", "phone", "mobile")),
        "channels": ("渠道", ("渠道", "通知渠道", "channels", "channel")),
    },
    key="id",
)
UNITS = Register(
    {
        "id": ("编号", ("编号", "单位编号", "id", "unit_id")),
        "kind": ("类型", ("类型", "kind", "type")),
        "name": ("名称", ("名称", "name")),
        "parent_id": ("上级", ("上级", "上级编号", "parent", "parent_id")),
        # not in the list: a branch maps to its grid (optional)
        "grid_id": ("对应网格", ("对应网格", "网格", "grid", "grid_id")),
    },
    key="id",
)
REGISTERS = {"people": PEOPLE, "units": UNITS}

ROLE_ALIASES = {
    "管理员": "admin",
    "区管理员": "admin",
    "街道": "street",
    "社区书记": "community_secretary",
    "社区党委书记": "community_secretary",
    "支部书记": "branch_secretary",
    "网格员": "grid_worker",
    "党员": "member",
    "党建指导员": "instructor",
    "指导员": "instructor",
    "督办": "supervisor",
    "部门": "department",
}
KIND_ALIASES = {
    "区": "district",
    "街道": "street",
    "社区": "community",
    "网格": "grid",
    "支部": "branch",
    "党支部": "branch",
    "部门": "department",
}
# Parents before children: the order units are written in.
KIND_ORDER = {"district": 0, "street": 1, "department": 1, "community": 2, "grid": 3, "branch": 4}
LIST_SEPARATORS = re.compile(r"[；;,，、|\s]+")
CHANNEL_SEPARATORS = re.compile(r"[；;\s]+")  # an Apprise URL may hold commas


def _split(text: str, pattern: re.Pattern[str] = LIST_SEPARATORS) -> list[str]:
    return [piece for piece in pattern.split(text) if piece]


def _field_of(exc: msgspec.ValidationError) -> str | None:
    """The field a msgspec error names (``... - at `$.scope[0]` `` -> ``scope``)."""
    found = re.search(r"at `\$\.([A-Za-z_]+)", str(exc))
    return found.group(1) if found else None


@dataclass
class _Plan:
    result: ImportResult
    write: list[Any] = field(default_factory=list)  # NewPerson or OrgUnit, in write order


def _start(kind: str, sheet: Sheet) -> _Plan:
    rows = len(sheet.rows) + len({e.row for e in sheet.errors})
    result = ImportResult(
        kind=kind, source=sheet.source, rows=rows, ignored_columns=list(sheet.ignored)
    )
    result.errors.extend(sheet.errors)
    return _Plan(result)


def _key(
    plan: _Plan, register: Register, number: int, raw: dict[str, str], seen: dict[str, int]
) -> str | None:
    """The row's id, once in the file; else an error of the row and None."""
    errors = plan.result.errors
    key = raw.get(register.key, "")
    if not key:
        cell_error(errors, number, register.key, "missing_field", "编号不能为空", register)
        return None
    if key in seen:
        cell_error(
            errors,
            number,
            register.key,
            "duplicate_id",
            f"编号“{key[:64]}”与第{seen[key]}行重复",
            register,
        )
        return None
    seen[key] = number
    return key


def _refused(
    errors: list[RowError], register: Register, number: int, fallback: str
) -> Callable[[Exception], None]:
    """Note a rule's refusal (a wire type's ValidationError or a domain error) as an error of
    the row, in the column the rule names."""

    def note(exc: Exception) -> None:
        if isinstance(exc, msgspec.ValidationError):
            name, code, message = _field_of(exc) or fallback, "validation_error", str(exc)
        else:
            assert isinstance(exc, GridsyncError)
            path = re.match(r"\$?\.?(\w+)", str(exc.extra.get("field") or ""))
            name, code, message = path.group(1) if path else fallback, exc.code, exc.message
        if name not in register.fields:
            name = fallback
        cell_error(errors, number, name, code, message, register)

    return note


def _finish(plan: _Plan) -> ImportResult:
    errors = plan.result.errors
    errors.sort(key=lambda e: (e.row, e.column or ""))
    return plan.result


# -- people -------------------------------------------------------------------------------------


def _stored_people(db: sqlite_utils.Database, ids: list[str]) -> dict[str, dict[str, Any]]:
    """The people a file names as stored, by id (two queries)."""
    found: dict[str, dict[str, Any]] = {}
    encoded = msgspec.json.encode(ids).decode()
    for pid, name, phone, roles, branch, channels, locale in db.execute(
        "SELECT id, name, phone, roles, branch_id, channels, locale FROM people "
        "WHERE id IN (SELECT value FROM json_each(?))",
        [encoded],
    ):
        found[pid] = {
            "name": name,
            "phone": phone,
            "roles": msgspec.json.decode(roles),
            "branch_id": branch,
            "channels": msgspec.json.decode(channels),
            "locale": locale,
            "scope": [],
        }
    for pid, unit in db.execute(
        "SELECT person_id, unit_id FROM person_scope "
        "WHERE person_id IN (SELECT value FROM json_each(?)) ORDER BY person_id, unit_id",
        [encoded],
    ):
        found[pid]["scope"].append(unit)
    return found


def _person_values(raw: dict[str, str]) -> dict[str, Any]:
    """The fields of a row that the file has, typed as ``PersonWrite`` takes them."""
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name == "roles":
            values[name] = [ROLE_ALIASES.get(r, r.lower()) for r in _split(text)]
        elif name == "scope":
            values[name] = _split(text)
        elif name == "channels":
            values[name] = _split(text, CHANNEL_SEPARATORS)
        elif name == "branch_id":
            values[name] = text or None
        elif name != "id":
            values[name] = text
    return values


def _same_person(stored: dict[str, Any], p: org.NewPerson) -> bool:
    return (
        stored["name"] == p.name
        and stored["phone"] == p.phone
        and sorted(stored["roles"]) == sorted(p.roles)
        and stored["branch_id"] == p.branch_id
        and stored["channels"] == p.channels
        and sorted(stored["scope"]) == sorted(p.scope)
    )


Progress = Callable[[int], None]  # advances the CLI's bar by n rows


def _noop(_: int) -> None:
    pass


def plan_people(db: sqlite_utils.Database, sheet: Sheet, progress: Progress = _noop) -> _Plan:
    """Check every row of a people file against the API's rules and the database; work out
    who is new and who changes. Writes nothing."""
    plan = _start("people", sheet)
    errors = plan.result.errors
    stored = _stored_people(db, [raw.get("id", "") for _, raw in sheet.rows])
    seen: dict[str, int] = {}
    for number, raw in sheet.rows:
        progress(1)
        key = _key(plan, PEOPLE, number, raw, seen)
        if key is None:
            continue
        current = stored.get(key)
        values = _person_values(raw)
        missing = [n for n in ("name", "roles") if not values.get(n) and (n in raw or not current)]
        for name in missing:
            what = "新人员必须填写" if current is None else "不能为空："
            cell_error(errors, number, name, "missing_field", what + PEOPLE.label(name), PEOPLE)
        if missing:
            continue
        merged = {**{k: v for k, v in (current or {}).items() if k != "locale"}, **values}
        note = _refused(errors, PEOPLE, number, "id")
        try:
            body = msgspec.convert(merged, PersonWrite)
            person = org.NewPerson(
                id=key,
                name=body.name,
                roles=list(body.roles),
                scope=org.scope_units(list(body.scope)),
                branch_id=body.branch_id,
                phone=body.phone,
                channels=list(body.channels),
                locale=(current or {}).get("locale", "zh-CN"),
            )
            org.check_person(db, person)
        except (msgspec.ValidationError, GridsyncError) as exc:
            note(exc)
            continue
        if current is None:
            plan.result.new += 1
            plan.write.append(person)
        elif _same_person(current, person):
            plan.result.unchanged += 1
        else:
            plan.result.changed += 1
            plan.write.append(person)
    return plan


# -- org units ----------------------------------------------------------------------------------


def _stored_units(db: sqlite_utils.Database, ids: list[str]) -> dict[str, OrgUnit]:
    return {
        r[0]: OrgUnit(id=r[0], kind=r[1], name=r[2], parent_id=r[3], grid_id=r[4])
        for r in db.execute(
            "SELECT id, kind, name, parent_id, grid_id FROM org_units "
            "WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(ids).decode()],
        )
    }


def _unit_values(raw: dict[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name == "kind":
            values[name] = KIND_ALIASES.get(text, text.lower())
        elif name in ("parent_id", "grid_id"):
            values[name] = text or None
        elif name != "id":
            values[name] = text
    return values


def plan_units(db: sqlite_utils.Database, sheet: Sheet, progress: Progress = _noop) -> _Plan:
    """Check every row of an org-unit file; work out what is new and what changes, in the
    order they can be written (parents first). Writes nothing."""
    plan = _start("units", sheet)
    errors = plan.result.errors
    stored = _stored_units(db, [raw.get("id", "") for _, raw in sheet.rows])
    # the kind of every unit of the file, so that a row may name another row as its parent
    planned: dict[str, str] = {
        raw["id"]: KIND_ALIASES.get(raw["kind"], raw["kind"].lower())
        for _, raw in sheet.rows
        if raw.get("id") and raw.get("kind")
    }
    for unit_id, stored_unit in stored.items():
        planned.setdefault(unit_id, stored_unit.kind)
    seen: dict[str, int] = {}
    checked: list[tuple[OrgUnit, bool]] = []
    for number, raw in sheet.rows:
        progress(1)
        key = _key(plan, UNITS, number, raw, seen)
        if key is None:
            continue
        current = stored.get(key)
        values = _unit_values(raw)
        missing = [n for n in ("kind", "name") if not values.get(n) and (n in raw or not current)]
        for name in missing:
            what = "新单位必须填写" if current is None else "不能为空："
            cell_error(errors, number, name, "missing_field", what + UNITS.label(name), UNITS)
        if missing:
            continue
        base = msgspec.structs.asdict(current) if current else {}
        base.pop("id", None)
        note = _refused(errors, UNITS, number, "id")
        try:
            body = msgspec.convert({**base, **values}, UnitWrite)
            unit = OrgUnit(
                id=key,
                kind=body.kind,
                name=body.name,
                parent_id=body.parent_id,
                grid_id=body.grid_id,
            )
            org.check_kind_unchanged(db, key, unit.kind)
            org.check_unit(db, unit, planned)
        except (msgspec.ValidationError, GridsyncError) as exc:
            note(exc)
            continue
        checked.append((unit, current is None))
        if current is None:
            plan.result.new += 1
        elif current == unit:
            plan.result.unchanged += 1
        else:
            plan.result.changed += 1
    plan.write = sorted(
        (u for u, new in checked if new or stored.get(u.id) != u),
        key=lambda u: KIND_ORDER[u.kind],
    )
    return plan


PLANS = {"people": plan_people, "units": plan_units}


def preview(
    db: sqlite_utils.Database, kind: str, sheet: Sheet, progress: Progress = _noop
) -> ImportResult:
    """Dry run: the counts and errors an import of ``sheet`` would have."""
    result = _finish(PLANS[kind](db, sheet, progress))
    result.dry_run = True
    return result


def import_sheet(
    db: sqlite_utils.Database,
    kind: str,
    sheet: Sheet,
    actor: Actor,
    *,
    allow_last_admin: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    progress: Progress = _noop,
) -> ImportResult:
    """Apply an import of ``kind`` (``people`` or ``units``) in the caller's write
    transaction, through :func:`org.add_people` / :func:`org.add_units`; raises
    :class:`ImportRejected` (and writes nothing) when any row is bad. ``allow_last_admin``
    as :func:`org.add_people` takes it (the CLI)."""
    plan = PLANS[kind](db, sheet, progress)
    result = _finish(plan)
    if result.errors:
        raise ImportRejected(
            f"{sheet.source}: {len({e.row for e in result.errors})} 行有错误，未写入任何数据",
            errors=[msgspec.structs.asdict(e) for e in result.errors],
        )
    if kind == "people":
        org.add_people(db, plan.write, actor, allow_last_admin=allow_last_admin)
    else:
        org.add_units(db, plan.write, actor)
    result.written = True
    audit.record(
        db,
        actor,
        f"{kind}.import",
        target=sheet.source,
        detail={
            "rows": result.rows,
            "new": result.new,
            "changed": result.changed,
            "unchanged": result.unchanged,
        },
        clock=clock,
    )
    return result

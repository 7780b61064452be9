"""Organisation units, people, and scope resolution.

:func:`resolve_scope` is the one answer to "which org units and grids may this person read and
write"; every read and write path asks it (SPEC section 2: scope flows down the tree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import now_iso
from gridsync.db import and_given, next_seq, paged
from gridsync.errors import Conflict, Invalid, NotFound
from gridsync.models import ROLES, Id, Name, OrgUnit, Person, PersonWrite, UnitWrite
from gridsync.models.core import ChannelUrl, PhoneNumber
from gridsync.privacy import NO_PHONES, PhoneView, view_of

PARENT_KIND = {
    "district": None,
    "street": "district",
    "community": "street",
    "grid": "community",
    "branch": "community",
    "department": "district",
}


@dataclass(frozen=True)
class Scope:
    """What a person may see. ``everything`` is the district admin's scope."""

    person_id: str
    everything: bool
    unit_ids: frozenset[str]  # assigned units and everything below them
    grid_ids: frozenset[str]  # grids whose households are readable and writable
    version: int
    # whose phone numbers the person reads in full (gridsync/privacy.py); masked by default
    phones: PhoneView = NO_PHONES

    def allows_grid(self, grid_id: str | None) -> bool:
        return self.everything or (grid_id is not None and grid_id in self.grid_ids)

    def allows_unit(self, unit_id: str) -> bool:
        return self.everything or unit_id in self.unit_ids

    def grid_filter(self, column: str = "grid_id") -> tuple[str, list[Any]]:
        """An SQL condition restricting ``column`` to this scope's grids, and its parameters."""
        if self.everything:
            return "1", []
        if not self.grid_ids:
            return "0", []
        return f"{column} IN (SELECT value FROM json_each(?))", [
            msgspec.json.encode(sorted(self.grid_ids)).decode()
        ]

    def unit_filter(self, column: str = "id") -> tuple[str, list[Any]]:
        if self.everything:
            return "1", []
        return f"{column} IN (SELECT value FROM json_each(?))", [
            msgspec.json.encode(sorted(self.unit_ids)).decode()
        ]


def unit_grid_filter(
    db: sqlite_utils.Database, scope: Scope, unit_id: str | None, column: str
) -> tuple[str, list[Any]]:
    """SQL restricting ``column`` (a grid id) to the reader's scope, and to the grids under
    ``unit_id`` when given (a unit the reader cannot see is not found)."""
    if unit_id is None:
        return scope.grid_filter(column)
    kind = db.execute("SELECT kind FROM org_units WHERE id = ?", [unit_id]).fetchone()
    if kind is None or not (scope.allows_unit(unit_id) or scope.allows_grid(unit_id)):
        raise NotFound(f"no org unit {unit_id}", field="scope")
    below = db.execute(
        """
        WITH RECURSIVE tree(id) AS (
            SELECT ? UNION SELECT o.id FROM org_units o JOIN tree t ON o.parent_id = t.id
        )
        SELECT o.id, o.kind, o.grid_id FROM tree t JOIN org_units o ON o.id = t.id
        """,
        [unit_id],
    ).fetchall()
    grids = {u for u, k, _ in below if k == "grid"} | {
        g for _, k, g in below if k == "branch" and g
    }
    allowed = sorted(g for g in grids if scope.allows_grid(g))
    return f"{column} IN (SELECT value FROM json_each(?))", [msgspec.json.encode(allowed).decode()]


def resolve_scope(db: sqlite_utils.Database, person_id: str) -> Scope:
    row = db.execute(
        "SELECT roles, scope_version, active FROM people WHERE id = ?", [person_id]
    ).fetchone()
    if row is None:
        raise NotFound(f"no person {person_id}")
    roles = msgspec.json.decode(row[0])
    phones = view_of(db, person_id, roles)
    if "admin" in roles:
        return Scope(person_id, True, frozenset(), frozenset(), row[1], phones)
    units = db.execute(
        """
        WITH RECURSIVE tree(id) AS (
            SELECT unit_id FROM person_scope WHERE person_id = ?
            UNION
            SELECT o.id FROM org_units o JOIN tree t ON o.parent_id = t.id
        )
        SELECT o.id, o.kind, o.grid_id FROM tree t JOIN org_units o ON o.id = t.id
        """,
        [person_id],
    ).fetchall()
    unit_ids = {u[0] for u in units}
    grid_ids = {u[0] for u in units if u[1] == "grid"}
    grid_ids |= {u[2] for u in units if u[1] == "branch" and u[2]}
    return Scope(person_id, False, frozenset(unit_ids), frozenset(grid_ids), row[1], phones)


# -- what callers other than the API pass in --------------------------------------------------


def checked(value: Any, wire_type: Any, field: str) -> Any:
    """``value`` if it is a valid ``wire_type`` (``models.Id``, ``models.Name``, ...), else
    ``Invalid`` naming ``field``. The API's bodies are decoded into those types already; the
    domain functions check the values again with this, so that the CLI (and any other caller)
    meets the same rule: an id the API could not address, or a name holding a control
    character, never gets in by another door."""
    try:
        return msgspec.convert(value, wire_type)
    except msgspec.ValidationError as exc:
        shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "…"
        if wire_type is Id:
            reason = "an id is 1-64 letters, digits, '_', '.', ':' or '-' (no spaces)"
        elif isinstance(value, str) and any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
            reason = "it holds a control character (a line break, ESC, ...)"
        else:
            reason = str(exc).removeprefix("Expected ").replace("`", "")
        raise Invalid(f"{field} {shown!r} is refused: {reason}", field=field) from None


# -- org units ------------------------------------------------------------------------------

_UNIT_COLS = "id, kind, name, parent_id, grid_id"


def _unit(row: tuple) -> OrgUnit:
    return OrgUnit(id=row[0], kind=row[1], name=row[2], parent_id=row[3], grid_id=row[4])


def check_unit(
    db: sqlite_utils.Database, unit: OrgUnit, planned: dict[str, str] | None = None
) -> None:
    """THE rules an org unit must pass before it is written (``units add``, ``PUT
    /api/v1/org-units``, ``gridsync import units``): ids and name in their wire shape, a parent
    of the kind the tree needs (none for a district), a branch's grid a grid. A parent or grid
    is looked up in ``planned`` (id -> kind of units written in the same batch) first, then in
    the database."""
    checked(unit.id, Id, "id")
    checked(unit.name, Name, "name")
    for column in ("parent_id", "grid_id"):
        if getattr(unit, column) is not None:
            checked(getattr(unit, column), Id, column)
    expected = PARENT_KIND[unit.kind]
    if expected is None and unit.parent_id is not None:
        raise Invalid(f"a {unit.kind} has no parent", field="parent_id")
    if expected is not None and unit.parent_id is None:
        raise Invalid(f"a {unit.kind} needs a parent {expected}", field="parent_id")
    for column, value, kind in (
        ("parent_id", unit.parent_id, expected),
        ("grid_id", unit.grid_id, "grid"),
    ):
        if value is None:
            continue
        found = (planned or {}).get(value)
        if found is None:
            row = db.execute("SELECT kind FROM org_units WHERE id = ?", [value]).fetchone()
            found = row[0] if row else None
        if found is None:
            raise Invalid(f"{unit.kind} {unit.id}: no org unit {value}", field=column)
        if found != kind:
            raise Invalid(
                f"{unit.kind} {unit.id}: {value} is a {found}, not a {kind}", field=column
            )


def check_kind_unchanged(db: sqlite_utils.Database, unit_id: str, kind: str) -> None:
    """A unit's kind is fixed once created (``409 kind_change``: a grid that became a branch
    would strand its households)."""
    row = db.execute("SELECT kind FROM org_units WHERE id = ?", [unit_id]).fetchone()
    if row is not None and row[0] != kind:
        raise Conflict(
            f"org unit {unit_id} is a {row[0]}; its kind cannot change to {kind}",
            code="kind_change",
            field="kind",
        )


def add_units(db: sqlite_utils.Database, units: list[OrgUnit], actor: Actor | None = None) -> None:
    """Insert or update org units (parents before children). ``actor`` defaults to the CLI."""
    if not units:
        return
    for unit in units:
        checked(unit.id, Id, "id")
        checked(unit.name, Name, "name")
    first = next_seq(db, len(units))
    for i, unit in enumerate(units):
        check_unit(db, unit)
        db.execute(
            f"INSERT INTO org_units ({_UNIT_COLS}, seq) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET kind=excluded.kind, name=excluded.name, "
            "parent_id=excluded.parent_id, grid_id=excluded.grid_id, seq=excluded.seq",
            [unit.id, unit.kind, unit.name, unit.parent_id, unit.grid_id, first + i],
        )
    audit.record(
        db,
        actor or Actor.cli(),
        "org_units.upsert",
        detail={"ids": [u.id for u in units][:50], "count": len(units)},
    )


def get_unit(db: sqlite_utils.Database, unit_id: str) -> OrgUnit:
    row = db.execute(f"SELECT {_UNIT_COLS} FROM org_units WHERE id = ?", [unit_id]).fetchone()
    if row is None:
        raise NotFound(f"no org unit {unit_id}")
    return _unit(row)


def list_units(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    kind: str | None = None,
    parent_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[OrgUnit], int]:
    where, params = and_given(
        *scope.unit_filter("id"), ("kind = ?", kind), ("parent_id = ?", parent_id)
    )
    rows, total = paged(
        db,
        _UNIT_COLS,
        "org_units WHERE " + where,
        params,
        order_by="id",
        limit=limit,
        offset=offset,
    )
    return [_unit(r) for r in rows], total


# -- people ---------------------------------------------------------------------------------

_PERSON_COLS = "p.id, p.name, p.roles, p.branch_id, p.active, p.inactive_reason, p.inactive_since"


def _people_with_scope(db: sqlite_utils.Database, rows: list[tuple]) -> list[Person]:
    if not rows:
        return []
    ids = [r[0] for r in rows]
    scope_rows = db.execute(
        "SELECT person_id, unit_id FROM person_scope "
        "WHERE person_id IN (SELECT value FROM json_each(?)) ORDER BY unit_id",
        [msgspec.json.encode(ids).decode()],
    ).fetchall()
    scopes: dict[str, list[str]] = {}
    for pid, uid in scope_rows:
        scopes.setdefault(pid, []).append(uid)
    return [
        Person(
            id=r[0],
            name=r[1],
            roles=msgspec.json.decode(r[2]),
            branch_id=r[3],
            active=bool(r[4]),
            inactive_reason=r[5],
            inactive_since=r[6],
            scope=scopes.get(r[0], []),
        )
        for r in rows
    ]


def get_person(db: sqlite_utils.Database, person_id: str) -> Person:
    rows = db.execute(f"SELECT {_PERSON_COLS} FROM people p WHERE p.id = ?", [person_id]).fetchall()
    if not rows:
        raise NotFound(f"no person {person_id}")
    return _people_with_scope(db, rows)[0]


def _people_scope_filter(scope: Scope) -> tuple[str, list[Any]]:
    """People visible in a scope: themselves, anyone whose scope unit or branch is in it."""
    if scope.everything:
        return "1", []
    units = msgspec.json.encode(sorted(scope.unit_ids)).decode()
    return (
        "(p.id = ? OR p.branch_id IN (SELECT value FROM json_each(?)) OR EXISTS ("
        "SELECT 1 FROM person_scope s WHERE s.person_id = p.id "
        "AND s.unit_id IN (SELECT value FROM json_each(?))))",
        [scope.person_id, units, units],
    )


def person_visible(db: sqlite_utils.Database, scope: Scope, person_id: str) -> bool:
    cond, params = _people_scope_filter(scope)
    row = db.execute(
        f"SELECT 1 FROM people p WHERE p.id = ? AND {cond}", [person_id, *params]
    ).fetchone()
    return row is not None


def list_people(
    db: sqlite_utils.Database,
    scope: Scope,
    *,
    role: str | None = None,
    unit_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Person], int]:
    cond, params = _people_scope_filter(scope)
    where = [cond]
    if role:
        if role not in ROLES:
            raise Invalid(f"unknown role {role!r}; one of {', '.join(ROLES)}", field="role")
        where.append("EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = ?)")
        params.append(role)
    if unit_id:
        where.append(
            "(p.id IN (SELECT person_id FROM person_scope WHERE unit_id = ?) OR p.branch_id = ?)"
        )
        params += [unit_id, unit_id]
    rows, total = paged(
        db,
        _PERSON_COLS,
        "people p WHERE " + " AND ".join(where),
        params,
        order_by="p.id",
        limit=limit,
        offset=offset,
    )
    return _people_with_scope(db, rows), total


class NewPerson(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    id: str
    name: str
    roles: list[str]
    scope: list[str] = msgspec.field(default_factory=list)
    branch_id: str | None = None
    phone: str = ""
    channels: list[str] = msgspec.field(default_factory=list)
    locale: str = "zh-CN"


def scope_units(unit_ids: list[str]) -> list[str]:
    """A scope as given, each unit once (order kept), every id in the id shape.

    A scope is a set of units: naming one twice means what naming it once does (a script that
    joins two lists, ``--scope g1 --scope g1``), so the repeat is dropped rather than refused;
    refusing would only make the caller remove it. (It was an IntegrityError, a 500.)"""
    units = list(dict.fromkeys(unit_ids))
    for unit_id in units:
        checked(unit_id, Id, "scope")
    return units


def _replace_scope(db: sqlite_utils.Database, person_id: str, unit_ids: list[str]) -> None:
    db.execute("DELETE FROM person_scope WHERE person_id = ?", [person_id])
    for unit_id in scope_units(unit_ids):
        if db.execute("SELECT 1 FROM org_units WHERE id = ?", [unit_id]).fetchone() is None:
            raise Invalid(f"person {person_id}: no org unit {unit_id}", field="scope")
        db.execute(
            "INSERT INTO person_scope (person_id, unit_id) VALUES (?, ?)", [person_id, unit_id]
        )


def _check_grid_worker(
    db: sqlite_utils.Database, person_id: str, roles: list[str], unit_ids: list[str]
) -> None:
    """A grid worker (网格员) serves whole grids: their scope names at least one grid (the
    grids where they also read phone numbers in full, gridsync/privacy.py)."""
    if "grid_worker" not in roles:
        return
    for unit_id in unit_ids:
        row = db.execute("SELECT kind FROM org_units WHERE id = ?", [unit_id]).fetchone()
        if row is not None and row[0] == "grid":
            return
    raise Invalid(
        f"person {person_id}: a grid_worker's scope must name the grids they serve",
        code="grid_worker_scope",
        field="scope",
    )


# The roles an instructor does not also hold: the one that makes a person responsible for
# households and counted as a member (gridsync/coverage/members.py).
_NOT_WITH_INSTRUCTOR = ("member",)


def _check_instructor(
    db: sqlite_utils.Database, person_id: str, roles: list[str], unit_ids: list[str]
) -> None:
    """A party-building instructor (党建指导员) is scoped to one or more communities (every
    scope unit a community) and does not also hold the ``member`` role: they are never a
    household's responsible member (``gridsync/coverage/members.py``), so they must not be
    counted as one."""
    if "instructor" not in roles:
        return
    clash = sorted(set(roles) & set(_NOT_WITH_INSTRUCTOR))
    if clash:
        raise Invalid(
            f"person {person_id}: an instructor (党建指导员) does not also hold the role "
            f"{', '.join(clash)} (a member may be made responsible for households; an "
            "instructor never is)",
            code="instructor_member",
            field="roles",
        )
    kinds = [
        row[0] if row else None
        for row in (
            db.execute("SELECT kind FROM org_units WHERE id = ?", [u]).fetchone() for u in unit_ids
        )
    ]
    if not kinds or any(k != "community" for k in kinds):
        raise Invalid(
            f"person {person_id}: an instructor's scope names the communities they serve "
            "(one or more, communities only)",
            code="instructor_scope",
            field="scope",
        )


# Active devices of active people holding the admin role (neither revoked nor draining).
_ADMIN_DEVICES = (
    "SELECT d.id, d.person_id FROM devices d JOIN people p ON p.id = d.person_id "
    "WHERE d.revoked_at IS NULL AND d.draining_since IS NULL AND p.active "
    "AND EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = 'admin')"
)


def has_admin_device(db: sqlite_utils.Database) -> bool:
    """Whether some active person holding the ``admin`` role has an active device: someone can
    still enrol devices and administer the district through the API."""
    return db.execute(f"SELECT EXISTS ({_ADMIN_DEVICES})").fetchone()[0] == 1


def leaves_no_admin_device(
    db: sqlite_utils.Database, *, device_id: str | None = None, person_id: str | None = None
) -> bool:
    """THE lock-out rule, asked before a write: whether revoking (or draining) ``device_id``, or
    taking the admin role (or activity) from ``person_id``, would leave no active admin holding
    an active device, where there is one now.

    Through the API such a write is refused, ``409 last_admin_device`` (``auth.revoke``,
    :func:`add_people`): one click, or a fuzzer, would lock every admin out of the API, and
    enrolling a device needs an admin. The CLI, run by the operator on the server, may do it on
    purpose (``allow_last_admin``, with a warning), and can enrol a new admin device. A scope
    change cannot lock anyone out: an admin's scope is the whole district whatever it names."""
    row = db.execute(
        f"SELECT EXISTS ({_ADMIN_DEVICES}), "
        f"EXISTS (SELECT 1 FROM ({_ADMIN_DEVICES}) a "
        "WHERE a.id IS NOT ? AND a.person_id IS NOT ?)",
        [device_id, person_id],
    ).fetchone()
    return row[0] == 1 and row[1] == 0


def _holds_admin(db: sqlite_utils.Database, person_id: str) -> bool:
    return (
        db.execute(
            "SELECT 1 FROM people WHERE id = ? "
            "AND EXISTS (SELECT 1 FROM json_each(roles) WHERE value = 'admin')",
            [person_id],
        ).fetchone()
        is not None
    )


def _check_person(p: NewPerson) -> None:
    checked(p.id, Id, "id")
    checked(p.name, Name, "name")
    checked(p.phone, PhoneNumber, "phone")
    if p.branch_id is not None:
        checked(p.branch_id, Id, "branch_id")
    for url in p.channels:
        checked(url, ChannelUrl, "channels")
    scope_units(p.scope)


def check_person(db: sqlite_utils.Database, p: NewPerson) -> None:
    """THE rules a person must pass before they are written (``people add``, ``PUT
    /api/v1/people``, ``gridsync import people``), but the lock-out rule, which depends on the
    order of the writes (:func:`add_people` asks it as it writes): ids, name, phone and channel
    URLs in their wire shape, every channel one Apprise can parse (``invalid_channel``), known
    roles, a grid worker's grids (``grid_worker_scope``), the branch a party branch and every
    scope unit an org unit."""
    _check_person(p)
    if p.channels:
        from gridsync.notify.routing import check_channels  # Apprise loads only when needed

        check_channels(p.channels)
    bad = [r for r in p.roles if r not in ROLES]
    if bad or not p.roles:
        raise Invalid(f"person {p.id}: roles must be some of {', '.join(ROLES)}", field="roles")
    _check_grid_worker(db, p.id, p.roles, p.scope)
    _check_instructor(db, p.id, p.roles, p.scope)
    if p.branch_id is not None:
        row = db.execute("SELECT kind FROM org_units WHERE id = ?", [p.branch_id]).fetchone()
        if row is None or row[0] != "branch":
            raise Invalid(f"{p.branch_id} is not a party branch", field="branch_id")
    for unit_id in p.scope:
        if db.execute("SELECT 1 FROM org_units WHERE id = ?", [unit_id]).fetchone() is None:
            raise Invalid(f"person {p.id}: no org unit {unit_id}", field="scope")


def add_people(
    db: sqlite_utils.Database,
    people: list[NewPerson],
    actor: Actor,
    *,
    allow_last_admin: bool = False,
) -> None:
    """Insert or update people and replace their scope, each checked by :func:`check_person`
    first (a channel URL Apprise cannot parse is ``400 invalid_channel``, the API's and the
    CLI's check alike, so that a typo is refused now rather than found out at the first alert).
    Taking the admin role from the last admin holding an active device is ``409
    last_admin_device`` unless ``allow_last_admin`` (the CLI, see
    :func:`leaves_no_admin_device`)."""
    if not people:
        return
    for p in people:
        check_person(db, p)
    first = next_seq(db, len(people))
    created = now_iso()
    for i, p in enumerate(people):
        if (
            "admin" not in p.roles
            and not allow_last_admin
            and _holds_admin(db, p.id)  # only an admin now can leave none (36,000 imported)
            and leaves_no_admin_device(db, person_id=p.id)
        ):
            raise Conflict(
                f"{p.id} is the last admin with an active device: without the admin role nobody "
                "could enrol a device or administer through the API; enrol a device for another "
                "admin first (or change it with 'gridsync people add' on the server)",
                code="last_admin_device",
                field="roles",
            )
        db.execute(
            """INSERT INTO people (id, name, phone, roles, branch_id, channels, locale, seq,
                                   created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT(id) DO UPDATE SET name=excluded.name, phone=excluded.phone,
                 roles=excluded.roles, branch_id=excluded.branch_id,
                 channels=excluded.channels, locale=excluded.locale, seq=excluded.seq,
                 scope_version=scope_version + 1""",
            [
                p.id,
                p.name,
                p.phone,
                msgspec.json.encode(sorted(p.roles)).decode(),
                p.branch_id,
                msgspec.json.encode(p.channels).decode(),
                p.locale,
                first + i,
                created,
            ],
        )
        _replace_scope(db, p.id, p.scope)
    audit.record(
        db,
        actor,
        "people.upsert",
        detail={"ids": [p.id for p in people][:50], "count": len(people)},
    )


def put_unit(db: sqlite_utils.Database, unit_id: str, data: UnitWrite, actor: Actor) -> OrgUnit:
    """Create an org unit or rename/move it (``PUT /api/v1/org-units/{id}``); its kind is fixed
    once created (``kind_change``: a grid that became a branch would strand its households)."""
    check_kind_unchanged(db, unit_id, data.kind)
    add_units(
        db,
        [
            OrgUnit(
                id=unit_id,
                kind=data.kind,
                name=data.name,
                parent_id=data.parent_id,
                grid_id=data.grid_id,
            )
        ],
        actor,
    )
    return get_unit(db, unit_id)


def put_person(
    db: sqlite_utils.Database, person_id: str, data: PersonWrite, actor: Actor
) -> Person:
    """Create or update a person and replace their scope (``PUT /api/v1/people/{id}``)."""
    add_people(
        db,
        [
            NewPerson(
                id=person_id,
                name=data.name,
                roles=list(data.roles),
                scope=list(data.scope),
                branch_id=data.branch_id,
                phone=data.phone,
                channels=list(data.channels),
                locale=data.locale,
            )
        ],
        actor,
    )
    return get_person(db, person_id)


def set_scope(db: sqlite_utils.Database, person_id: str, unit_ids: list[str], actor: Actor) -> None:
    """Replace a person's scope; bumps their scope version so phones re-sync what changed."""
    person = get_person(db, person_id)
    unit_ids = scope_units(unit_ids)
    _check_grid_worker(db, person_id, list(person.roles), unit_ids)
    _check_instructor(db, person_id, list(person.roles), unit_ids)
    _replace_scope(db, person_id, unit_ids)
    db.execute(
        "UPDATE people SET scope_version = scope_version + 1, seq = ? WHERE id = ?",
        [next_seq(db), person_id],
    )
    audit.record(db, actor, "people.set_scope", target=person_id, detail={"scope": unit_ids})


def put_scope(
    db: sqlite_utils.Database, person_id: str, unit_ids: list[str], actor: Actor
) -> Person:
    """:func:`set_scope`, answering with the person as it now is."""
    set_scope(db, person_id, unit_ids, actor)
    return get_person(db, person_id)

"""Devices and tokens. A token is shown once at enrolment; the database keeps only its SHA-256
(tokens are 256 random bits, so a fast hash is safe and makes every request's lookup cheap).
Admins, secretaries and phones all authenticate the same way: one device, one token.

Revocation is at once (``revoked_at``: the next request is ``401 device_revoked`` with
``wipe: true``) or by *drain* (``draining_since``): a phone being replaced may push what it
holds, in one successful push request, and is revoked in that push's transaction
(:func:`finish_drain`); until then it may only push and read its sync status, every other
request is ``403 device_draining`` (``drain: true``). Through the API nobody may revoke or drain
the last active device of an admin (``409 last_admin_device``): the district would be locked out
of its own API. The CLI, run by the operator on the server, may (``allow_last_admin``). The same
rule keeps the last admin holding a device from losing the admin role
(``org.leaves_no_admin_device``, which both ask).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import now_iso
from gridsync.db import paged
from gridsync.errors import Conflict, DeviceRevoked, Forbidden, Invalid, NotFound, Unauthorized
from gridsync.models import Device, Enrolled, Id, Role
from gridsync.models.core import Label, Reason
from gridsync.org import Scope, checked, get_person, leaves_no_admin_device, resolve_scope

TOKEN_PREFIX = "gs1_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a person on a device, with the roles and scope of the person."""

    person_id: str
    device_id: str
    roles: frozenset[Role]
    scope: Scope
    draining: bool = False  # revoked with drain: may push once, and read its sync status

    @property
    def actor(self) -> Actor:
        return Actor(self.person_id, self.device_id)

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def require_role(self, *roles: str) -> None:
        if not self.has_role(*roles):
            raise Forbidden(f"this needs one of the roles: {', '.join(roles)}")


def enroll(
    db: sqlite_utils.Database,
    person_id: str,
    actor: Actor,
    *,
    label: str = "",
    device_id: str | None = None,
) -> Enrolled:
    """Enrol a device for a person; the token is in the answer, and only its hash is kept.

    A chosen ``device_id`` must have the id shape (``models.Id``), whoever enrols: the phone
    writes it into every HLC, and an HLC with another device id is refused (a device id with a
    space could never push)."""
    get_person(db, person_id)  # raises NotFound
    if device_id is not None:
        checked(device_id, Id, "device_id")
    checked(label, Label, "label")
    device_id = device_id or f"dev-{secrets.token_hex(6)}"
    if db.execute("SELECT 1 FROM devices WHERE id = ?", [device_id]).fetchone():
        raise Invalid(f"device id {device_id} is taken", code="device_exists", field="device_id")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.execute(
        "INSERT INTO devices (id, person_id, token_hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
        [device_id, person_id, hash_token(token), label, now_iso()],
    )
    audit.record(db, actor, "device.enroll", target=device_id, detail={"person_id": person_id})
    return Enrolled(device_id=device_id, person_id=person_id, token=token)


def is_last_admin_device(db: sqlite_utils.Database, device_id: str) -> bool:
    """Whether ``device_id`` is the only active device left to any person with the admin role:
    revoking it leaves nobody who can enrol devices or administer through the API (the rule
    that also guards the admin role itself: ``org.leaves_no_admin_device``)."""
    return leaves_no_admin_device(db, device_id=device_id)


def revoke(
    db: sqlite_utils.Database,
    device_id: str,
    actor: Actor,
    reason: str = "",
    *,
    drain: bool = False,
    allow_last_admin: bool = False,
) -> Device:
    """Revoke a device at once, or with ``drain`` let it push what it holds once first.

    Revoking a revoked device changes nothing; revoking a draining one without ``drain`` cuts
    the drain short. The last active admin device is refused (``409 last_admin_device``) unless
    ``allow_last_admin`` (the CLI: the operator on the server, on purpose)."""
    checked(reason, Reason, "reason")
    row = db.execute(
        "SELECT revoked_at, draining_since FROM devices WHERE id = ?", [device_id]
    ).fetchone()
    if row is None:
        raise NotFound(f"no device {device_id}")
    revoked_at, draining_since = row
    if (
        revoked_at is None
        and draining_since is None
        and not allow_last_admin
        and is_last_admin_device(db, device_id)
    ):
        raise Conflict(
            f"device {device_id} is the last active device of an admin: revoking it would lock "
            "every admin out of the API; enrol another admin device first, or revoke it with "
            "'gridsync device revoke' on the server",
            code="last_admin_device",
        )
    if revoked_at is None:
        if not drain:
            db.execute("UPDATE devices SET revoked_at = ? WHERE id = ?", [now_iso(), device_id])
        elif draining_since is None:
            db.execute("UPDATE devices SET draining_since = ? WHERE id = ?", [now_iso(), device_id])
    audit.record(
        db,
        actor,
        "device.drain" if drain else "device.revoke",
        target=device_id,
        detail={"reason": reason},
    )
    return get_device(db, device_id)


def finish_drain(
    db: sqlite_utils.Database, actor: Actor, revoked_at: str, detail: dict[str, Any]
) -> None:
    """The drain push of a draining device was applied: revoke it in the same transaction, so
    that exactly one push gets through and every later request is told to wipe."""
    db.execute(
        "UPDATE devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        [revoked_at, actor.device_id],
    )
    audit.record(db, actor, "device.drained", target=actor.device_id, detail=detail)


_DEVICE_COLS = "id, person_id, label, created_at, revoked_at, last_seen_at, draining_since"


def _device(row: tuple) -> Device:
    return Device(
        id=row[0],
        person_id=row[1],
        label=row[2],
        created_at=row[3],
        revoked_at=row[4],
        last_seen_at=row[5],
        draining_since=row[6],
    )


def get_device(db: sqlite_utils.Database, device_id: str) -> Device:
    row = db.execute(f"SELECT {_DEVICE_COLS} FROM devices WHERE id = ?", [device_id]).fetchone()
    if row is None:
        raise NotFound(f"no device {device_id}")
    return _device(row)


def list_devices(
    db: sqlite_utils.Database, *, person_id: str | None = None, limit: int = 1000, offset: int = 0
) -> tuple[list[Device], int]:
    where, params = ("WHERE person_id = ?", [person_id]) if person_id else ("", [])
    rows, total = paged(
        db,
        _DEVICE_COLS,
        f"devices {where}",
        params,
        order_by="created_at, id",
        limit=limit,
        offset=offset,
    )
    return [_device(r) for r in rows], total


class ScopeCache:
    """Resolved scopes keyed by everything :func:`resolve_scope` reads: the person, their roles,
    scope version and assigned units, and the org tree's highest seq (every org unit write takes
    a new seq). A hit can only return what resolving again would; one cache per database.

    The device and person rows are still read on every request, so a revoked device or an
    inactive person is refused at once; only the recursive walk of the org tree is skipped."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._scopes: dict[tuple, Scope] = {}
        self._lock = threading.Lock()

    def get(self, db: sqlite_utils.Database, person_id: str, key: tuple) -> Scope:
        scope = self._scopes.get(key)
        if scope is None:
            scope = resolve_scope(db, person_id)
            with self._lock:
                if len(self._scopes) >= self.size:
                    self._scopes.clear()
                self._scopes[key] = scope
        return scope


def authenticate(
    db: sqlite_utils.Database, token: str | None, scopes: ScopeCache | None = None
) -> Principal:
    """The principal a bearer token stands for; raises Unauthorized or DeviceRevoked."""
    if not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    row = db.execute(
        "SELECT d.id, d.person_id, d.revoked_at, p.roles, p.active, p.scope_version, "
        "(SELECT group_concat(unit_id, ' ') FROM person_scope s WHERE s.person_id = p.id), "
        "(SELECT max(seq) FROM org_units), d.draining_since FROM devices d "
        "JOIN people p ON p.id = d.person_id WHERE d.token_hash = ?",
        [hash_token(token)],
    ).fetchone()
    if row is None:
        raise Unauthorized("unknown token", code="invalid_token")
    if row[2] is not None:
        raise DeviceRevoked()
    if not row[4] and row[8] is None:
        # a person made inactive with --drain (gridsync/lifecycle.py): their draining phones
        # still push their unsent work once; every other device of theirs is refused
        raise Unauthorized("this person is no longer active", code="person_inactive")
    roles = frozenset(msgspec.json.decode(row[3]))
    scope = (
        scopes.get(db, row[1], (row[1], row[3], row[5], row[6], row[7]))
        if scopes
        else resolve_scope(db, row[1])
    )
    return Principal(
        person_id=row[1],
        device_id=row[0],
        roles=roles,
        scope=scope,
        draining=row[8] is not None,
    )


def acting_for(db: sqlite_utils.Database, person_id: str) -> Principal:
    """The CLI operator acting on a person's behalf (``gridsync cases raise --by``): that
    person's roles and scope, on the device ``cli``; an unknown or inactive person is refused,
    as their token would be."""
    row = db.execute("SELECT roles, active FROM people WHERE id = ?", [person_id]).fetchone()
    if row is None:
        raise NotFound(f"no person {person_id}", field="by")
    if not row[1]:
        raise Unauthorized(f"{person_id} is no longer active", code="person_inactive")
    return Principal(
        person_id=person_id,
        device_id="cli",
        roles=frozenset(msgspec.json.decode(row[0])),
        scope=resolve_scope(db, person_id),
    )

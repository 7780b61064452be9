"""The audit log: every write and every bulk read or export, with person, device and time.

Written in the same transaction as the change it records, so a change and its record are never
separated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.models import AuditEntry, AuditPage


@dataclass(frozen=True)
class Actor:
    """Who does something: a person through a device, or an operator at the CLI."""

    person_id: str | None
    device_id: str | None

    @classmethod
    def cli(cls) -> Actor:
        return cls(person_id=None, device_id="cli")


def record(
    db: sqlite_utils.Database,
    actor: Actor,
    action: str,
    target: str | None = None,
    detail: dict[str, Any] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> None:
    db.execute(
        "INSERT INTO audit_log (at, person_id, device_id, action, target, detail) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            iso_ms(clock.now_ms()),
            actor.person_id,
            actor.device_id,
            action,
            target,
            msgspec.json.encode(detail or {}).decode(),
        ],
    )


def entries(
    db: sqlite_utils.Database, *, action: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    where, params = ("WHERE action = ?", [action]) if action else ("", [])
    rows = db.execute(
        f"SELECT id, at, person_id, device_id, action, target, detail FROM audit_log {where} "
        "ORDER BY id DESC LIMIT ?",
        [*params, limit],
    ).fetchall()
    keys = ("id", "at", "person_id", "device_id", "action", "target", "detail")
    out = [dict(zip(keys, row)) for row in rows]
    for entry in out:
        entry["detail"] = msgspec.json.decode(entry["detail"])
    return out


MAX_AUDIT_PAGE = 10_000  # the CLI's and export's page; the API's is 500 (api/params.py)


def audit_filter(
    *,
    person_id: str | None = None,
    action: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> tuple[str, list[Any]]:
    """The ``WHERE`` of an audit query. ``action`` matches itself and the actions below it
    (``export`` matches ``export.coverage`` and ``export.visits``); ``since`` and ``until``
    are ISO times as :func:`record` writes them (UTC, milliseconds), so they compare as text."""
    where: list[str] = ["1"]
    params: list[Any] = []
    if person_id is not None:
        where.append("person_id = ?")
        params.append(person_id)
    if action is not None:
        where.append("(action = ? OR substr(action, 1, ?) = ?)")
        params += [action, len(action) + 1, action + "."]
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    return " AND ".join(where), params


def list_entries(
    db: sqlite_utils.Database,
    *,
    person_id: str | None = None,
    action: str | None = None,
    since_ms: int | None = None,
    until_ms: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> AuditPage:
    """The audit log, newest first, a page at a time (``gridsync audit``, ``GET
    /api/v1/audit``, the audit export)."""
    where, params = audit_filter(
        person_id=person_id,
        action=action,
        since=None if since_ms is None else iso_ms(since_ms),
        until=None if until_ms is None else iso_ms(until_ms),
    )
    total = db.execute(f"SELECT count(*) FROM audit_log WHERE {where}", params).fetchone()[0]
    rows = db.execute(
        "SELECT id, at, person_id, device_id, action, target, detail FROM audit_log "
        f"WHERE {where} ORDER BY id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    items = [
        AuditEntry(
            id=r[0],
            at=r[1],
            person_id=r[2],
            device_id=r[3],
            action=r[4],
            target=r[5],
            detail=_detail.decode(r[6]),
        )
        for r in rows
    ]
    return AuditPage(items=items, total=total, limit=limit, offset=offset)


_detail = msgspec.json.Decoder(dict[str, Any])

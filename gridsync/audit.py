"""The audit log: every write and every bulk read or export, with person, device and time.

Written in the same transaction as the change it records, so a change and its record are never
separated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms


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

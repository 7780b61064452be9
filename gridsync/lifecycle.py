"""A person leaves (issue 18): moved away (迁出), died (去世), transferred out (转出), other (其他).

:func:`deactivate` is the one way a person becomes inactive (``gridsync people deactivate``,
``POST /api/v1/people/{id}/deactivate``). In one transaction it

- marks them inactive with the reason and the time (``people.active``, ``inactive_reason``,
  ``inactive_since``; a new seq so phones in scope receive the change);
- unassigns every household they were responsible for through the assignment function
  (:func:`gridsync.coverage.unassign_member`), so the assignment log and the audit log record
  each, and the households appear in rebalancing suggestions at once;
- revokes their devices (:func:`gridsync.auth.revoke`), or with ``drain`` lets each push its
  unsent work once first (the existing drain: a draining phone of an inactive person still
  authenticates for that one push).

Nothing is deleted: their visits, cases and assignment history stay and still count where they
counted. From then on coverage does not count them as a member
(:func:`gridsync.coverage.members.member_sql`), notifications skip them
(``gridsync/notify/routing.py``) and every token or console session of theirs is refused.

:func:`reactivate` undoes only the flag (a person marked by mistake); their households stay
with whoever took them.
"""

from __future__ import annotations

import sqlite_utils

from gridsync import audit, auth, coverage
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import next_seq
from gridsync.errors import Conflict, Invalid, NotFound
from gridsync.models import INACTIVE_REASONS, Deactivation, InactiveReason, Person
from gridsync.org import get_person, leaves_no_admin_device

# The reasons as a secretary says them (the CLI accepts both; exports and reports show these).
REASON_LABELS: dict[InactiveReason, str] = {
    "moved_away": "迁出",
    "deceased": "去世",
    "transferred": "转出",
    "other": "其他",
}


def reason_key(reason: str | None) -> InactiveReason:
    """``moved_away`` or ``迁出`` -> ``moved_away``; anything else is ``400 validation_error``."""
    for key in INACTIVE_REASONS:
        if reason in (key, REASON_LABELS[key]):
            return key
    raise Invalid(
        f"reason must be one of {', '.join(INACTIVE_REASONS)} (迁出, 去世, 转出, 其他)",
        field="reason",
    )


def deactivate(
    db: sqlite_utils.Database,
    settings: Settings,
    person_id: str,
    reason: str,
    actor: Actor,
    *,
    drain: bool = False,
    allow_last_admin: bool = False,
    clock: Clock = SYSTEM_CLOCK,
) -> Deactivation:
    """Make ``person_id`` inactive for ``reason`` (see the module). Deactivating an inactive
    person changes nothing (``status`` ``unchanged``). The last admin holding an active device
    is refused (``409 last_admin_device``) unless ``allow_last_admin`` (the CLI)."""
    key = reason_key(reason)
    row = db.execute(
        "SELECT active, inactive_reason FROM people WHERE id = ?", [person_id]
    ).fetchone()
    if row is None:
        raise NotFound(f"no person {person_id}")
    if not row[0]:
        return Deactivation(
            person_id=person_id,
            status="unchanged",
            reason=reason_key(row[1]) if row[1] else key,
            unassigned=[],
            devices=[],
            drain=drain,
        )
    if not allow_last_admin and leaves_no_admin_device(db, person_id=person_id):
        raise Conflict(
            f"{person_id} is the last admin with an active device: deactivating them would lock "
            "every admin out of the API; enrol a device for another admin first (or deactivate "
            "them with 'gridsync people deactivate' on the server)",
            code="last_admin_device",
        )
    now = iso_ms(clock.now_ms())
    db.execute(
        "UPDATE people SET active = 0, inactive_reason = ?, inactive_since = ?, seq = ?, "
        "scope_version = scope_version + 1 WHERE id = ?",
        [key, now, next_seq(db), person_id],
    )
    label = f"{REASON_LABELS[key]}：{person_id} 已停用"
    unassigned = coverage.unassign_member(db, settings, actor, person_id, label, clock=clock)
    devices = [
        r[0]
        for r in db.execute(
            "SELECT id FROM devices WHERE person_id = ? AND revoked_at IS NULL ORDER BY id",
            [person_id],
        )
    ]
    for device_id in devices:
        auth.revoke(db, device_id, actor, label, drain=drain, allow_last_admin=True)
    audit.record(
        db,
        actor,
        "people.deactivate",
        target=person_id,
        detail={
            "reason": key,
            "drain": drain,
            "unassigned": len(unassigned),
            "devices": devices,
        },
        clock=clock,
    )
    return Deactivation(
        person_id=person_id,
        status="deactivated",
        reason=key,
        unassigned=unassigned,
        devices=devices,
        drain=drain,
    )


def reactivate(
    db: sqlite_utils.Database, person_id: str, actor: Actor, *, clock: Clock = SYSTEM_CLOCK
) -> Person:
    """Mark a person active again (one marked by mistake). Their households are not given
    back (assign them again) nor their devices (enrol a new one)."""
    get_person(db, person_id)
    db.execute(
        "UPDATE people SET active = 1, inactive_reason = NULL, inactive_since = NULL, seq = ?, "
        "scope_version = scope_version + 1 WHERE id = ? AND active = 0",
        [next_seq(db), person_id],
    )
    audit.record(db, actor, "people.reactivate", target=person_id, clock=clock)
    return get_person(db, person_id)

"""Reminders and digests: the daily visit digest per member, the daily digest of values lost in
merges to community secretaries, and the weekly coverage digest to branch and community
secretaries.

Each runs once per local day (week): a ``notify_runs`` row records that it ran, written in the
same transaction as the digests it queued. Digests are held during quiet hours (they are not
generated then, and a row whose delivery falls into quiet hours waits until they end: see the
dispatcher); whistle alerts ignore quiet hours.

The coverage numbers here are the digest's own small computation over ``households``
(``last_visit_ms``, ``tags``, ``responsible_member_id``) under each community's policy (the
district default with the community's override); the full coverage report lives in the
coverage area.

A digest composes domain figures (coverage policies, households due) into messages, so it
belongs to the domain, beside coverage and whistle, and hands its messages to ``notify/``
(outbox, routing), which only delivers: notify imports nothing above it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote

import msgspec
import sqlite_utils

from gridsync import coverage
from gridsync.clock import DAY_MS
from gridsync.config import Settings
from gridsync.models import Policy
from gridsync.notify import outbox
from gridsync.notify.routing import Router

DUE_SOON_DAYS = 3
MAX_LINES = 20
# The links of the digests' notices (relative paths of the console's lists): a member's
# households, the console's first page (the unit's figures).
DAILY_LINK = "/console/households"
WEEKLY_LINK = "/console"
_tags = msgspec.json.Decoder(list[str])
_any = msgspec.json.Decoder()  # the conflict log's values are JSON


@dataclass
class DueHousehold:
    id: str
    address: str
    head_name: str
    priority: bool
    due_ms: int | None
    last_visit_ms: int | None


def _local_now(now_ms: int, settings: Settings) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=outbox.zone(settings.notify.timezone))


def _claim_run(db: sqlite_utils.Database, key: str, now_ms: int) -> bool:
    cursor = db.execute(
        "INSERT INTO notify_runs (key, at_ms) VALUES (?, ?) ON CONFLICT(key) DO NOTHING",
        [key, now_ms],
    )
    return cursor.rowcount == 1


Policies = tuple[Policy, dict[str, Policy]]  # coverage.community_policies


def member_due(
    db: sqlite_utils.Database,
    member_id: str,
    now_ms: int,
    settings: Settings,
    policies: Policies | None = None,
) -> tuple[list[DueHousehold], list[DueHousehold], Policy]:
    """(overdue, due soon) households of a member, priority households first, and the policy
    the member works under (the community of their first household's grid). Each household is
    due by its own community's cycles."""
    default, by_community = policies or coverage.community_policies(db, settings)
    overdue, due = [], []
    rows = db.execute(
        "SELECT h.id, h.building, h.unit, h.room, h.head_name, h.tags, h.last_visit_ms, "
        "g.parent_id FROM households h LEFT JOIN org_units g ON g.id = h.grid_id "
        "WHERE h.responsible_member_id = ? AND h.status = 'active' ORDER BY h.id",
        [member_id],
    ).fetchall()
    for hid, building, unit, room, head, tags, last, community in rows:
        policy = by_community.get(community, default)
        priority = not set(policy.priority_tags).isdisjoint(_tags.decode(tags))
        cycle = policy.priority_cycle_days if priority else policy.cycle_days
        due_ms = last + cycle * DAY_MS if last is not None else None
        item = DueHousehold(
            hid, f"{building}{unit}{room}".strip() or hid, head, priority, due_ms, last
        )
        if due_ms is None or due_ms <= now_ms:
            overdue.append(item)
        elif due_ms <= now_ms + DUE_SOON_DAYS * DAY_MS:
            due.append(item)

    def order(h: DueHousehold) -> tuple:
        return (not h.priority, h.due_ms if h.due_ms is not None else -1, h.id)

    first = by_community.get(rows[0][7], default) if rows else default
    return sorted(overdue, key=order), sorted(due, key=order), first


def daily_due(db: sqlite_utils.Database, *, now_ms: int, settings: Settings) -> str | None:
    """The run key of today's daily digest when it is due and not yet done, else None."""
    n = settings.notify
    local_now = _local_now(now_ms, settings)
    if local_now.hour < n.daily_digest_hour or outbox.in_quiet_hours(
        now_ms, n.quiet_hours, n.timezone
    ):
        return None
    key = f"digest:daily:{local_now.date().isoformat()}"
    done = db.execute("SELECT 1 FROM notify_runs WHERE key = ?", [key]).fetchone()
    return None if done else key


def daily_chunk(
    db: sqlite_utils.Database,
    key: str,
    *,
    now_ms: int,
    settings: Settings,
    router: Router,
    after: str = "",
    limit: int = 1000,
) -> tuple[int, str | None]:
    """Queue the digests of up to ``limit`` members after member id ``after``; returns (queued,
    the last member id, or None when every member has been seen). A chunk re-run after a crash
    queues nothing twice: each member's digest has its own dedup key."""
    n = settings.notify
    tz = n.timezone
    members = db.execute(
        "SELECT p.id, p.name FROM people p WHERE p.active = 1 AND p.id > ? AND EXISTS "
        "(SELECT 1 FROM households h WHERE h.responsible_member_id = p.id "
        "AND h.status = 'active') ORDER BY p.id LIMIT ?",
        [after, limit],
    ).fetchall()
    queued = 0
    policies = coverage.community_policies(db, settings)
    for member_id, name in members:
        overdue, due, policy = member_due(db, member_id, now_ms, settings, policies)
        if not overdue and not due:
            continue

        def lines(items: list[DueHousehold]) -> list[dict[str, Any]]:
            return [
                {
                    "address": h.address,
                    "head_name": h.head_name,
                    "priority": h.priority,
                    "last_visit": outbox.local(h.last_visit_ms, tz, "%m-%d"),
                    "due_on": outbox.local(h.due_ms, tz, "%m-%d"),
                }
                for h in items[:MAX_LINES]
            ]

        context = {
            "name": name,
            "overdue": lines(overdue),
            "due": lines(due),
            "cycle_days": policy.cycle_days,
            "priority_cycle_days": policy.priority_cycle_days,
        }
        queued += outbox.enqueue(
            db,
            router,
            event_key=f"{key}:{member_id}",
            kind="digest_daily",
            tags=[f"member:{member_id}"],
            context=context,
            now_ms=now_ms,
            not_before_ms=outbox.end_of_quiet_hours(now_ms, n.quiet_hours, tz),
            link=DAILY_LINK,
        )
    if len(members) < limit:
        return queued, None
    return queued, members[-1][0]


def finish_run(db: sqlite_utils.Database, key: str, now_ms: int) -> None:
    _claim_run(db, key, now_ms)


def daily_digests(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router
) -> int:
    """Queue today's visit digest for every member with households overdue or due soon, once
    per local day, in one transaction (the sweep runs it in chunks: :func:`run_daily`)."""
    key = daily_due(db, now_ms=now_ms, settings=settings)
    if key is None:
        return 0
    queued = 0
    after: str | None = ""  # the last member id done; None once every member is
    while after is not None:
        n, after = daily_chunk(
            db, key, now_ms=now_ms, settings=settings, router=router, after=after
        )
        queued += n
    finish_run(db, key, now_ms)
    return queued


def run_daily(
    store: Any, *, now_ms: int, settings: Settings, router: Router, chunk: int = 1000
) -> int:
    """:func:`daily_digests` as one short write transaction per ``chunk`` members, so that a
    district's 08:00 digest run never holds the writer (and the phones' pushes) for seconds."""
    key = store.read(lambda db: daily_due(db, now_ms=now_ms, settings=settings))
    if key is None:
        return 0
    queued, after = 0, ""
    while after is not None:
        n, after = store.write(
            lambda db, a=after: daily_chunk(
                db, key, now_ms=now_ms, settings=settings, router=router, after=a, limit=chunk
            )
        )
        queued += n
    store.write(finish_run, key, now_ms)
    return queued


def unit_coverage(
    db: sqlite_utils.Database,
    grid_ids: list[str],
    member_ids: list[str],
    now_ms: int,
    policy: Policy,
) -> dict[str, Any]:
    """The weekly digest's numbers for the households of some grids and some members, under
    their community's policy."""
    grids = msgspec.json.encode(grid_ids).decode()
    prio = msgspec.json.encode(list(policy.priority_tags)).decode()
    row = db.execute(
        """
        SELECT count(*),
          sum(responsible_member_id IS NOT NULL),
          sum(last_visit_ms >= ? - (CASE WHEN is_prio THEN ? ELSE ? END) * 86400000),
          sum(coalesce(last_visit_ms, 0) < ? - (CASE WHEN is_prio THEN ? ELSE ? END) * 86400000),
          sum(is_prio AND coalesce(last_visit_ms, 0) < ? - ? * 86400000)
        FROM (SELECT h.*, EXISTS (SELECT 1 FROM json_each(h.tags) t
                                  WHERE t.value IN (SELECT value FROM json_each(?))) AS is_prio
              FROM households h
              WHERE h.status = 'active' AND h.grid_id IN (SELECT value FROM json_each(?)))
        """,
        [
            now_ms,
            policy.priority_cycle_days,
            policy.cycle_days,
            now_ms,
            policy.priority_cycle_days,
            policy.cycle_days,
            now_ms,
            policy.priority_cycle_days,
            prio,
            grids,
        ],
    ).fetchone()
    households, assigned, contacted, overdue, prio_overdue = (int(x or 0) for x in row)
    loads = [
        db.execute(
            "SELECT count(*) FROM households WHERE responsible_member_id = ? AND status = 'active'",
            [m],
        ).fetchone()[0]
        for m in member_ids
    ]
    return {
        "households": households,
        "assigned": assigned,
        "unassigned": households - assigned,
        "contacted": contacted,
        "contacted_pct": round(100 * contacted / households) if households else 0,
        "overdue": overdue,
        "priority_overdue": prio_overdue,
        "under_min": sum(1 for x in loads if x < policy.min_households_per_member),
        "over_cap": sum(1 for x in loads if x > policy.max_households_per_member),
        "min_households": policy.min_households_per_member,
        "max_households": policy.max_households_per_member,
    }


def weekly_digests(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router
) -> int:
    """Queue this week's coverage digest to branch and community secretaries; once per week,
    from the configured weekday on."""
    n = settings.notify
    local_now = _local_now(now_ms, settings)
    if (
        local_now.weekday() < n.weekly_digest_weekday
        or local_now.hour < n.daily_digest_hour
        or outbox.in_quiet_hours(now_ms, n.quiet_hours, n.timezone)
    ):
        return 0
    year, week, _ = local_now.isocalendar()
    week_label = f"{year}-W{week:02d}"
    if not _claim_run(db, f"digest:weekly:{week_label}", now_ms):
        return 0
    queued = 0
    units = db.execute(
        "SELECT id, kind, name, grid_id, parent_id FROM org_units "
        "WHERE kind IN ('branch', 'community') ORDER BY id"
    ).fetchall()
    default, by_community = coverage.community_policies(db, settings)
    for unit_id, kind, name, branch_grid, parent in units:
        policy = by_community.get(unit_id if kind == "community" else parent, default)
        if kind == "branch":
            grid_ids = [branch_grid] if branch_grid else []
            branches = [unit_id]
            tag = f"branch:{unit_id}:secretary"
        else:
            grid_ids = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM org_units WHERE kind = 'grid' AND parent_id = ?", [unit_id]
                )
            ]
            branches = [
                r[0]
                for r in db.execute(
                    "SELECT id FROM org_units WHERE kind = 'branch' AND parent_id = ?", [unit_id]
                )
            ]
            tag = f"community:{unit_id}:secretary"
        members = [
            r[0]
            for r in db.execute(
                "SELECT id FROM people WHERE active = 1 AND branch_id IN "
                "(SELECT value FROM json_each(?)) AND EXISTS (SELECT 1 FROM json_each(roles) "
                "WHERE value = 'member')",
                [msgspec.json.encode(branches).decode()],
            )
        ]
        if not grid_ids and not members:
            continue
        context = {
            "unit_name": name,
            "week": week_label,
            **unit_coverage(db, grid_ids, members, now_ms, policy),
        }
        queued += outbox.enqueue(
            db,
            router,
            event_key=f"digest:weekly:{week_label}:{unit_id}",
            kind="digest_weekly",
            tags=[tag],
            context=context,
            now_ms=now_ms,
            link=WEEKLY_LINK,
        )
    return queued


# -- values lost in merges (issue 17) -------------------------------------------------------------

CONFLICT_RUNS = ("digest:conflicts:", "digest:conflicts;")  # the key range of the daily runs
MAX_VALUE_CHARS = 60


def _shown_value(value: Any, field: str, labels: dict[str, Any]) -> str:
    """A lost or winning value as a notification shows it: never a phone number (notification
    texts carry none, gridsync/privacy.py), a tag as set or not, other values on one line."""
    text = labels["conflict"]
    if field == "phone":
        return text["phone_hidden"]
    if field.startswith("tags:"):
        return text["tag_on"] if value else text["tag_off"]
    if value is None or value == "":
        return text["empty"]
    shown = " ".join(str(value).split())
    return shown if len(shown) <= MAX_VALUE_CHARS else shown[: MAX_VALUE_CHARS - 1] + "…"


def _field_name(field: str, labels: dict[str, Any]) -> str:
    names = labels["conflict"]["field"]
    if field.startswith("tags:"):
        return f"{names['tag']} {field[5:]}"
    return names.get(field, field)


def _conflict_context(
    unit_name: str, lost: list[tuple], open_total: int, names: dict[str, str], locale: str
) -> dict[str, Any]:
    """The template context of one community's digest of lost values, in ``locale``."""
    labels = outbox.labels(locale)
    lines = [
        {
            "address": address.strip() or household_id,
            "head_name": head,
            "field": _field_name(field, labels),
            "value": _shown_value(_any.decode(value), field, labels),
            "winner": _shown_value(_any.decode(winner), field, labels),
            "by": names.get(by, ""),
        }
        for _, field, value, winner, by, address, head, household_id in lost[:MAX_LINES]
    ]
    return {
        "unit_name": unit_name,
        "new": len(lost),
        "lines": lines,
        "more": max(0, len(lost) - MAX_LINES),
        "open": open_total,
    }


def conflict_digests(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router
) -> int:
    """Queue, once per local day from the daily digest's hour, each community secretary's
    digest of the values lost in merges since the last one (the conflict log's entries still
    open, SPEC 3.1), which also lands in their inbox; returns the messages queued. A community
    with nothing lost gets nothing. The window starts where the previous run ended (its
    ``notify_runs`` mark), so a day the sweep did not run loses nothing; the first run takes
    every open conflict."""
    n = settings.notify
    local_now = _local_now(now_ms, settings)
    if local_now.hour < n.daily_digest_hour or outbox.in_quiet_hours(
        now_ms, n.quiet_hours, n.timezone
    ):
        return 0
    since = db.execute(
        "SELECT coalesce(max(at_ms), 0) FROM notify_runs WHERE key >= ? AND key < ?",
        list(CONFLICT_RUNS),
    ).fetchone()[0]
    day = local_now.date().isoformat()
    if not _claim_run(db, f"{CONFLICT_RUNS[0]}{day}", now_ms):
        return 0
    rows = db.execute(
        """
        SELECT g.parent_id, c.field, c.value, c.winner, c.lost_person_id,
               coalesce(h.building, '') || coalesce(h.unit, '') || coalesce(h.room, ''),
               coalesce(h.head_name, ''), c.household_id
        FROM sync_conflicts c
        JOIN org_units g ON g.id = c.grid_id
        LEFT JOIN households h ON h.id = c.household_id
        WHERE c.status = 'open' AND c.created_ms > ? AND c.created_ms <= ?
              AND g.parent_id IS NOT NULL
        ORDER BY g.parent_id, c.id
        """,
        [since, now_ms],
    ).fetchall()
    by_community: dict[str, list[tuple]] = {}
    for row in rows:
        by_community.setdefault(row[0], []).append(row)
    queued = 0
    for community_id, lost in by_community.items():
        unit = db.execute("SELECT name FROM org_units WHERE id = ?", [community_id]).fetchone()
        open_total = db.execute(
            "SELECT count(*) FROM sync_conflicts WHERE status = 'open' AND grid_id IN "
            "(SELECT id FROM org_units WHERE kind = 'grid' AND parent_id = ?)",
            [community_id],
        ).fetchone()[0]
        names = {
            r[0]: r[1]
            for r in db.execute(
                "SELECT id, name FROM people WHERE id IN (SELECT value FROM json_each(?))",
                [msgspec.json.encode(sorted({r[4] for r in lost if r[4]})).decode()],
            )
        }
        context = functools.partial(
            _conflict_context, unit[0] if unit else community_id, lost, open_total, names
        )
        queued += outbox.enqueue(
            db,
            router,
            event_key=f"{CONFLICT_RUNS[0]}{day}:{community_id}",
            kind="digest_conflicts",
            tags=[f"community:{community_id}:secretary"],
            context=context,
            now_ms=now_ms,
            not_before_ms=outbox.end_of_quiet_hours(now_ms, n.quiet_hours, n.timezone),
            link=f"/console/conflicts?community={quote(community_id, safe='')}",
        )
    return queued

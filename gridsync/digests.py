"""Reminders and digests: the daily visit digest per member and the weekly coverage digest to
branch and community secretaries.

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

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
_tags = msgspec.json.Decoder(list[str])


@dataclass
class DueHousehold:
    id: str
    address: str
    head_name: str
    priority: bool
    due_ms: int | None
    last_visit_ms: int | None


def _local_now(now_ms: int, settings: Settings) -> datetime:
    return datetime.fromtimestamp(now_ms / 1000, tz=outbox.zone(settings.timezone))


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
        now_ms, n.quiet_hours, settings.timezone
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
    tz = settings.timezone
    members = db.execute(
        f"SELECT p.id, p.name FROM people p WHERE {_DAILY_MEMBERS} AND p.id > ? "
        "ORDER BY p.id LIMIT ?",
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
        )
    if len(members) < limit:
        return queued, None
    return queued, members[-1][0]


# Who a digest run goes through (``p`` is the table's alias), in id order: the daily digest's
# members (those responsible for an active household), the weekly digest's units.
_DAILY_MEMBERS = (
    "p.active = 1 AND EXISTS (SELECT 1 FROM households h WHERE h.responsible_member_id = p.id "
    "AND h.status = 'active')"
)
_WEEKLY_UNITS = "p.kind IN ('branch', 'community')"


def _step(steps: Steps | None, label: str, store: Any, where: str) -> Callable[[int], None]:
    """The progress bar's advance for a digest run (counting what it will go through first),
    or a no-op."""
    if steps is None:
        return lambda _n: None
    table = "people" if where is _DAILY_MEMBERS else "org_units"
    total = store.read(
        lambda db: db.execute(f"SELECT count(*) FROM {table} p WHERE {where}").fetchone()[0]
    )
    return steps(label, total)


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


# Between two chunks the digest runs step aside this long, so that the phones' writes queued
# meanwhile commit on their own (not in one group with the next chunk) and the event loop gets
# the interpreter: the daily pass never holds the writer for more than one short transaction.
CHUNK_PAUSE_SECONDS = 0.005
# (label, total) -> advance(n): a progress bar for one step of a long run (``gridsync sweep``
# on a terminal); advanced by the members or units each chunk went through.
Steps = Callable[[str, int], Callable[[int], None]]


def _in_chunks(
    store: Any,
    chunk: Callable[[sqlite_utils.Database, str], tuple[int, str | None]],
    key: str,
    now_ms: int,
    pause: float,
    advance: Callable[[int], None],
    size: int,
) -> int:
    """Run ``chunk`` (queued, last id or None) as one write each until every id is seen, then
    record the run done (``finish_run``). The pause lets the phones' writes in between."""
    queued, after = 0, ""
    while after is not None:
        n, last = store.write(chunk, after)
        advance(size)
        queued += n
        after = last
        if after is not None and pause:
            time.sleep(pause)
    store.write(finish_run, key, now_ms)
    return queued


def run_daily(
    store: Any,
    *,
    now_ms: int,
    settings: Settings,
    router: Router,
    chunk: int = 100,
    pause: float = CHUNK_PAUSE_SECONDS,
    steps: Steps | None = None,
) -> int:
    """:func:`daily_digests` as one short write transaction per ``chunk`` members, so that a
    district's 08:00 digest run never holds the writer (and the phones' pushes) for seconds."""
    key = store.read(lambda db: daily_due(db, now_ms=now_ms, settings=settings))
    if key is None:
        return 0
    advance = _step(steps, "daily digests", store, _DAILY_MEMBERS)
    return _in_chunks(
        store,
        lambda db, a: daily_chunk(
            db, key, now_ms=now_ms, settings=settings, router=router, after=a, limit=chunk
        ),
        key,
        now_ms,
        pause,
        advance,
        chunk,
    )


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
    counted = dict(
        db.execute(
            "SELECT responsible_member_id, count(*) FROM households WHERE status = 'active' "
            "AND responsible_member_id IN (SELECT value FROM json_each(?)) GROUP BY 1",
            [msgspec.json.encode(member_ids).decode()],
        ).fetchall()
    )
    loads = [counted.get(m, 0) for m in member_ids]
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


def weekly_due(db: sqlite_utils.Database, *, now_ms: int, settings: Settings) -> str | None:
    """The run key of this week's coverage digest when it is due and not yet done, else None:
    from the configured weekday and the daily digest hour on, outside quiet hours."""
    n = settings.notify
    local_now = _local_now(now_ms, settings)
    if (
        local_now.weekday() < n.weekly_digest_weekday
        or local_now.hour < n.daily_digest_hour
        or outbox.in_quiet_hours(now_ms, n.quiet_hours, settings.timezone)
    ):
        return None
    year, week, _ = local_now.isocalendar()
    key = f"digest:weekly:{year}-W{week:02d}"
    done = db.execute("SELECT 1 FROM notify_runs WHERE key = ?", [key]).fetchone()
    return None if done else key


def weekly_chunk(
    db: sqlite_utils.Database,
    key: str,
    *,
    now_ms: int,
    settings: Settings,
    router: Router,
    after: str = "",
    limit: int = 50,
) -> tuple[int, str | None]:
    """Queue the weekly digests of up to ``limit`` branches and communities after unit id
    ``after``; returns (queued, the last unit id, or None when every unit has been seen). A
    chunk re-run after a crash queues nothing twice (a dedup key per unit and week)."""
    week_label = key.removeprefix("digest:weekly:")
    queued = 0
    units = db.execute(
        f"SELECT id, kind, name, grid_id, parent_id FROM org_units p WHERE {_WEEKLY_UNITS} "
        "AND id > ? ORDER BY id LIMIT ?",
        [after, limit],
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
            event_key=f"{key}:{unit_id}",
            kind="digest_weekly",
            tags=[tag],
            context=context,
            now_ms=now_ms,
        )
    if len(units) < limit:
        return queued, None
    return queued, units[-1][0]


def weekly_digests(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router
) -> int:
    """Queue this week's coverage digest to branch and community secretaries, once per week,
    in one transaction (the sweep runs it in chunks: :func:`run_weekly`)."""
    key = weekly_due(db, now_ms=now_ms, settings=settings)
    if key is None:
        return 0
    queued = 0
    after: str | None = ""
    while after is not None:
        n, after = weekly_chunk(
            db, key, now_ms=now_ms, settings=settings, router=router, after=after
        )
        queued += n
    finish_run(db, key, now_ms)
    return queued


def run_weekly(
    store: Any,
    *,
    now_ms: int,
    settings: Settings,
    router: Router,
    chunk: int = 20,
    pause: float = CHUNK_PAUSE_SECONDS,
    steps: Steps | None = None,
) -> int:
    """:func:`weekly_digests` as one short write transaction per ``chunk`` units (a district
    has 1,077 branches and communities: one transaction held the writer for 17-27 s, most of
    it resolving each unit's secretaries, see ``routing.people_for_tag``)."""
    key = store.read(lambda db: weekly_due(db, now_ms=now_ms, settings=settings))
    if key is None:
        return 0
    advance = _step(steps, "weekly digests", store, _WEEKLY_UNITS)
    return _in_chunks(
        store,
        lambda db, a: weekly_chunk(
            db, key, now_ms=now_ms, settings=settings, router=router, after=a, limit=chunk
        ),
        key,
        now_ms,
        pause,
        advance,
        chunk,
    )

"""Reminders and digests: the daily visit digest per member, the daily digest of values lost in
merges to community secretaries, and the weekly coverage digest to branch and community
secretaries.

Each runs once per local day (week): a ``notify_runs`` row records that it ran, written in the
same transaction as the digests it queued. Digests are held during quiet hours (they are not
generated then, and a row whose delivery falls into quiet hours waits until they end: see the
dispatcher); whistle alerts ignore quiet hours.

Every coverage figure here comes from the coverage engine (``gridsync/coverage``), under each
community's own policy: the weekly digest states the roll-up's row of each branch and
community (:func:`coverage.rollup`, the same numbers ``gridsync coverage`` prints at the same
instant: ``tests/test_honest_figures.py``), and the daily digest judges each household by
:func:`coverage.member_contact` (the engine's rule of group visits included). Until issue
14 the digest had its own SQL, which judged priority households by the priority cycle and
counted unassigned households as overdue, so it disagreed with the roll-up (474 contacted / 41 overdue against 477 / 34 on
the demo community).

A digest composes domain figures (coverage policies, households due) into messages, so it
belongs to the domain, beside coverage and whistle, and hands its messages to ``notify/``
(outbox, routing), which only delivers: notify imports nothing above it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import sqlite_utils

from gridsync import coverage
from gridsync.clock import DAY_MS
from gridsync.config import Settings, deep_link
from gridsync.models import CoverageRow, Policy
from gridsync.notify import outbox
from gridsync.notify.routing import Router
from gridsync.org import Scope

DUE_SOON_DAYS = 3
MAX_LINES = 20
# The links of the digests' notices (relative paths of the console's lists): a member's
# households, the console's first page (the unit's figures).
DAILY_LINK = "/console/households"
WEEKLY_LINK = "/console"
CONFLICTS_LINK = "/console"  # 今日 lists the values lost in merges waiting for the secretary
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
    due by its own community's cycles, counted from the member's own last contact: 1-5-N asks
    the member to keep in touch, so a household that someone else visited is still due to
    them. Whether it is due is the coverage engine's rule (:func:`coverage.member_contact`): a
    group visit counts for a priority household only when the policy says so, as the roll-up
    counts it."""
    default, by_community = policies or coverage.community_policies(db, settings)
    overdue, due = [], []
    kept = ", ".join(f"h.{c}" for c in coverage.MEMBER_CONTACT_COLUMNS)
    rows = db.execute(
        f"SELECT h.id, h.building, h.unit, h.room, h.head_name, h.tags, {kept}, "
        "g.parent_id FROM households h LEFT JOIN org_units g ON g.id = h.grid_id "
        "WHERE h.responsible_member_id = ? AND h.status = 'active' ORDER BY h.id",
        [member_id],
    ).fetchall()
    for hid, building, unit, room, head, tags, last_own, last_own_single, community in rows:
        policy = by_community.get(community, default)
        priority, last, due_ms = coverage.member_contact(
            policy, _tags.decode(tags), (last_own, last_own_single)
        )
        item = DueHousehold(
            hid, f"{building}{unit}{room}".strip() or hid, head, priority, due_ms, last
        )
        if due_ms is None or due_ms < now_ms:
            overdue.append(item)
        elif due_ms <= now_ms + DUE_SOON_DAYS * DAY_MS:
            due.append(item)

    def order(h: DueHousehold) -> tuple:
        return (not h.priority, h.due_ms if h.due_ms is not None else -1, h.id)

    first = by_community.get(rows[0][8], default) if rows else default
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
            link=DAILY_LINK,
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


# the digest reads every branch and community: the district, as the system sees it
_EVERYTHING = Scope("digests", True, frozenset(), frozenset(), 0)


def _pct(rate: float | None) -> int:
    return round(100 * rate) if rate is not None else 0


def unit_coverage(row: CoverageRow, policy: Policy) -> dict[str, Any]:
    """The weekly digest's numbers for one branch or community: its roll-up row (households of
    its grids, its members), judged by its community's ``policy``."""
    return {
        "households": row.households,
        "assigned": row.assigned,
        "unassigned": row.unassigned,
        "contacted": row.contacted,
        "contacted_pct": _pct(row.contact_rate),
        "contacted_by_responsible": row.contacted_by_responsible,
        "compliance_pct": _pct(row.compliance_rate),
        "overdue": row.overdue,
        "priority_overdue": row.priority_overdue,
        "under_min": row.members_under_min,
        "over_cap": row.members_over_cap,
        "min_households": policy.min_households_per_member,
        "max_households": policy.max_households_per_member,
    }


def weekly_figures(
    db: sqlite_utils.Database, settings: Settings, now_ms: int
) -> dict[str, dict[str, Any]]:
    """Branch or community id -> its weekly digest's numbers (:func:`unit_coverage`), from one
    roll-up of the district at ``now_ms``; units without households or members are left out."""
    report = coverage.rollup(
        db, settings, _EVERYTHING, None, now_ms=now_ms, levels=["branch", "community"]
    )
    default, by_community = coverage.community_policies(db, settings)
    figures = {}
    for row in report.rows:
        # a branch's parent is its community (org.PARENT_KIND)
        community = row.unit_id if row.level == "community" else row.parent_id
        if row.households or row.members:
            figures[row.unit_id] = unit_coverage(row, by_community.get(community or "", default))
    return figures


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
    figures: dict[str, dict[str, Any]],
    after: str = "",
    limit: int = 50,
) -> tuple[int, str | None]:
    """Queue the weekly digests of up to ``limit`` branches and communities after unit id
    ``after``, stating ``figures`` (:func:`weekly_figures`, computed once per run); returns (queued, the last unit id, or None when every unit has been seen). A
    chunk re-run after a crash queues nothing twice (a dedup key per unit and week)."""
    week_label = key.removeprefix("digest:weekly:")
    queued = 0
    units = db.execute(
        f"SELECT id, kind, name FROM org_units p WHERE {_WEEKLY_UNITS} "
        "AND id > ? ORDER BY id LIMIT ?",
        [after, limit],
    ).fetchall()
    for unit_id, kind, name in units:
        if unit_id not in figures:
            continue
        tag = f"{kind}:{unit_id}:secretary"
        context = {
            "unit_name": name,
            "week": week_label,
            **figures[unit_id],
            "link": deep_link(settings, WEEKLY_LINK),
        }
        queued += outbox.enqueue(
            db,
            router,
            event_key=f"{key}:{unit_id}",
            kind="digest_weekly",
            tags=[tag],
            context=context,
            now_ms=now_ms,
            link=WEEKLY_LINK,
        )
    if len(units) < limit:
        return queued, None
    return queued, units[-1][0]


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
            not_before_ms=outbox.end_of_quiet_hours(now_ms, n.quiet_hours, settings.timezone),
            link=CONFLICTS_LINK,
        )
    return queued


def weekly_digests(
    db: sqlite_utils.Database, *, now_ms: int, settings: Settings, router: Router
) -> int:
    """Queue this week's coverage digest to branch and community secretaries, once per week,
    in one transaction (the sweep runs it in chunks: :func:`run_weekly`)."""
    key = weekly_due(db, now_ms=now_ms, settings=settings)
    if key is None:
        return 0
    queued = 0
    figures = weekly_figures(db, settings, now_ms)
    after: str | None = ""
    while after is not None:
        n, after = weekly_chunk(
            db, key, now_ms=now_ms, settings=settings, router=router, figures=figures, after=after
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
    # the figures are one roll-up of the district, read once (a snapshot, not the writer)
    figures = store.read(weekly_figures, settings, now_ms)
    advance = _step(steps, "weekly digests", store, _WEEKLY_UNITS)
    return _in_chunks(
        store,
        lambda db, a: weekly_chunk(
            db,
            key,
            now_ms=now_ms,
            settings=settings,
            router=router,
            figures=figures,
            after=a,
            limit=chunk,
        ),
        key,
        now_ms,
        pause,
        advance,
        chunk,
    )

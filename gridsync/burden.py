"""The burden report (issue 14, the "digital trap"): per person, per ISO week, what gridsync asked
of them, so that a district sees whether a rule or a deadline is burying its workers in
messages and data entry.

Each figure comes from the record its cause already keeps; nothing here counts a second way:

- ``mutations``: the mutations their phones pushed in the week (visits, edits, case actions),
  from the push log: each push's audit entry (``sync.push``, person, time, counts by status;
  ``sync_mutations`` does not hold visits, which are their own record). A resend answered
  ``duplicate`` asked nothing new and is not counted.
- ``visits``: the visits they recorded with a contact time in the week, not voided, in the
  report's grids.
- ``households_due``: their households the coverage engine (``coverage.tally``, per member)
  counts overdue at the end of the week, or now for the week under way: the contacts the 1-5-N
  rule still asks of them. It is the engine's figure as of that time (each household's newest
  visit), as the roll-up's ``at`` is.
- ``notifications``: the notifications to them in the week, by kind: their inbox's notices
  (``notices``, written by the outbox for every person a notification reaches, whether or not
  they have a channel; the outbox itself holds a row only for a channel).
- ``alerts_acted`` (secretaries only): the week's whistle alerts to them
  (``whistle.ALERT_KINDS``) and how many they acted on: took an action on the alert's case
  at or after it was queued (the case's history), whenever that was.

Weeks are ISO weeks (Monday 00:00 to Monday 00:00) in the district's zone
(``timezone``). The people of a report: every active person whose party branch, or a
unit their scope names, lies within it (the whole district: every active person).
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta

import msgspec
import sqlite_utils

from gridsync import coverage
from gridsync.clock import iso_ms
from gridsync.config import Settings
from gridsync.errors import Invalid
from gridsync.models import AlertsActed, BurdenReport, BurdenRow
from gridsync.notify.outbox import zone
from gridsync.org import Scope
from gridsync.whistle import ALERT_KINDS

# Labels of the report's people and notifications (the CLI table and the XLSX; Chinese by
# default). A kind or role not named here is shown as it is.
ROLE_LABELS = {
    "zh": {
        "admin": "管理员",
        "street": "街道",
        "community_secretary": "社区书记",
        "branch_secretary": "支部书记",
        "grid_worker": "网格员",
        "member": "党员",
        "department": "部门",
        "instructor": "党建指导员",
        "supervisor": "督办",
    },
    "en": {},
}
NOTIFICATION_LABELS = {
    "zh": {
        "digest_daily": "每日走访提醒",
        "digest_weekly": "每周覆盖简报",
        "whistle_raised": "吹哨案件",
        "whistle_near": "时限将到",
        "whistle_overdue": "超时上报",
        "whistle_escalated": "吹哨上报",
        "whistle_returned": "案件退回",
        "whistle_closed": "案件办结",
    },
    "en": {},
}


# The roles whose whistle alerts the report follows to an action.
SECRETARY_ROLES = ("community_secretary", "branch_secretary")
_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")
_roles = msgspec.json.Decoder(list[str])


def week_bounds(week: str | None, now_ms: int, tz_name: str) -> tuple[str, int, int]:
    """An ISO week (``2026-W49``; default: the week of ``now_ms``) as its label and its start
    and end (exclusive) in epoch ms, Monday 00:00 in the zone. ``validation_error`` (field
    ``week``) for anything else: a week 54, a year outside 1970-2199, a week not begun."""
    tz = zone(tz_name)
    if week is None:
        year, number, _ = datetime.fromtimestamp(now_ms / 1000, tz=tz).isocalendar()
    else:
        match = _WEEK.fullmatch(week)
        if match is None:
            raise Invalid(f"bad week {week!r}: an ISO week such as 2026-W49", field="week")
        year, number = int(match[1]), int(match[2])
    try:
        if not 1970 <= year <= 2199:
            raise ValueError(year)
        monday = date.fromisocalendar(year, number, 1)
    except ValueError:
        raise Invalid(f"no ISO week {week!r}", field="week") from None
    start = datetime.combine(monday, time(0), tzinfo=tz)
    end = start + timedelta(days=7)
    if start.timestamp() * 1000 > now_ms:
        raise Invalid(f"week {week} has not begun", field="week")
    return f"{year:04d}-W{number:02d}", int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def burden(
    db: sqlite_utils.Database,
    settings: Settings,
    scope: Scope,
    unit_id: str | None = None,
    *,
    week: str | None = None,
    now_ms: int,
) -> BurdenReport:
    """The burden of every person of a unit (default: the reader's scope) in an ISO week."""
    label, start, end = week_bounds(week, now_ms, settings.timezone)
    idx = coverage.OrgIndex.of(db)
    scoped = coverage.report_units(idx, scope, unit_id)
    people = _people(db, idx, scoped, whole=scope.everything and unit_id is None)
    ids = {pid for pid, _, _ in people}

    t = coverage.tally(
        db,
        settings,
        scope,
        unit_id,
        min(end, now_ms) - 1,
        per_member=True,
        with_kinds=False,
        idx=idx,
        scoped=scoped,
    )
    due = {pid: c.overdue for pid, c in t.member_counts.items()}

    mutations: dict[str, int] = {}
    for pid, n in db.execute(
        """SELECT person_id, sum(coalesce(json_extract(detail, '$.mutations'), 0)
                                 - coalesce(json_extract(detail, '$.duplicate'), 0))
           FROM audit_log INDEXED BY audit_log_action_at
           WHERE action = 'sync.push' AND at >= ? AND at < ? AND person_id IS NOT NULL
           GROUP BY person_id""",
        [iso_ms(start), iso_ms(end)],
    ):
        if pid in ids:
            mutations[pid] = int(n)

    # Visits have no index by time (only by grid and seq, and by household and time): a few
    # grids read theirs through visits_grid_seq; a street or the district scans the table once
    # and keeps its grids here (the demo district's 1.9 million visits: 0.7 s, against 5 s
    # through the grid index, which reads every visit of every grid, and 3.3 s with the grid
    # list as an SQL condition on every row).
    visits: dict[str, int] = {}
    if idx.wide(scoped.units):
        counted = db.execute(
            """SELECT member_id, grid_id, count(*) FROM visits NOT INDEXED
               WHERE at_ms >= ? AND at_ms < ? AND voided = 0 GROUP BY member_id, grid_id""",
            [start, end],
        )
        for pid, grid, n in counted:
            if pid in ids and grid in scoped.grids:
                visits[pid] = visits.get(pid, 0) + n
    else:
        cond, params = coverage.grid_filter(sorted(scoped.grids))
        for pid, n in db.execute(
            f"""SELECT member_id, count(*) FROM visits
                WHERE {cond} AND at_ms >= ? AND at_ms < ? AND voided = 0
                GROUP BY member_id""",
            [*params, start, end],
        ):
            if pid in ids:
                visits[pid] = n

    notifications: dict[str, dict[str, int]] = {}
    for pid, kind, n in db.execute(
        """SELECT person_id, kind, count(*) FROM notices INDEXED BY notices_created
           WHERE created_ms >= ? AND created_ms < ?
           GROUP BY person_id, kind ORDER BY person_id, kind""",
        [start, end],
    ):
        if pid in ids:
            notifications.setdefault(pid, {})[kind] = n

    alerts: dict[str, AlertsActed] = {}
    for pid, received, acted in db.execute(
        """SELECT o.person_id, count(*), count(*) FILTER (WHERE EXISTS (
                      SELECT 1 FROM whistle_history h
                      WHERE h.case_id = o.cause AND h.by = o.person_id
                        AND h.at_ms >= o.created_ms))
           FROM notices o INDEXED BY notices_created
           WHERE o.created_ms >= ? AND o.created_ms < ?
             AND o.cause IS NOT NULL AND o.kind IN (SELECT value FROM json_each(?))
           GROUP BY o.person_id""",
        [start, end, msgspec.json.encode(ALERT_KINDS).decode()],
    ):
        if pid in ids:
            alerts[pid] = AlertsActed(received=received, acted=acted)

    rows = []
    for pid, name, roles in people:
        secretary = any(r in SECRETARY_ROLES for r in roles)
        rows.append(
            BurdenRow(
                person_id=pid,
                name=name,
                roles=roles,
                mutations=mutations.get(pid, 0),
                visits=visits.get(pid, 0),
                households_due=due.get(pid, 0),
                notifications=notifications.get(pid, {}),
                alerts_acted=(alerts.get(pid) or AlertsActed(received=0, acted=0))
                if secretary
                else None,
            )
        )
    return BurdenReport(week=label, rows=rows)


def _people(
    db: sqlite_utils.Database,
    idx: coverage.OrgIndex,
    scoped: coverage.ReportUnits,
    *,
    whole: bool,
) -> list[tuple[str, str, list[str]]]:
    """(id, name, roles) of the active people of a report, by id."""
    if whole:
        where, params = "1", []
    else:
        places = set(scoped.units) | {b for b, g in idx.branch_grid.items() if g in scoped.grids}
        encoded = msgspec.json.encode(sorted(places)).decode()
        where = (
            "(branch_id IN (SELECT value FROM json_each(?)) OR id IN (SELECT person_id FROM "
            "person_scope WHERE unit_id IN (SELECT value FROM json_each(?))))"
        )
        params = [encoded, encoded]
    return [
        (pid, name, _roles.decode(roles))
        for pid, name, roles in db.execute(
            f"SELECT id, name, roles FROM people WHERE active = 1 AND {where} ORDER BY id", params
        )
    ]

"""Wire types of the reports about the people who use gridsync: the burden report (what the
system asked of each person in an ISO week, ``gridsync/burden.py``)."""

from __future__ import annotations

from msgspec import Struct

# An ISO 8601 week, e.g. 2026-W49 (weeks run Monday to Sunday in the district's zone).
ISO_WEEK_PATTERN = r"^[0-9]{4}-W[0-9]{2}$"


class AlertsActed(Struct, kw_only=True):
    """A secretary's whistle alerts of the week (``whistle.ALERT_KINDS``) and how many of them
    they acted on: took an action on the alert's case at or after it was queued."""

    received: int
    acted: int


class BurdenRow(Struct, kw_only=True):
    """One person's week. ``mutations``: mutations their phones pushed (visits, edits, case
    actions; a resent duplicate not counted); ``visits``: visits they recorded (contact time in
    the week, not voided); ``households_due``: their households the coverage engine counts
    overdue at the end of the week (or now, for the week under way); ``notifications``: the
    notifications queued for them, by kind; ``alerts_acted``: null unless they hold a secretary
    role."""

    person_id: str
    name: str
    roles: list[str]
    mutations: int
    visits: int
    households_due: int
    notifications: dict[str, int]
    alerts_acted: AlertsActed | None


class BurdenReport(Struct, kw_only=True):
    week: str  # e.g. 2026-W49
    rows: list[BurdenRow]


class InstructorRow(Struct, kw_only=True):
    """One party-building instructor (党建指导员) to date: ``communities``: the communities
    their scope names; ``communities_covered``: how many of them hold a household they
    visited; ``households_visited``: distinct households they contacted (a group visit counts
    for each of its households); ``visits`` and ``group_visits``: their visit records, not
    voided; ``cases_raised``: whistle cases they raised; ``cases_resolved``: of those, the
    ones resolved or closed."""

    person_id: str
    name: str
    communities: list[str]
    communities_covered: int
    households_visited: int
    visits: int
    group_visits: int
    cases_raised: int
    cases_resolved: int


class InstructorReport(Struct, kw_only=True):
    scope_id: str | None
    at: str  # when the figures were read (ISO 8601)
    rows: list[InstructorRow]

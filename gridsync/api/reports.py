"""HTTP controllers of the reports about the people who use gridsync: the burden report
(``gridsync/burden.py``) and the instructors' report (``gridsync/instructors.py``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from gridsync import burden, instructors
from gridsync.api.coverage import REPORT_ROLES, ScopeQuery
from gridsync.api.errors import error_responses
from gridsync.audit import record
from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.models import ISO_WEEK_PATTERN, BurdenReport, InstructorReport

WeekQuery = Annotated[
    str | None,
    QueryParameter(
        min_length=8,
        max_length=8,
        pattern=ISO_WEEK_PATTERN,
        description="ISO week, e.g. 2026-W49 (default: this week, in the district's zone)",
    ),
]


class ReportController(Controller):
    path = "/api/v1/reports"
    tags = ["reports"]

    @get(
        "/burden",
        summary="What gridsync asked of each person in an ISO week (pushes, visits, households "
        "due, notifications, alerts acted on)",
        responses=error_responses(400, 403, 404, 503),
    )
    async def burden_report(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        scope_id: ScopeQuery = None,
        week: WeekQuery = None,
    ) -> BurdenReport:
        principal.require_role(*REPORT_ROLES)
        result = await store.aread(
            burden.burden, settings, principal.scope, scope_id, week=week, now_ms=clock.now_ms()
        )
        await store.awrite(
            record,
            principal.actor,
            "read.report.burden",
            scope_id,
            {"week": result.week, "rows": len(result.rows)},
        )
        return result

    @get(
        "/instructors",
        summary="What each party-building instructor (党建指导员) has done to date (households "
        "visited, visits and group visits, cases raised and resolved, communities covered)",
        responses=error_responses(400, 403, 404, 503),
    )
    async def instructors_report(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        scope_id: ScopeQuery = None,
    ) -> InstructorReport:
        principal.require_role(*REPORT_ROLES)
        result = await store.aread(
            instructors.instructors, principal.scope, scope_id, now_ms=clock.now_ms()
        )
        await store.awrite(
            record,
            principal.actor,
            "read.report.instructors",
            scope_id,
            {"rows": len(result.rows)},
        )
        return result


CONTROLLERS: list[type] = [ReportController]

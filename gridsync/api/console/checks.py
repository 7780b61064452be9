"""抽检: draw a recorded check of a unit, record its outcomes household by household, see its
verified rate. The REST API's functions and refusals: ``coverage.draw_check`` as ``POST
/api/v1/coverage/checks`` (``403 check_forbidden`` for the unit's own people and for roles not
above it), ``coverage.record_result`` as ``PUT .../results/{household}``, ``coverage.get_check``
as ``GET /api/v1/coverage/checks/{id}`` (audited ``read.coverage.check``); the forms decode
into the API's wire types (``CheckRequest``, ``CheckResult``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from gridsync import coverage, org
from gridsync.api.console.base import Viewer, form_of, names_of, page, see_other, wire
from gridsync.api.coverage import REPORT_ROLES
from gridsync.api.params import PathId
from gridsync.audit import record
from gridsync.clock import Clock
from gridsync.db import Store
from gridsync.models import CHECK_OUTCOMES, MAX_CHECK_HOUSEHOLDS, CheckRequest, CheckResult
from gridsync.record_exports import CHANNEL_LABELS

CHECKABLE = ("street", "community", "grid", "branch")
OUTCOME_LABELS = {"confirmed": "确认走访", "denied": "否认走访", "unreachable": "未联系上"}


class ChecksController(Controller):
    path = "/console/checks"
    include_in_schema = False

    @get("/")
    async def checks(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        unit: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Template:
        p = viewer.principal
        p.require_role(*REPORT_ROLES)
        units = []
        for kind in CHECKABLE:
            found, _ = await store.aread(org.list_units, p.scope, kind=kind, limit=500)
            units += found
        recent = await store.aread(coverage.recent_checks, p.person_id, p.roles, p.scope, limit=20)
        names = await store.aread(
            names_of, {c.drawn_by for c in recent if c.drawn_by}, {c.scope for c in recent}
        )
        return page(
            "checks.html",
            viewer,
            "checks",
            units=units,
            unit=unit or "",
            recent=recent,
            names=names,
            max_n=MAX_CHECK_HOUSEHOLDS,
            levels=coverage.LEVEL_LABELS["zh"],
        )

    @post("/", status_code=303)
    async def draw(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
    ) -> Redirect:
        form = await form_of(request, viewer)
        data: CheckRequest = wire(form, CheckRequest)
        p = viewer.principal
        check = await store.awrite(
            coverage.draw_check, p.actor, p.roles, p.scope, data.scope, data.n, clock=clock
        )
        return see_other(f"/console/checks/{check.id}")

    @get("/{check_id:str}")
    async def check(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        check_id: PathId,
        done: Annotated[str | None, QueryParameter(max_length=64)] = None,
    ) -> Template:
        p = viewer.principal
        found = await store.aread(coverage.get_check, p.person_id, p.roles, p.scope, check_id)
        await store.awrite(record, p.actor, "read.coverage.check", check_id)
        people = {h.last_visit.member_id for h in found.households if h.last_visit}
        if found.drawn_by:
            people.add(found.drawn_by)
        names = await store.aread(names_of, people, {found.scope})
        counts = {o: sum(1 for h in found.households if h.outcome == o) for o in CHECK_OUTCOMES}
        return page(
            "check.html",
            viewer,
            "checks",
            check=found,
            names=names,
            counts=counts,
            outcomes=OUTCOME_LABELS,
            channels=CHANNEL_LABELS["zh"],
            done=done,
        )

    @post("/{check_id:str}/results/{household_id:str}", status_code=303)
    async def record_result(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        check_id: PathId,
        household_id: PathId,
    ) -> Redirect:
        form = await form_of(request, viewer)
        data: CheckResult = wire(form, CheckResult)
        p = viewer.principal
        await store.awrite(
            coverage.record_result,
            p.actor,
            p.roles,
            p.scope,
            check_id,
            household_id,
            data,
            clock=clock,
        )
        return see_other(f"/console/checks/{check_id}?done={household_id}#h-{household_id}")

"""住户: search households by address or head's name; a household's page with its visits, its
responsible member (assign or move, by ``coverage.assign`` with its cap rules, as
``POST /api/v1/coverage/assignments``) and its conflicts (restore or dismiss, as the conflicts
API). Reads are audited as the REST reads are; phones are masked by ``privacy`` in the domain."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from gridsync import coverage, households, org
from gridsync.api.console.base import Viewer, form_of, names_of, page, see_other, wire
from gridsync.api.params import PageOffset, PathId
from gridsync.api.sync import SECRETARY_ROLES, ConflictId
from gridsync.audit import record
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.models import AssignRequest, RestoreRequest
from gridsync.sync import conflicts

PAGE = 50


class HouseholdsController(Controller):
    path = "/console/households"
    include_in_schema = False

    @get("/")
    async def search(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        q: Annotated[str | None, QueryParameter(max_length=64)] = None,
        grid_id: Annotated[str | None, QueryParameter(max_length=64)] = None,
        offset: PageOffset = 0,
    ) -> Template:
        p = viewer.principal
        q = (q or "").strip() or None
        grid_id = grid_id or None  # the form's "全部" sends it empty
        items, total = await store.aread(
            households.list_households, p.scope, grid_id=grid_id, q=q, limit=PAGE, offset=offset
        )
        await store.awrite(
            record,
            p.actor,
            "read.households",
            detail={"grid_id": grid_id, "q": q, "offset": offset, "count": len(items)},
        )
        grids, _ = await store.aread(org.list_units, p.scope, kind="grid", limit=500)
        people = {h.responsible_member_id for h in items if h.responsible_member_id}
        names = await store.aread(names_of, people, set())
        return page(
            "households.html",
            viewer,
            "households",
            items=items,
            total=total,
            q=q or "",
            grid_id=grid_id or "",
            grids=grids,
            names=names,
            offset=offset,
            page_size=PAGE,
        )

    @get("/{household_id:str}")
    async def household(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        household_id: PathId,
        done: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template:
        p = viewer.principal
        found = await store.aread(households.get_household, p.scope, household_id)
        visits, visit_total = await store.aread(
            households.list_visits, p.scope, household_id, limit=20
        )
        lost = None
        if p.has_role(*SECRETARY_ROLES):
            lost, _ = await store.aread(
                conflicts.list_conflicts, p.scope, status=None, household_id=household_id, limit=50
            )
        members = None
        if p.has_role(*coverage.ASSIGNER_ROLES):
            members, _ = await store.aread(
                org.list_people, p.scope, role="member", unit_id=found.grid_id, limit=500
            )
        people = {v.member_id for v in visits}
        if found.responsible_member_id:
            people.add(found.responsible_member_id)
        names = await store.aread(names_of, people, {found.grid_id})
        return page(
            "household.html",
            viewer,
            "households",
            h=found,
            visits=visits,
            visit_total=visit_total,
            lost=lost,
            members=members,
            names=names,
            done=done,
        )

    @post("/{household_id:str}/assign", status_code=303)
    async def assign(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        household_id: PathId,
    ) -> Redirect:
        form = await form_of(request, viewer)
        data: AssignRequest = wire({**form, "household_id": household_id}, AssignRequest)
        p = viewer.principal
        await store.awrite(
            coverage.assign,
            settings,
            p.actor,
            p.roles,
            p.scope,
            data.household_id,
            data.member_id,
            replace=data.replace,
            override_cap=data.override_cap,
            reason=data.reason,
            clock=clock,
        )
        return see_other(f"/console/households/{household_id}?done=assign")

    @post("/conflicts/{conflict_id:int}/restore", status_code=303)
    async def restore(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        conflict_id: ConflictId,
    ) -> Redirect:
        return await _close_conflict(request, viewer, store, clock, conflict_id, "restore")

    @post("/conflicts/{conflict_id:int}/dismiss", status_code=303)
    async def dismiss(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        conflict_id: ConflictId,
    ) -> Redirect:
        return await _close_conflict(request, viewer, store, clock, conflict_id, "dismiss")


async def _close_conflict(
    request: Request, viewer: Viewer, store: Store, clock: Clock, conflict_id: int, verb: str
) -> Redirect:
    """Restore or dismiss a conflict as ``POST /api/v1/sync/conflicts/{id}/...`` does (the
    secretaries' roles, the same domain function), then back to the household's page."""
    form = await form_of(request, viewer)
    data: RestoreRequest = wire({"note": form.get("note", "")}, RestoreRequest)
    viewer.principal.require_role(*SECRETARY_ROLES)
    act = conflicts.restore if verb == "restore" else conflicts.dismiss
    entry = await store.awrite(act, viewer.principal, conflict_id, data.note, clock)
    return see_other(f"/console/households/{entry.household_id}?done={verb}")

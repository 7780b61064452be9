"""案件: the board of whistle cases by state, and a case's page: its timeline, its deadlines and
the actions the reader may take (``whistle.actions_open_to``, read from the state machine's
table). Taking one calls ``whistle.act`` as ``POST /api/v1/whistle/cases/{id}/actions`` does,
so a refusal is the API's status and code."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Redirect, Template

from gridsync import whistle
from gridsync.api.console.base import Viewer, form_of, names_of, page, see_other, wire
from gridsync.api.params import PathId
from gridsync.clock import Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Invalid
from gridsync.models import CASE_LEVELS, CaseAction

# The board's columns: (title, states), in the order a case moves.
COLUMNS: list[tuple[str, tuple[str, ...]]] = [
    ("待受理", ("raised", "reopened")),
    ("已受理", ("accepted",)),
    ("已到场", ("on_site",)),
    ("已解决", ("resolved",)),
    ("已结案", ("closed",)),
]
PER_COLUMN = 30


class CasesController(Controller):
    path = "/console/cases"
    include_in_schema = False

    @get("/")
    async def board(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        level: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template:
        scope = viewer.principal.scope
        level = level or None  # the form's "全部" sends it empty
        if level is not None and level not in CASE_LEVELS:
            raise Invalid(
                f"unknown level {level!r}; one of {', '.join(CASE_LEVELS)}", field="level"
            )
        columns = []
        for title, states in COLUMNS:
            items, total = [], 0
            for state in states:
                got = await store.aread(
                    whistle.list_cases, scope, state=state, level=level, limit=PER_COLUMN
                )
                items += got.items
                total += got.total
            columns.append({"title": title, "items": items[:PER_COLUMN], "total": total})
        return page(
            "cases.html",
            viewer,
            "cases",
            columns=columns,
            level=level,
            next_deadline=whistle.next_deadline,
            now=iso_ms(clock.now_ms()),
        )

    @get("/{case_id:str}")
    async def case(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        case_id: PathId,
        done: Annotated[str | None, QueryParameter(max_length=20)] = None,
    ) -> Template:
        found = await store.aread(whistle.get_case, case_id, viewer.principal.scope)
        people = {e.by for e in found.history if e.by} | {found.raised_by}
        if found.accepted_by:
            people.add(found.accepted_by)
        units = {found.grid_id, found.unit_id}
        names = await store.aread(names_of, people, units)
        return page(
            "case.html",
            viewer,
            "cases",
            case=found,
            actions=whistle.actions_open_to(found, viewer.principal.scope),
            next_deadline=whistle.next_deadline(found),
            done=done,
            names=names,
            now=iso_ms(clock.now_ms()),
        )

    @post("/{case_id:str}/act", status_code=303)
    async def act(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        case_id: PathId,
    ) -> Redirect:
        data: CaseAction = wire(await form_of(request, viewer), CaseAction)
        await store.awrite(
            whistle.act, viewer.principal, case_id, data, now_ms=clock.now_ms(), settings=settings
        )
        return see_other(f"/console/cases/{case_id}?done={data.action}")

"""HTTP controllers of the whistle area: cases (raise, list, act), the report, the outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from gridsync import whistle
from gridsync.api.errors import error_responses
from gridsync.api.params import IdQuery, PageLimit, PageOffset, PathId
from gridsync.auth import Principal
from gridsync.clock import Clock, parse_ms, uuid7
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Invalid
from gridsync.models import (
    CaseAction,
    CaseCreate,
    CaseLevel,
    CasePage,
    CaseSource,
    CaseState,
    OutboxPage,
    OutboxState,
    WhistleCase,
    WhistleRaise,
    WhistleReport,
)
from gridsync.notify import outbox

TimeQuery = Annotated[datetime | None, QueryParameter(description="ISO 8601 time")]


def time_ms(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_ms(value)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"{name} is not an ISO 8601 time", field=name) from exc


class WhistleController(Controller):
    path = "/api/v1/whistle"
    tags = ["whistle"]

    @post(
        "/cases",
        summary="Raise a whistle case (web users; phones push whistle.raise)",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def raise_case(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        data: JSONBody[CaseCreate],
    ) -> WhistleCase:
        raise_data = WhistleRaise(
            category=data.category,
            grid_id=data.grid_id,
            household_id=data.household_id,
            location=data.location,
            description=data.description,
        )
        return await store.awrite(
            whistle.raise_case,
            principal,
            data.id or uuid7(),
            raise_data,
            received_ms=clock.now_ms(),
            settings=settings,
        )

    @get(
        "/cases",
        summary="Cases in the caller's scope, newest first",
        responses=error_responses(400, 403),
    )
    async def list_cases(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        case_state: Annotated[CaseState | None, QueryParameter(name="state")] = None,
        level: Annotated[CaseLevel | None, QueryParameter()] = None,
        grid_id: IdQuery = None,
        open_only: Annotated[bool, QueryParameter(name="open")] = False,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> CasePage:
        return await store.aread(
            whistle.list_cases,
            principal.scope,
            state=case_state,
            level=level,
            grid_id=grid_id,
            open_only=open_only,
            limit=limit,
            offset=offset,
        )

    @get(
        "/cases/{case_id:str}",
        summary="One case with its deadlines and history",
        responses=error_responses(400, 403, 404),
    )
    async def get_case(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        case_id: PathId,
    ) -> WhistleCase:
        return await store.aread(whistle.get_case, case_id, principal.scope)

    @post(
        "/cases/{case_id:str}/actions",
        status_code=200,
        summary="Act on a case: accept, arrive, resolve, escalate, return, comment, close, reopen",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def act(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        case_id: PathId,
        data: JSONBody[CaseAction],
    ) -> WhistleCase:
        return await store.awrite(
            whistle.act, principal, case_id, data, now_ms=clock.now_ms(), settings=settings
        )

    @get(
        "/report",
        summary="Response, on-time, resolution rates, satisfaction, backflow",
        responses=error_responses(400, 403),
    )
    async def report(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        since: TimeQuery = None,
        until: TimeQuery = None,
        level: Annotated[CaseLevel | None, QueryParameter()] = None,
        source: Annotated[
            CaseSource,
            QueryParameter(description="whistle cases (default) or hotline orders' stays"),
        ] = "whistle",
    ) -> WhistleReport:
        return await store.aread(
            whistle.whistle_report,
            principal.scope,
            now_ms=clock.now_ms(),
            since_ms=time_ms(since, "since"),
            until_ms=time_ms(until, "until"),
            level=level,
            source=source,
        )


class OutboxController(Controller):
    path = "/api/v1/notify/outbox"
    tags = ["notify"]

    @get(
        "/",
        summary="Notifications and their delivery state (an admin sees all, others "
        "their own); channel URLs are never shown",
        responses=error_responses(400, 403),
    )
    async def list_outbox(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        delivery_state: Annotated[OutboxState | None, QueryParameter(name="state")] = None,
        cause: IdQuery = None,
        kind: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> OutboxPage:
        person_id = None if principal.has_role("admin") else principal.person_id
        return await store.aread(
            outbox.list_outbox,
            state=delivery_state,
            person_id=person_id,
            cause=cause,
            kind=kind,
            limit=limit,
            offset=offset,
        )


CONTROLLERS: list[type] = [WhistleController, OutboxController]

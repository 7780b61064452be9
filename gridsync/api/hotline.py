"""HTTP controllers of hotline orders (12345, 接诉即办) and supervision (督办): orders in
(idempotent by order number), the open orders by deadline, callbacks, the three rates; supervise
a case and the supervised cases' report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody, QueryParameter

from gridsync import hotline
from gridsync.api.errors import error_responses
from gridsync.api.params import PageLimit, PageOffset, PathId
from gridsync.api.whistle import TimeQuery, time_ms
from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.models import (
    CallbackCreate,
    CasePage,
    ForwardRequest,
    HotlineReport,
    OrderCreate,
    SupervisedReport,
    SuperviseRequest,
    WhistleCase,
)

UnitScopeQuery = Annotated[
    str | None,
    QueryParameter(
        name="scope",
        min_length=1,
        max_length=64,
        description="org unit id: orders dispatched within it (default: your whole scope)",
    ),
]
FromQuery = Annotated[
    datetime | None,
    QueryParameter(name="from", description="ISO 8601: orders the platform received from then"),
]
ToQuery = Annotated[
    datetime | None, QueryParameter(name="to", description="ISO 8601: ... and before then")
]


def _order_responses() -> dict[int, Any]:
    responses = error_responses(400, 403, 404, 409, 413, 503)
    responses[200] = ResponseSpec(
        data_container=WhistleCase,
        description="the order number was received before: its case, unchanged",
        generate_examples=False,
    )
    return responses


class HotlineController(Controller):
    path = "/api/v1/hotline"
    tags = ["hotline"]

    @post(
        "/orders",
        summary="An order dispatched by the 12345 platform (an admin or the hotline "
        "credential); 201 new, 200 when the order number was received before",
        responses=_order_responses(),
    )
    async def receive_order(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        data: JSONBody[OrderCreate],
    ) -> Response[WhistleCase]:
        principal.require_role(*hotline.ORDER_ROLES)
        case, new = await store.awrite(
            hotline.receive_order, principal, data, now_ms=clock.now_ms(), settings=settings
        )
        return Response(case, status_code=201 if new else 200)

    @get(
        "/orders",
        summary="Open orders in the caller's scope, the next deadline first",
        responses=error_responses(400, 403),
    )
    async def open_orders(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> CasePage:
        return await store.aread(hotline.open_orders, principal.scope, limit=limit, offset=offset)

    @post(
        "/orders/{case_id:str}/forward",
        status_code=200,
        summary="Hand an open order down to a community or grid below the unit holding it "
        "(same deadlines)",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def forward(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        case_id: PathId,
        data: JSONBody[ForwardRequest],
    ) -> WhistleCase:
        return await store.awrite(
            hotline.forward_order,
            principal,
            case_id,
            data,
            now_ms=clock.now_ms(),
            settings=settings,
        )

    @post(
        "/orders/{case_id:str}/callback",
        status_code=200,
        summary="Record a callback (回访) of a resolved order, by someone who did not handle it",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def callback(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        case_id: PathId,
        data: JSONBody[CallbackCreate],
    ) -> WhistleCase:
        return await store.awrite(
            hotline.record_callback, principal, case_id, data, now_ms=clock.now_ms()
        )

    @get(
        "/report",
        summary="Response, resolution and satisfaction rates from callbacks, per unit and type",
        responses=error_responses(400, 403, 404),
    )
    async def report(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        unit: UnitScopeQuery = None,
        since: FromQuery = None,
        until: ToQuery = None,
    ) -> HotlineReport:
        principal.require_role(*hotline.REPORT_ROLES)
        return await store.aread(
            hotline.hotline_report,
            principal.scope,
            now_ms=clock.now_ms(),
            unit=unit,
            since_ms=time_ms(since, "from"),
            until_ms=time_ms(until, "to"),
        )


class SupervisionController(Controller):
    path = "/api/v1/whistle"
    tags = ["whistle"]

    @post(
        "/cases/{case_id:str}/supervise",
        status_code=200,
        summary="Supervise (督办) an order or a case: a note and a new due time; the unit "
        "holding it is alerted at once",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def supervise(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        case_id: PathId,
        data: JSONBody[SuperviseRequest],
    ) -> WhistleCase:
        return await store.awrite(
            hotline.supervise, principal, case_id, data, now_ms=clock.now_ms(), settings=settings
        )

    @get(
        "/supervised",
        summary="Supervised cases and whether each met its new due time",
        responses=error_responses(400, 403),
    )
    async def supervised(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        since: TimeQuery = None,
        until: TimeQuery = None,
    ) -> SupervisedReport:
        principal.require_role(*hotline.REPORT_ROLES)
        return await store.aread(
            hotline.supervised_report,
            principal.scope,
            now_ms=clock.now_ms(),
            since_ms=time_ms(since, "since"),
            until_ms=time_ms(until, "until"),
        )


CONTROLLERS: list[type] = [HotlineController, SupervisionController]

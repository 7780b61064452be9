"""HTTP controllers of the sync area: push, pull, status (SPEC 3), and the conflict log.

Push reads the raw body itself (size limits before and after gzip, then one cached msgspec
decoder for JSON or msgpack), so its OpenAPI request body is described by hand from the Structs.
Responses are msgpack when the client asks for ``application/msgpack`` and JSON otherwise.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.openapi.spec import Operation
from litestar.params import HeaderParameter, JSONBody, PathParameter, QueryParameter

from gridsync.api.deps import WHILE_DRAINING, read_ahead
from gridsync.api.errors import error_responses
from gridsync.api.params import PageLimit, PageOffset
from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import PayloadTooLarge
from gridsync.models import (
    ConflictEntry,
    ConflictPage,
    PullResponse,
    PushRequest,
    PushResponse,
    RestoreRequest,
    SyncStatus,
)
from gridsync.sync import conflicts, pull, push, status

MSGPACK = "application/msgpack"
_json = msgspec.json.Encoder()
_msgpack = msgspec.msgpack.Encoder()

# Required, as the document says, but read as optional: without it the answer is 426
# unsupported_schema telling the app to upgrade (push.check_schema_header), not a 400.
SchemaHeader = Annotated[
    str | None,
    HeaderParameter(
        name="X-Gridsync-Schema",
        description="sync schema version; this server speaks 1 (426 without it or for another)",
        max_length=16,
        required=True,
    ),
]
AppHeader = Annotated[
    str | None,
    HeaderParameter(
        name="X-Gridsync-App", description="the app version, e.g. 1.4.2", max_length=64
    ),
]


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """A msgspec JSON Schema with its ``$defs`` inlined (OpenAPI resolves ``#`` to the
    document root, so embedded ``$defs`` references would not resolve)."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(defs[ref.rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


_PUSH_SCHEMA = _inline(msgspec.json.schema(PushRequest))


@dataclass
class PushOperation(Operation):
    """Describes the push body that the handler decodes itself."""

    def to_schema(self) -> dict[str, Any]:
        result = super().to_schema()
        result["requestBody"] = {
            "required": True,
            "description": "a batch of mutations (JSON; application/msgpack and gzip "
            "Content-Encoding accepted too)",
            "content": {"application/json": {"schema": _PUSH_SCHEMA}},
        }
        return result


def wants_msgpack(request: Request) -> bool:
    return MSGPACK in request.headers.get(
        "accept", ""
    ) or "application/x-msgpack" in request.headers.get("accept", "")


def respond(request: Request, body: Any, status_code: int = 200) -> Response:
    if wants_msgpack(request):
        return Response(content=_msgpack.encode(body), media_type=MSGPACK, status_code=status_code)
    return Response(
        content=_json.encode(body), media_type="application/json", status_code=status_code
    )


async def read_body(request: Request, limit: int, settings: Settings) -> bytes:
    """The raw body, refusing more than ``limit`` bytes before reading it all."""
    announced = request.headers.get("content-length")
    if announced and announced.isdigit() and int(announced) > limit:
        raise PayloadTooLarge(f"the body has {announced} bytes: " + push.limits_message(settings))
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"the body has more than {limit} bytes: " + push.limits_message(settings)
            )
        chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class PullDeps:
    """What the pull handler needs, as ONE dependency: Litestar resolves several dependencies of
    the same level in an anyio task group, about a tenth of the event loop's time per page of a
    snapshot (bench/README.md section 2)."""

    principal: Principal
    store: Store
    settings: Settings
    clock: Clock


def provide_pull_deps(request: Request[Principal, Any, Any]) -> PullDeps:
    state = request.app.state
    return PullDeps(request.user, state.store, state.settings, state.clock)


ConflictId = Annotated[int, PathParameter(ge=1, le=2**53)]
SECRETARY_ROLES = ("admin", "street", "community_secretary", "branch_secretary")


class SyncController(Controller):
    path = "/api/v1/sync"
    tags = ["sync"]

    @post(
        "/push",
        summary="Push a batch of offline mutations (SPEC 3.1)",
        status_code=200,
        operation_class=PushOperation,
        request_max_body_size=None,
        responses=error_responses(400, 403, 409, 413, 415, 426, 503),
        opt={WHILE_DRAINING: True},  # the one push of a draining device
    )
    async def push(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        x_gridsync_schema: SchemaHeader = None,
        x_gridsync_app: AppHeader = None,
    ) -> Response[PushResponse]:
        push.check_schema_header(x_gridsync_schema)
        body = await read_body(request, settings.max_push_bytes, settings)
        try:
            decoded_body = push.decode_request(
                body,
                content_type=request.headers.get("content-type"),
                content_encoding=request.headers.get("content-encoding"),
                settings=settings,
            )
        except push.NeedsOutline as pending:  # a mutation at fault: slow, so off the loop
            decoded_body = await asyncio.to_thread(pending.salvage)
        req = decoded_body.request
        if req.device_id != principal.device_id:  # before queueing for the writer
            raise push.Forbidden(
                f"device_id {req.device_id} is not this token's device ({principal.device_id})",
                code="device_mismatch",
            )
        decoded = push.decode_data(req, decoded_body.fmt, decoded_body.refused)
        result = await store.awrite(
            push.apply_push, principal, req, decoded, settings, clock, app=x_gridsync_app
        )
        request.app.state.metrics.observe_push(req, result)
        return respond(request, result)

    @get(
        "/pull",
        summary="Pull the changes of the caller's scope after a cursor (SPEC 3.2)",
        responses=error_responses(400, 403, 426, 503),
        dependencies={"deps": Provide(provide_pull_deps, sync_to_thread=False)},
    )
    async def pull(
        self,
        request: Request,
        deps: NamedDependency[PullDeps],
        x_gridsync_schema: SchemaHeader = None,
        x_gridsync_app: AppHeader = None,
        cursor: Annotated[
            str | None,
            QueryParameter(max_length=1024, description="opaque; omit for the initial sync"),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 500,
    ) -> Response[PullResponse]:
        push.check_schema_header(x_gridsync_schema)
        limit = min(limit, deps.settings.max_page_size)
        scope = deps.principal.scope
        ahead = read_ahead(deps.store) if deps.settings.pull_read_ahead else None
        identity = (
            deps.principal.device_id,
            limit,
            scope.version,
            scope.everything,
            scope.grid_ids,
            scope.phones,  # a page read ahead holds phone numbers as this reader may read them
        )
        result: pull.PullResult | None = None
        if ahead is not None and (future := ahead.take((*identity, cursor))) is not None:
            try:
                result = await asyncio.wrap_future(future)
            except Exception:  # the read-ahead failed: read the page here
                result = None
        if result is None:
            result = await deps.store.aread(
                pull.pull_page, scope, cursor, limit, deps.clock.now_ms(), deps.settings
            )
        if result.snapshot_started or not result.scope_known:
            await deps.store.awrite(status.after_pull, deps.principal, result, deps.clock)
        if ahead is not None and result.response.has_more:
            nxt = result.response.cursor
            ahead.start(
                (*identity, nxt),
                deps.store.read,
                pull.pull_page,
                scope,
                nxt,
                limit,
                deps.clock.now_ms(),
                deps.settings,
            )
        return respond(request, result.response)

    @get(
        "/status",
        summary="Server HLC, full-sync size estimate, pending conflicts, draining",
        responses=error_responses(400, 426),
        opt={WHILE_DRAINING: True},  # a draining device learns it is and numbers its drain push
    )
    async def status(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        x_gridsync_schema: SchemaHeader = None,
        x_gridsync_app: AppHeader = None,
    ) -> Response[SyncStatus]:
        push.check_schema_header(x_gridsync_schema)
        result = await store.aread(status.sync_status, principal, clock.now_ms(), settings)
        return respond(request, result)


class ConflictController(Controller):
    path = "/api/v1/sync/conflicts"
    tags = ["sync"]

    @get(
        "/",
        summary="Losing values of merges in the caller's scope (secretaries)",
        responses=error_responses(400, 403),
    )
    async def list_conflicts(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        conflict_status: Annotated[
            Literal["open", "restored", "dismissed"] | None, QueryParameter(name="status")
        ] = "open",
        household_id: Annotated[str | None, QueryParameter(min_length=1, max_length=64)] = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> ConflictPage:
        principal.require_role(*SECRETARY_ROLES)
        items, total = await store.aread(
            conflicts.list_conflicts,
            principal.scope,
            status=conflict_status,
            household_id=household_id,
            limit=limit,
            offset=offset,
        )
        return ConflictPage(items=items, total=total, limit=limit, offset=offset)

    @post(
        "/{conflict_id:int}/restore",
        status_code=200,
        summary="Restore a losing value: a new change with a fresh server HLC",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def restore(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        conflict_id: ConflictId,
        data: JSONBody[RestoreRequest | None] = None,
    ) -> ConflictEntry:
        principal.require_role(*SECRETARY_ROLES)
        return await store.awrite(
            conflicts.restore, principal, conflict_id, data.note if data else "", clock
        )

    @post(
        "/{conflict_id:int}/dismiss",
        status_code=200,
        summary="Close a conflict without restoring its value",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def dismiss(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        conflict_id: ConflictId,
        data: JSONBody[RestoreRequest | None] = None,
    ) -> ConflictEntry:
        principal.require_role(*SECRETARY_ROLES)
        return await store.awrite(
            conflicts.dismiss, principal, conflict_id, data.note if data else "", clock
        )


CONTROLLERS: list[type] = [SyncController, ConflictController]

"""HTTP controllers of console sign-in over the API: one-time links (an admin for anyone, a
phone for its own person, so the app can offer "open on the computer" as a QR code) and the
console sessions, listed and revoked as devices are."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gridsync import signin
from gridsync.api.errors import error_responses
from gridsync.api.params import PathId
from gridsync.auth import Principal
from gridsync.clock import Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Forbidden
from gridsync.models import ConsoleLink, ConsoleLinkRequest, ConsoleSession, ConsoleSessionPage


class ConsoleLinkController(Controller):
    path = "/api/v1/console"
    tags = ["console"]

    @post(
        "/links",
        status_code=201,
        summary="A one-time console sign-in link (15 minutes): an admin for anyone, "
        "anyone for themselves",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def create_link(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        data: JSONBody[ConsoleLinkRequest],
    ) -> ConsoleLink:
        if data.person_id != principal.person_id and not principal.has_role("admin"):
            raise Forbidden("only an admin makes a sign-in link for someone else")
        token, expires = await store.awrite(
            signin.create_link,
            data.person_id,
            principal.actor,
            now_ms=clock.now_ms(),
            next_path=data.next,
        )
        return ConsoleLink(
            url=signin.link_url(settings.base_url, token), expires_at=iso_ms(expires)
        )

    @get(
        "/sessions",
        summary="Console sessions: all of them for an admin, one's own otherwise",
        responses=error_responses(403),
    )
    async def list_sessions(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
    ) -> ConsoleSessionPage:
        person_id = None if principal.has_role("admin") else principal.person_id
        items = await store.aread(
            signin.list_sessions, person_id=person_id, now_ms=clock.now_ms(), limit=500
        )
        return ConsoleSessionPage(items=items)

    @post(
        "/sessions/{session_id:str}/revoke",
        status_code=200,
        summary="End a console session (an admin any, a person their own), like revoking a phone",
        responses=error_responses(400, 403, 404, 503),
    )
    async def revoke_session(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        session_id: PathId,
    ) -> ConsoleSession:
        return await store.awrite(
            signin.revoke_session, principal, session_id, now_ms=clock.now_ms()
        )


CONTROLLERS: list[type] = [ConsoleLinkController]

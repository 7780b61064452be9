"""Signing in and out of the console, and the person's own devices and sessions.

``GET /console/login/<token>`` only shows the page (a chat app that previews the link does not
use it up); its button POSTs, which uses the link once and starts the session."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import PathParameter, QueryParameter
from litestar.response import Redirect, Template

from gridsync import auth, signin
from gridsync.api.console.base import (
    NEXT_COOKIE,
    SESSION_COOKIE,
    Viewer,
    form_of,
    page,
    same_origin,
    secure,
    see_other,
    session_cookie,
)
from gridsync.api.params import PathId
from gridsync.clock import Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import Store

LinkToken = Annotated[str, PathParameter(min_length=8, max_length=100)]
NextQuery = Annotated[str | None, QueryParameter(max_length=500)]
ReasonQuery = Annotated[str | None, QueryParameter(max_length=40)]


class SignInController(Controller):
    path = "/console"
    include_in_schema = False

    @get("/signin")
    async def signin_page(
        self,
        request: Request,
        next_path: Annotated[str | None, QueryParameter(name="next", max_length=500)] = None,
        reason: ReasonQuery = None,
    ) -> Template:
        """How to get a link; remembers the page asked for, where the next link lands."""
        response = page("signin.html", None, "", reason=reason or "")
        target = signin.safe_next(next_path)
        if target:
            response.set_cookie(
                NEXT_COOKIE,
                target,
                path="/console",
                httponly=True,
                secure=secure(request),
                samesite="lax",
                max_age=3600,
            )
        return response

    @get("/login/{token:str}")
    async def login_page(
        self, store: NamedDependency[Store], clock: NamedDependency[Clock], token: LinkToken
    ) -> Template:
        person_id = await store.aread(signin.check_link, token, now_ms=clock.now_ms())
        return page("login.html", None, "", token=token, person_id=person_id)

    @post("/login/{token:str}", status_code=303)
    async def login(
        self,
        request: Request,
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        token: LinkToken,
    ) -> Redirect:
        same_origin(request)
        opened = await store.awrite(
            signin.open_link,
            token,
            now_ms=clock.now_ms(),
            session_hours=settings.console_session_hours,
            user_agent=request.headers.get("user-agent", ""),
        )
        target = (
            opened.next_path or signin.safe_next(request.cookies.get(NEXT_COOKIE)) or "/console"
        )
        response = see_other(target)
        response.set_cookie(
            session_cookie(request, opened.token, settings.console_session_hours * 3600)
        )
        response.delete_cookie(NEXT_COOKIE, path="/console")
        return response


class AccountController(Controller):
    path = "/console/account"
    include_in_schema = False

    @get("/")
    async def account(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
    ) -> Template:
        me = viewer.principal.person_id
        devices, _ = await store.aread(auth.list_devices, person_id=me, limit=100)
        sessions = await store.aread(signin.list_sessions, person_id=me, now_ms=clock.now_ms())
        return page(
            "account.html",
            viewer,
            "account",
            devices=devices,
            sessions=sessions,
            current=signin.session_id_of(viewer.principal),
            now=iso_ms(clock.now_ms()),
        )

    @post("/sessions/{session_id:str}/revoke", status_code=303)
    async def revoke(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        session_id: PathId,
    ) -> Redirect:
        await form_of(request, viewer)
        await store.awrite(
            signin.revoke_session, viewer.principal, session_id, now_ms=clock.now_ms()
        )
        if session_id == signin.session_id_of(viewer.principal):
            return _signed_out()
        return see_other("/console/account")

    @post("/signout", status_code=303)
    async def signout(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
    ) -> Redirect:
        await form_of(request, viewer)
        session_id = signin.session_id_of(viewer.principal)
        assert session_id is not None
        await store.awrite(
            signin.revoke_session, viewer.principal, session_id, now_ms=clock.now_ms()
        )
        return _signed_out()


def _signed_out() -> Redirect:
    response = see_other("/console/signin?reason=signed_out")
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response

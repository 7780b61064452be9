"""What every console page shares: who is signed in (the session cookie -> the same
``Principal`` a device token gives), the CSRF check of every form, the navigation, rendering,
and errors shown as pages with the status and code the REST API answers.

Extension points for the next pages (覆盖, 抽检, 人员与设备, 审计): one controller module per
page in this package, its entry in :data:`NAV`, its controller in ``PAGES``
(``gridsync/api/console/__init__.py``), its template extending ``base.html``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import msgspec
from litestar import MediaType, Request, Response
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, NotAuthorizedException
from litestar.response import Redirect, Template
from litestar.types import ExceptionHandlersMap

from gridsync import signin
from gridsync.api.deps import scope_cache
from gridsync.api.errors import STATUS_CODES, internal_error
from gridsync.auth import Principal
from gridsync.clock import Clock
from gridsync.coverage.assignments import ASSIGNER_ROLES
from gridsync.coverage.labels import KIND_LABELS, TAG_LABELS
from gridsync.db import Store
from gridsync.errors import Forbidden, GridsyncError, Invalid, Unauthorized
from gridsync.notify import outbox

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

SESSION_COOKIE = "gs_session"
NEXT_COOKIE = "gs_next"  # the page asked for when the session had ended
CSRF_FIELD = "csrf"
LOCALE = "zh-CN"


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    href: str
    roles: tuple[str, ...] = ()  # shown only to these roles (empty: everyone)


# The console's navigation, in order. Another page adds its item here.
NAV: list[NavItem] = [
    NavItem("today", "今日", "/console"),
    NavItem("cases", "案件", "/console/cases"),
    NavItem("households", "住户", "/console/households"),
    # issue 16, part 2 (h16-pages); the report roles are the API's (api/coverage.REPORT_ROLES)
    NavItem("coverage", "覆盖", "/console/coverage", ASSIGNER_ROLES),
    NavItem("checks", "抽检", "/console/checks", ASSIGNER_ROLES),
    NavItem("inbox", "通知", "/console/inbox"),
    NavItem("admin", "人员与设备", "/console/admin/people", ("admin",)),
    NavItem("audit", "审计", "/console/audit", ("admin",)),
]


@dataclass(frozen=True)
class Viewer:
    """The signed-in person of a console request."""

    principal: Principal
    csrf: str
    name: str

    @property
    def nav(self) -> list[NavItem]:
        return [n for n in NAV if not n.roles or self.principal.has_role(*n.roles)]


class SignInRequired(Exception):
    """No live session: the page asks for a new link, then lands where it was asked for."""

    def __init__(self, next_path: str, code: str):
        super().__init__(code)
        self.next_path = next_path
        self.code = code


def secure(request: Request) -> bool:
    """Cookies are ``Secure`` behind TLS (uvicorn takes the scheme from the proxy's
    X-Forwarded-Proto, deploy/nginx.conf)."""
    return request.url.scheme == "https"


def session_cookie(request: Request, value: str, max_age: int) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=value,
        path="/console",
        httponly=True,
        secure=secure(request),
        samesite="lax",
        max_age=max_age,
    )


def requested_path(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return signin.safe_next(path)


async def provide_viewer(
    request: Request, store: NamedDependency[Store], clock: NamedDependency[Clock]
) -> Viewer:
    """The signed-in person, or :class:`SignInRequired` (a redirect to the sign-in page)."""
    token = request.cookies.get(SESSION_COOKIE)
    try:
        principal = await store.aread(
            signin.authenticate_session, token, scope_cache(store), now_ms=clock.now_ms()
        )
    except Unauthorized as exc:
        raise SignInRequired(requested_path(request), exc.code) from None
    session_id = signin.session_id_of(principal)
    assert session_id is not None and token is not None
    await store.awrite(signin.touch, session_id, clock.now_ms())
    person = await store.aread(_person_name, principal.person_id)
    viewer = Viewer(principal=principal, csrf=signin.csrf_token(token), name=person)
    request.state.console_viewer = viewer  # error pages keep the navigation
    return viewer


def _person_name(db: Any, person_id: str) -> str:
    return names_of(db, {person_id}, set()).get(person_id, person_id)


def same_origin(request: Request) -> None:
    """A POST from a page of another site is refused (``403 csrf_failed``): the ``Origin``
    header, which browsers send with every POST, must name this host when it is there. For the
    sign-in button, which has no session (and so no CSRF token) yet, this keeps another site
    from signing a browser in as someone else."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        # host names only: a proxy's Host may leave the port out (nginx's $host)
        host = urlsplit(origin).hostname
        if host != urlsplit("//" + request.headers.get("host", "")).hostname:
            raise Forbidden("this form was sent from another site", code="csrf_failed")


async def form_of(request: Request, viewer: Viewer) -> dict[str, str]:
    """A form's fields, after its CSRF token is checked (``403 csrf_failed`` without it, before
    any work); empty fields are left out, so a wire type's defaults apply."""
    same_origin(request)
    form = await request.form()
    token = request.cookies.get(SESSION_COOKIE) or ""
    if not signin.csrf_ok(token, form.get(CSRF_FIELD)):
        raise Forbidden(
            "this form has no valid CSRF token: reload the page and send it again",
            code="csrf_failed",
        )
    return {k: str(v) for k, v in form.items() if k != CSRF_FIELD and str(v).strip() != ""}


def wire(data: dict[str, Any], wire_type: type[Any]) -> Any:
    """A form decoded into the API's wire type: the same bounds, checked before any work."""
    try:
        return msgspec.convert(data, wire_type, strict=False)
    except msgspec.ValidationError as exc:
        raise Invalid(str(exc)) from None


def labels() -> dict[str, Any]:
    """The Chinese names of levels, states, deadlines and actions (one table with the
    notification texts: notify/templates/zh-CN/labels.json), and of service kinds and tags
    (the reports' table: coverage/labels.py)."""
    return {
        **outbox.labels(LOCALE),
        "kind": KIND_LABELS["zh"],
        "tag": TAG_LABELS["zh"],
        "field": FIELD_LABELS,
    }


# The household fields a conflict may name, as a secretary reads them.
FIELD_LABELS = {
    "phone": "电话",
    "head_name": "户主",
    "notes": "备注",
    "size": "人数",
    "building": "楼栋",
    "unit": "单元",
    "room": "房号",
    "grid_id": "网格",
    "status": "状态",
}


def names_of(db: Any, person_ids: set[str], unit_ids: set[str]) -> dict[str, str]:
    """Display names of people and units by id (an id nobody has stays as it is); read with
    the org's own functions."""
    from gridsync import org
    from gridsync.errors import NotFound

    out: dict[str, str] = {}
    for pid in person_ids:
        try:
            out[pid] = org.get_person(db, pid).name
        except NotFound:
            pass
    for uid in unit_ids:
        try:
            out[uid] = org.get_unit(db, uid).name
        except NotFound:
            pass
    return out


def page(
    name: str, viewer: Viewer | None, active: str, status_code: int = 200, **context: Any
) -> Template:
    return Template(
        template_name=name,
        context={"viewer": viewer, "active": active, "L": labels(), **context},
        status_code=status_code,
        media_type=MediaType.HTML,
    )


def see_other(path: str) -> Redirect:
    return Redirect(path=path, status_code=303)


# -- errors as pages ---------------------------------------------------------------------------

TITLES = {
    400: "输入有误",
    401: "需要登录",
    403: "无权操作",
    404: "未找到",
    409: "无法执行",
    413: "内容过大",
    503: "请重试",
}


def error_page(request: Request, status: int, body: dict[str, Any]) -> Response:
    viewer = getattr(request.state, "console_viewer", None)
    return page(
        "error.html",
        viewer,
        "",
        status_code=status,
        title=TITLES.get(status, "出错了"),
        status=status,
        body=body,
    )


def on_domain_error(request: Request, exc: GridsyncError) -> Response:
    """A refusal on a page: the status and ``{code, message}`` the REST API answers."""
    if exc.status >= 500:
        from gridsync.api.errors import domain_error

        return domain_error(request, exc)
    return error_page(request, exc.status, exc.body())


def on_http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if status >= 500:
        return internal_error(request, exc)
    if isinstance(exc, NotAuthorizedException):
        status = 401
    code = "validation_error" if status == 400 else STATUS_CODES.get(status, f"http_{status}")
    return error_page(request, status, {"code": code, "message": exc.detail})


def on_sign_in_required(request: Request, exc: SignInRequired) -> Response:
    target = "/console/signin?reason=" + quote(exc.code)
    if exc.next_path:
        target += "&next=" + quote(exc.next_path, safe="")
    response = Redirect(path=target, status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/console")
    return response


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    SignInRequired: on_sign_in_required,
    GridsyncError: on_domain_error,
    HTTPException: on_http_error,
}

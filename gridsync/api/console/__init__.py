"""The web console at /console (issue 16): server-rendered Chinese pages for secretaries and
admins, served by the same app. Pages call the same domain functions as the REST API, with the
same principal (a console session resolves to one, ``gridsync/signin.py``), so scope, masking,
audit and refusal codes are the API's. No CDN, no build step: templates and the one CSS and JS
file are in this package.

One controller module per page; :data:`PAGES` lists them and ``base.NAV`` their navigation."""

from __future__ import annotations

from litestar import Router
from litestar.di import Provide
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from gridsync.api.console.account import AccountController, SignInController
from gridsync.api.console.admins import AdminsController
from gridsync.api.console.audit import AuditController
from gridsync.api.console.base import EXCEPTION_HANDLERS, STATIC, TEMPLATES, provide_viewer
from gridsync.api.console.cases import CasesController
from gridsync.api.console.checks import ChecksController
from gridsync.api.console.coverage import CoverageController
from gridsync.api.console.households import HouseholdsController
from gridsync.api.console.inbox import InboxController
from gridsync.api.console.today import TodayController
from gridsync.clock import parse_ms
from gridsync.notify import outbox

# Pages behind a session (each gets ``viewer``); another page adds its controller here.
PAGES: list[type] = [
    TodayController,
    CasesController,
    HouseholdsController,
    AccountController,
    # issue 16, part 2 (h16-pages)
    CoverageController,
    ChecksController,
    InboxController,
    AdminsController,
    AuditController,
]


def router() -> Router:
    return Router(
        path="/",
        route_handlers=[
            SignInController,
            *PAGES,
            create_static_files_router(
                path="/console/static",
                directories=[STATIC],
                include_in_schema=False,
                cache_control=None,
            ),
        ],
        dependencies={"viewer": Provide(provide_viewer)},
        exception_handlers=EXCEPTION_HANDLERS,
        include_in_schema=False,
    )


def template_config(timezone: str) -> TemplateConfig:
    """Jinja templates of this package, with ``|local`` (an ISO time as the wall time in the
    settings' zone, "12-06 09:31"; ``|local("%Y-%m-%d")`` for another format)."""
    from litestar.plugins.jinja import JinjaTemplateEngine

    def local(value: str | None, fmt: str = "%m-%d %H:%M") -> str:
        if not value:
            return ""
        try:
            return outbox.local(parse_ms(value), timezone, fmt)
        except (ValueError, OverflowError):
            return value

    def setup(engine: JinjaTemplateEngine) -> None:
        engine.engine.filters["local"] = local

    return TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine, engine_callback=setup)

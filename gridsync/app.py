"""create_app(): routers, lifespan, plugins, exception handlers. Nothing else."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.config.compression import CompressionConfig
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme

import gridsync
from gridsync import coverage
from gridsync.api import console
from gridsync.api import coverage as coverage_api
from gridsync.api import docs as docs_api
from gridsync.api import hotline as hotline_api
from gridsync.api import records as records_api
from gridsync.api import reports as reports_api
from gridsync.api import signin as signin_api
from gridsync.api import sync as sync_api
from gridsync.api import whistle as whistle_api
from gridsync.api.deps import TokenAuthMiddleware, provide_principal
from gridsync.api.devices import DeviceController
from gridsync.api.errors import EXCEPTION_HANDLERS, BodyRequest
from gridsync.api.health import HEALTH_HANDLERS, MetricsController
from gridsync.api.observe import RequestObserver
from gridsync.api.org import HouseholdController, MeController, OrgUnitController, PeopleController
from gridsync.audit import Actor
from gridsync.backup import ServerLock
from gridsync.clock import SYSTEM_CLOCK, Clock
from gridsync.config import Settings, load_settings
from gridsync.db import Store
from gridsync.health import ReadinessProbe
from gridsync.metrics import Metrics, serve_on
from gridsync.org import Scope

API_CONTROLLERS = [
    MeController,
    OrgUnitController,
    PeopleController,
    HouseholdController,
    DeviceController,
    *sync_api.CONTROLLERS,
    *coverage_api.CONTROLLERS,
    *whistle_api.CONTROLLERS,
    *reports_api.CONTROLLERS,
    *records_api.CONTROLLERS,
    *signin_api.CONTROLLERS,
    *hotline_api.CONTROLLERS,
    MetricsController,
]


SERVER = Actor(person_id=None, device_id="server")
DISTRICT = Scope("server", True, frozenset(), frozenset(), 0)
log = logging.getLogger("gridsync.app")


async def _warm_up(store: Store, settings: Settings, clock: Clock) -> None:
    """The district's coverage roll-up once, on a worker thread, before the first request: it
    brings the coverage indexes into the OS cache and the read path's code into use, so that
    the first coverage call after a restart costs about what a warm one does (``python -m
    bench coldstart``: 2.26x before, 1.07x with this and the digests' delay, see
    ``Settings.digests_after_start_seconds``). Never fatal: a database it cannot roll up still
    serves."""
    try:
        await store.aread(coverage.rollup, settings, DISTRICT, None, now_ms=clock.now_ms())
    except Exception:
        log.warning("coverage warm-up failed; serving anyway", exc_info=True)


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    clock: Clock = SYSTEM_CLOCK,
    run_periodic: bool | None = None,
) -> Litestar:
    """The ASGI app. Pass ``store`` to share one with the caller (tests); otherwise the app opens
    ``settings.db`` at startup and closes it at shutdown."""
    settings = settings or load_settings()
    owned = store is None
    metrics = Metrics(
        lambda: (getattr(app.state, "store", None), getattr(app.state, "periodic", None)),
        clock.now_ms,
    )
    # Periodic work (deadline checks, digests, outbox delivery): on in `gridsync serve` (the app
    # owns its store), off when a test passes its own store unless it asks (run_periodic=True).
    periodic = owned if run_periodic is None else run_periodic

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        if owned:
            # held while serving: `gridsync restore` refuses to run under a server (backup.py)
            app.state.server_lock = ServerLock(settings.db).hold_shared()
            app.state.store = Store(
                settings.db,
                synchronous=settings.synchronous,
                wal_autocheckpoint=settings.wal_autocheckpoint,
            )
        stop_metrics = (
            serve_on(metrics, settings.metrics_listen) if settings.metrics_listen else None
        )
        # the configured district coverage default, as phones receive it in `policy` changes
        await app.state.store.awrite(coverage.publish_default, settings.coverage, SERVER)
        if owned:
            await _warm_up(app.state.store, settings, clock)
        worker = None
        if periodic:
            from gridsync.sweep import PeriodicWorker

            worker = PeriodicWorker(app.state.store, settings, clock)
            worker.start()
        app.state.periodic = worker
        # Move what startup built (modules, routes, the app) out of the cyclic GC's reach: its
        # full passes then walk request garbage only (+40-60% on 1,000-mutation pushes).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            if worker is not None:
                await worker.stop()
            if owned:
                app.state.store.close()
                app.state.server_lock.release()

    api = Router(
        path="/",
        route_handlers=API_CONTROLLERS,
        middleware=[TokenAuthMiddleware],
        dependencies={"principal": Provide(provide_principal, sync_to_thread=False)},
        security=[{"BearerToken": []}],
    )
    app = Litestar(
        route_handlers=[api, *HEALTH_HANDLERS, docs_api.assets_router(), console.router()],
        template_config=console.template_config(settings.timezone),
        dependencies={
            "store": Provide(lambda: app.state.store, sync_to_thread=False),
            "settings": Provide(lambda: settings, sync_to_thread=False),
            "clock": Provide(lambda: clock, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        request_class=BodyRequest,  # undecodable bodies are 400 malformed_body
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(
            title="gridsync",
            version=gridsync.__version__,
            description="Offline-sync backend for grid-based neighbourhood governance.",
            path="/schema",
            render_plugins=[docs_api.render_plugin()],  # assets served here: works offline
            components=Components(
                security_schemes={
                    "BearerToken": SecurityScheme(
                        type="http", scheme="bearer", description="a device token from enrolment"
                    ),
                }
            ),
        ),
        request_max_body_size=8 * 1024 * 1024,
        # Phones are on poor networks: gzip responses when asked (SPEC 3, 8).
        compression_config=CompressionConfig(backend="gzip", minimum_size=256),
        debug=False,
        # gridsync logs through its own handlers (gridsync/logs.py: request ids, JSON lines);
        # Litestar's default config would start a queue-listener thread per app, never stopped.
        logging_config=None,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.periodic = None
    app.state.readiness = ReadinessProbe(settings)
    app.state.metrics = metrics
    # outermost: request ids, the access log and HTTP metrics see every request (observe.py)
    app.asgi_handler = RequestObserver(app.asgi_handler, metrics)
    if store is not None:
        app.state.store = store
    return app

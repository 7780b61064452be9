"""``/healthz``, ``/readyz`` (no token: load balancers and systemd probe them) and ``/metrics``
(an admin's token; or without one on ``metrics_listen``, see gridsync/metrics.py).

``/healthz`` answers as long as the event loop does; ``/readyz`` runs the checks of
gridsync/health.py and answers 503 with the failing ones named."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Response, get

from gridsync.api.errors import error_responses
from gridsync.auth import Principal
from gridsync.health import ReadinessProbe
from gridsync.metrics import CONTENT_TYPE_LATEST, Metrics


@get("/healthz", include_in_schema=False, sync_to_thread=False)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> Response[dict[str, Any]]:
    state = request.app.state
    probe: ReadinessProbe = state.readiness
    result = await probe.check(state.store, state.periodic, state.clock.now_ms())
    return Response(result.as_dict(), status_code=200 if result.ready else 503)


class MetricsController(Controller):
    path = "/metrics"
    tags = ["operations"]

    @get(
        "/",
        summary="Prometheus metrics (admins; README 'Operations' lists them)",
        media_type=CONTENT_TYPE_LATEST,
        responses=error_responses(403),
    )
    async def metrics(self, request: Request[Principal, Any, Any]) -> Response[bytes]:
        request.user.require_role("admin")
        registry: Metrics = request.app.state.metrics
        body = await anyio.to_thread.run_sync(registry.render)
        return Response(body, media_type=CONTENT_TYPE_LATEST)


HEALTH_HANDLERS = [healthz, readyz]

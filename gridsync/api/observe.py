"""The request id, the access log line and the HTTP metrics of every request.

:class:`RequestObserver` wraps the whole ASGI handler of the app (``create_app`` sets it around
``app.asgi_handler``), outside Litestar's routing, exception handlers and gzip: so it sees every
request, unmatched paths included, with the status and the bytes that really went on the wire.
Litestar's ``middleware=`` would run per route only, after routing, and miss the 404s.

- Request id: the client's ``X-Request-ID`` when it is 1-128 characters of ``[A-Za-z0-9._:-]``,
  otherwise a new random id; it is in ``gridsync.logs.request_id`` for the request's task, in
  ``scope["state"]["request_id"]``, and echoed in the response's ``X-Request-ID`` header.
- Access log: one INFO line on the ``gridsync.access`` logger per request: method, path (no
  query string: cursors and filters stay out of logs), status, milliseconds, device, bytes.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, ReceiveMessage, Scope, Send

from gridsync import logs
from gridsync.metrics import Metrics

HEADER = b"x-request-id"
_SAFE_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

access_log = logging.getLogger("gridsync.access")


def incoming_or_new(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == HEADER and _SAFE_ID.fullmatch(value):
            return value.decode()
    return secrets.token_hex(8)


class RequestObserver:
    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        rid = incoming_or_new(scope)
        token = logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        method, path = scope["method"], scope["path"]
        started = time.perf_counter()
        counts = {"in": 0, "out": 0, "status": 500}

        async def counting_receive() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.request":
                counts["in"] += len(message.get("body", b""))
            return message

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                counts["status"] = message["status"]
                headers = [*message.get("headers", ()), (HEADER, rid.encode())]
                message = message.copy()  # a new message: the one given is left as it was
                message["headers"] = headers
            elif message["type"] == "http.response.body":
                counts["out"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, observed_send)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            user: Any = scope.get("user")
            device = getattr(user, "device_id", None) or "-"
            status = counts["status"]
            if access_log.isEnabledFor(logging.INFO):
                _access_line(rid, method, path, status, seconds, device, counts)
            self.metrics.observe_request(
                route, method, status, seconds, counts["in"], counts["out"]
            )
            logs.request_id.reset(token)


def _access_line(
    rid: str,
    method: str,
    path: str,
    status: int,
    seconds: float,
    device: str,
    counts: dict[str, int],
) -> None:
    access_log.info(
        "%s %s %s %.1fms device=%s in=%d out=%d",
        method,
        path,
        status,
        seconds * 1000,
        device,
        counts["in"],
        counts["out"],
        extra={
            "method": method,
            "path": path,
            "status": status,
            "ms": round(seconds * 1000, 1),
            "device": device,
            "bytes_in": counts["in"],
            "bytes_out": counts["out"],
            "request_id": rid,
        },
    )

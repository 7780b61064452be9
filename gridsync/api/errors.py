"""One error shape everywhere: ``{"code", "message"}`` plus ``field`` for validation errors and
any extra keys a domain error carries (``expected_seq``, ``wipe``, ``drain``, ...)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.types import ExceptionHandlersMap

from gridsync import logs
from gridsync.errors import GridsyncError

log = logging.getLogger("gridsync.api")

STATUS_CODES = {
    400: "malformed_body",  # bodies that do not decode; validation errors get their own code
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    426: "upgrade_required",
    429: "too_many_requests",
}


class BodyRequest(Request):
    """The app's request class: a body that does not decode is ``400 malformed_body`` whatever
    the reason. Litestar maps msgspec's DecodeError (bad syntax) to a 400 through
    SerializationException, but invalid UTF-8 raises UnicodeDecodeError and nesting beyond
    Python's recursion limit RecursionError, which came out as 500s (issue 12)."""

    async def json(self) -> Any:
        try:
            return await super().json()
        except (UnicodeDecodeError, RecursionError) as exc:
            raise SerializationException(_undecodable("JSON", exc)) from None

    async def msgpack(self) -> Any:
        try:
            return await super().msgpack()
        except (UnicodeDecodeError, RecursionError) as exc:
            raise SerializationException(_undecodable("MessagePack", exc)) from None


def _undecodable(fmt: str, exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return f"malformed {fmt} body: nested too deeply"
    return f"malformed {fmt} body: not UTF-8 ({exc})"


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return Response(content=body, status_code=status, media_type=MediaType.JSON, headers=headers)


def _server_side(request: Request, exc: Exception, status: int, body: dict[str, Any]) -> None:
    """A 5xx: log its traceback with the request id and put the id in the body, so that a
    user's report ("it said request_id ...") leads to the log line (gridsync/logs.py)."""
    rid = logs.request_id.get()
    log.error(
        "%s on %s %s (request %s)",
        status,
        request.method,
        request.url.path,
        rid,
        exc_info=exc,
    )
    if rid is not None:
        body["request_id"] = rid


def domain_error(request: Request, exc: GridsyncError) -> Response:
    body = exc.body()
    if exc.status >= 500:
        _server_side(request, exc, exc.status, body)
    return _json(exc.status, body)


def _validation_field(extra: Any) -> str | None:
    if isinstance(extra, list) and extra and isinstance(extra[0], dict):
        key = extra[0].get("key")
        return str(key) if key is not None else None
    return None


def http_error(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    body: dict[str, Any] = {
        "code": STATUS_CODES.get(status, f"http_{status}"),
        "message": exc.detail,
    }
    if isinstance(exc, ValidationException):
        body["code"] = "validation_error"
        field = _validation_field(exc.extra)
        if field is not None:
            body["field"] = field
        details = exc.extra if isinstance(exc.extra, list) else []
        messages = [d.get("message") for d in details if isinstance(d, dict) and d.get("message")]
        if messages:
            body["message"] = f"{exc.detail}: {messages[0]}"
    if status >= 500:
        _server_side(request, exc, status, body)
    return _json(status, body, headers=exc.headers)


def internal_error(request: Request, exc: Exception) -> Response:
    body: dict[str, Any] = {
        "code": "internal_error",
        "message": "internal server error (a bug): it has been logged",
    }
    _server_side(request, exc, 500, body)
    return _json(500, body)


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    GridsyncError: domain_error,
    HTTPException: http_error,
    Exception: internal_error,
}


# What each error status means in this API, by the codes its body may carry. The OpenAPI
# document gives every operation's error statuses these descriptions and the ErrorBody schema.
ERROR_STATUSES: dict[int, str] = {
    400: "validation_error (the parameter or body field at fault is in `field`), "
    "malformed_body (a body that does not decode) or check_empty (no household to check)",
    401: "no usable token: unauthorized (missing), invalid_token, person_inactive; "
    "device_revoked with `wipe: true` (the phone wipes what it holds)",
    403: "forbidden (a role this needs), out_of_scope, check_forbidden (a check asked for by "
    "its assessed unit's own people, or from below it), or device_draining with `drain: true` "
    "(a device revoked with drain: it may push once, then wipe)",
    404: "not_found (or case_not_found): it does not exist, or not within the caller's scope",
    409: "the stored state refuses it; the code says how (e.g. seq_gap with `expected_seq`, "
    "last_admin_device, kind_change, over_cap, case_exists, illegal_transition)",
    413: "payload_too_large: the message states the limits",
    415: "unsupported_media_type: send JSON (or msgpack where it is accepted)",
    426: "unsupported_schema: the X-Gridsync-Schema this server does not speak; upgrade the app",
    503: "retry: another write of the same commit ended it; nothing was stored, send the same "
    "request again",
}


def error_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI ``responses`` for the error statuses a route answers, each with the ErrorBody
    schema (Litestar's own 400 shape, ``{status_code, detail}``, is never sent: a route with
    parameters must list 400 here to replace it). 401 is always added: every operation in the
    document is behind the bearer token (``/healthz``, ``/readyz`` and the docs are not in it).

    What a route lists is checked twice: ``tests/test_openapi_errors.py`` reads the document
    (ErrorBody everywhere, 403 wherever a draining device is refused, 400 wherever there is a
    parameter, 413 and 503 with every body and write), and ``tests/test_schemathesis.py`` calls
    every operation and fails on a status the document does not name."""
    from litestar.openapi.datastructures import ResponseSpec

    from gridsync.models import ErrorBody

    unknown = set(statuses) - ERROR_STATUSES.keys()
    if unknown:
        raise ValueError(f"no description of status {sorted(unknown)}: add it to ERROR_STATUSES")
    return {
        status: ResponseSpec(
            data_container=ErrorBody,
            description=ERROR_STATUSES[status],
            generate_examples=False,
        )
        for status in sorted({401, *statuses})
    }

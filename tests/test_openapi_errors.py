"""The OpenAPI document names every error status an operation answers, in the shape it is sent
(``ErrorBody``: ``{code, message, field?, ...}``), never Litestar's own ``{status_code, detail}``
(issue 15). Each route lists its statuses (``api/errors.error_responses``); these tests hold
the lists to the rules that make a status possible, read from the route itself.
``tests/test_schemathesis.py`` calls every operation and fails on a status not documented."""

from __future__ import annotations

import inspect

import pytest
from litestar.routes import HTTPRoute

from gridsync.api.deps import WHILE_DRAINING
from gridsync.api.errors import ERROR_STATUSES
from gridsync.app import create_app
from gridsync.config import Settings

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    return create_app(Settings(db=str(tmp_path_factory.mktemp("openapi") / "gridsync.db")))


@pytest.fixture(scope="module")
def document(app):
    return app.openapi_schema.to_schema()


def operations(app, document):
    """(label, the operation in the document, its route handler), for every operation."""
    found = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            for method in handler.http_methods:
                op = document["paths"].get(route.path_format, {}).get(method.lower())
                if op is not None:
                    found.append((f"{method} {route.path_format}", op, handler))
    return found


def test_the_document_lists_every_operation(app, document):
    listed = sum(
        1
        for item in document["paths"].values()
        for m in item
        if m in ("get", "put", "post", "delete")
    )
    assert len(operations(app, document)) == listed >= 35


def test_every_error_response_is_an_error_body(app, document):
    wrong = []
    for label, op, _ in operations(app, document):
        for status, response in op["responses"].items():
            if int(status) < 400:
                continue
            schema = response.get("content", {}).get("application/json", {}).get("schema")
            if schema != ERROR_REF or response["description"] != ERROR_STATUSES[int(status)]:
                wrong.append(f"{label} {status}: {response}")
    assert not wrong, "\n".join(wrong)
    assert "status_code" not in str(document["paths"])  # Litestar's default error shape


def _statuses(op) -> set[int]:
    return {int(s) for s in op["responses"]}


def _writes(handler) -> bool:
    """Every write goes through Store.awrite, called by the controller (STYLE: controllers
    call the domain, the domain never opens the store)."""
    return ".awrite(" in inspect.getsource(handler.fn)


RULES = {
    # the token middleware: no token, an unknown one, a revoked device
    401: lambda op, handler: True,
    # a parameter or a body that does not validate or decode
    400: lambda op, handler: bool(op.get("parameters") or op.get("requestBody")),
    # a body over Litestar's request_max_body_size (the push: over max_push_bytes)
    413: lambda op, handler: "requestBody" in op,
    # a write whose commit group was rolled back by another write: send it again
    503: lambda op, handler: _writes(handler),
    # the sync schema header
    426: lambda op, handler: any(
        p["name"] == "X-Gridsync-Schema" for p in op.get("parameters", [])
    ),
}


@pytest.mark.parametrize("status", sorted(RULES))
def test_a_status_is_documented_exactly_where_it_can_happen(app, document, status):
    rule = RULES[status]
    missing, extra = [], []
    for label, op, handler in operations(app, document):
        can, says = rule(op, handler), status in _statuses(op)
        if can and not says:
            missing.append(label)
        if says and not can:
            extra.append(label)
    assert not missing, f"{status} can happen but is not documented: {missing}"
    assert not extra, f"{status} is documented but cannot happen: {extra}"


def test_403_is_documented_wherever_a_draining_device_is_refused(app, document):
    """Every route but the push and the sync status refuses a draining device (403
    device_draining); the status route has no other 403."""
    for label, op, handler in operations(app, document):
        draining_allowed = bool(handler.opt.get(WHILE_DRAINING))
        if not draining_allowed:
            assert 403 in _statuses(op), label
    status = document["paths"]["/api/v1/sync/status"]["get"]
    assert 403 not in _statuses(status)


def test_a_body_over_the_limit_is_413_in_the_documented_shape(client, tiny):
    """413 on a route whose body Litestar reads (8 MiB, app.py), as documented."""
    response = client.put(
        "/api/v1/org-units/g9",
        content=b'{"kind": "grid", "name": "' + b"x" * (9 * 1024 * 1024) + b'"}',
        headers={"Authorization": f"Bearer {tiny.tokens['admin']}"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "payload_too_large"
    assert set(response.json()) <= {"code", "message", "field"}


def test_the_export_documents_each_format(document):
    content = document["paths"]["/api/v1/exports/coverage"]["get"]["responses"]["200"]["content"]
    assert set(content) == {
        "text/csv",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/json",
    }

"""A REST body that does not decode is ``400 malformed_body`` with a message, on every endpoint
that takes one (issue 12): invalid UTF-8 and absurd nesting came out as 500s, because msgspec
raises UnicodeDecodeError and RecursionError for them rather than the DecodeError Litestar maps.
The endpoints are read from the app, so a new one is covered the day it is added."""

from __future__ import annotations

import re

import pytest
from litestar.params import BodyKwarg

from gridsync.app import create_app
from gridsync.config import Settings
from tests.conftest import bearer


def body_routes() -> list[tuple[str, str]]:
    """(method, path) of every gridsync route handler with a request body."""
    found = []
    for route in create_app(Settings(db=":memory:")).routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is None or not isinstance(data.kwarg_definition, BodyKwarg | None):
                continue
            if not handler.fn.__module__.startswith("gridsync."):
                continue
            for method in sorted(handler.http_methods):
                path = re.sub(r"\{(\w+):int\}", "1", route.path)
                found.append((method, re.sub(r"\{(\w+):\w+\}", "x1", path)))
    return sorted(set(found))


BODY_ROUTES = body_routes()
HOSTILE = {
    "invalid utf-8": b'{"name": "\xff\xfe", "note": "\xc3\x28"}',
    "nested 100000 deep": b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "a lone surrogate": b'{"name": "\\ud800"}',
}


def test_every_body_route_is_covered():
    assert len(BODY_ROUTES) >= 10, BODY_ROUTES
    assert ("PUT", "/api/v1/org-units/x1") in BODY_ROUTES


@pytest.mark.parametrize("method, path", BODY_ROUTES)
@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_an_undecodable_body_is_400_malformed_body(client, tiny, store, method, path, kind):
    before = store.read(lambda db: db.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    r = client.request(
        method,
        path,
        content=HOSTILE[kind],
        headers={**bearer(tiny.tokens["admin"]), "Content-Type": "application/json"},
    )
    assert r.status_code == 400, (r.status_code, r.text)
    assert r.json()["code"] == "malformed_body" and r.json()["message"]
    after = store.read(lambda db: db.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    assert after == before  # nothing written

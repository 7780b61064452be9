"""Bad input gets a 4xx with a machine-readable code and a message, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import bearer


def _assert_error(r, status, code, field=None):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if field is not None:
        assert body.get("field") == field, body


def test_malformed_json(client, tiny):
    r = client.post(
        "/api/v1/devices",
        headers={**bearer(tiny.tokens["admin"]), "Content-Type": "application/json"},
        content=b'{"person_id": "m1",',
    )
    _assert_error(r, 400, "malformed_body")


@pytest.mark.parametrize(
    "body, field",
    [
        ({"person_id": 7}, "person_id"),
        ({"person_id": ["m1"]}, "person_id"),
        ({"person_id": ""}, "person_id"),
        ({"label": "x"}, "person_id"),
        ({"person_id": "m1", "label": "x" * 101}, "label"),
    ],
)
def test_wrong_types(client, tiny, body, field):
    r = client.post("/api/v1/devices", headers=bearer(tiny.tokens["admin"]), json=body)
    _assert_error(r, 400, "validation_error")
    assert field in r.json()["message"] or r.json().get("field") == field


def test_unknown_fields_on_admin_endpoints(client, tiny):
    r = client.post(
        "/api/v1/devices",
        headers=bearer(tiny.tokens["admin"]),
        json={"person_id": "m1", "is_admin": True},
    )
    _assert_error(r, 400, "validation_error")
    assert "is_admin" in r.json()["message"]
    r = client.post(
        f"/api/v1/devices/{tiny.devices['m1']}/revoke",
        headers=bearer(tiny.tokens["admin"]),
        json={"reason": "x", "force": True},
    )
    _assert_error(r, 400, "validation_error")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/households",
        "/api/v1/people",
        "/api/v1/org-units",
        "/api/v1/devices",
        "/api/v1/households/hh-g1-1/visits",
    ],
)
@pytest.mark.parametrize(
    "params",
    [
        {"limit": "10000"},
        {"limit": "0"},
        {"limit": "abc"},
        {"offset": "-1"},
        {"offset": "99999999999999999999999"},
        {"offset": "9223372036854775808"},
    ],
)
def test_oversize_and_bad_pages(client, tiny, path, params):
    r = client.get(path, headers=bearer(tiny.tokens["admin"]), params=params)
    _assert_error(r, 400, "validation_error", field=next(iter(params)))


def test_bad_enum_query(client, tiny):
    r = client.get(
        "/api/v1/households", headers=bearer(tiny.tokens["admin"]), params={"status": "gone"}
    )
    _assert_error(r, 400, "validation_error", field="status")


def test_unknown_route_and_method(client, tiny):
    _assert_error(
        client.get("/api/v1/nothing-here", headers=bearer(tiny.tokens["m1"])), 404, "not_found"
    )
    _assert_error(client.get("/nothing"), 404, "not_found")
    _assert_error(
        client.delete("/api/v1/me", headers=bearer(tiny.tokens["m1"])), 405, "method_not_allowed"
    )


def test_enrol_unknown_person_and_taken_device_id(client, tiny):
    admin = bearer(tiny.tokens["admin"])
    _assert_error(
        client.post("/api/v1/devices", headers=admin, json={"person_id": "ghost"}), 404, "not_found"
    )
    _assert_error(
        client.post(
            "/api/v1/devices",
            headers=admin,
            json={"person_id": "m1", "device_id": tiny.devices["m2"]},
        ),
        400,
        "device_exists",
        field="device_id",
    )


def test_openapi_is_served(client):
    r = client.get("/schema/openapi.json")
    assert r.status_code == 200
    spec = r.json()
    assert "/api/v1/households" in spec["paths"]
    assert "BearerToken" in spec["components"]["securitySchemes"]
    page = client.get("/schema")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]


@pytest.mark.parametrize(
    "path, param",
    [
        ("/api/v1/whistle/report", "since"),
        ("/api/v1/whistle/report", "until"),
        ("/api/v1/coverage", "at"),
        ("/api/v1/coverage/violations", "at"),
        ("/api/v1/exports/coverage", "at"),
    ],
)
@pytest.mark.parametrize("value", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
def test_times_beyond_the_calendar_are_client_errors(client, tiny, path, param, value):
    """Valid ISO 8601 whose UTC instant falls outside years 1-9999 (it was a 500)."""
    r = client.get(path, headers=bearer(tiny.tokens["admin"]), params={param: value})
    _assert_error(r, 400, "validation_error", field=param)

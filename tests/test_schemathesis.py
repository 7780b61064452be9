"""schemathesis against the served OpenAPI spec, endpoint family by endpoint family, with a
valid token: zero 5xx and zero responses that violate the spec (bounded examples)."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.sync_helpers import SYNC


def operations(base_url, prefixes):
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    return [
        op for op in (r.ok() for r in schema.get_all_operations()) if op.path.startswith(prefixes)
    ]


def conform(base_url, headers, ops, examples, excluded_for=None):
    """Run every operation; collect every failure, then report them all. With
    ``excluded_for`` (op -> checks to skip) every schemathesis check runs; without it, only
    "no server error"."""
    failures = []
    for op in ops:
        excluded = excluded_for(op) if excluded_for else []

        @given(case=op.as_strategy())
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case):  # run at once below, so the loop variables are the current ones
            if excluded_for is None:
                r = case.call(base_url=base_url, headers=headers)
                assert r.status_code < 500, (
                    case.path_parameters,
                    case.query,
                    case.body,
                    r.text[:300],
                )
            else:
                case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=excluded)  # noqa: B023

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:700]}")
    return failures


def labels(ops):
    return {f"{op.method.upper()} {op.path}" for op in ops}


# Read and sync endpoints; the admin-only enrol/revoke are left to their own tests (a revoke
# would end the token under test).
SYNC_AND_READ = (
    "/api/v1/sync",
    "/api/v1/me",
    "/api/v1/org-units",
    "/api/v1/people",
    "/api/v1/households",
)


@pytest.mark.parametrize("person", ["sec", "m1"])
def test_sync_and_read_endpoints_conform_to_the_spec(served, tiny, person):
    headers = {**SYNC, "Authorization": f"Bearer {tiny.tokens[person]}"}
    ops = operations(served, SYNC_AND_READ)
    assert {
        "POST /api/v1/sync/push",
        "GET /api/v1/sync/pull",
        "GET /api/v1/sync/status",
        "GET /api/v1/sync/conflicts",
        "GET /api/v1/households",
    } <= labels(ops)
    # A push body can be schema-valid and still refused: the device identity (403) and the
    # seq continuity (400/409) are not expressible in JSON Schema. Nor are the admin writes'
    # refusals of unknown fields (Litestar's schema of a msgspec Struct leaves out
    # forbid_unknown_fields) and of parents that do not exist.
    failures = conform(
        served,
        headers,
        ops,
        25,
        lambda op: (
            [positive_data_acceptance]
            if op.path == "/api/v1/sync/push" or op.method.upper() == "PUT"
            else []
        ),
    )
    assert not failures, "\n\n".join(failures)


def test_whistle_endpoints_conform_to_the_spec(served, tiny):
    headers = {"Authorization": f"Bearer {tiny.tokens['sec']}"}
    ops = operations(served, ("/api/v1/whistle", "/api/v1/notify"))
    assert {
        "POST /api/v1/whistle/cases",
        "POST /api/v1/whistle/cases/{case_id}/actions",
        "GET /api/v1/whistle/report",
        "GET /api/v1/notify/outbox",
    } <= labels(ops)
    # Schema-valid bodies may still name a grid, household or case that does not exist.
    failures = conform(
        served,
        headers,
        ops,
        20,
        lambda op: (
            [positive_data_acceptance] if op.method.upper() == "POST" or "{" in op.path else []
        ),
    )
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("person", ["admin", "sec"])
def test_coverage_and_device_endpoints_never_fail(served, tiny, person):
    """Coverage, exports, the device list and the admin writes of org units and people: no 5xx
    for any generated input (their bodies name households, members and units the tiny org may
    not have, so only server errors count)."""
    headers = {"Authorization": f"Bearer {tiny.tokens[person]}"}
    ops = [
        op
        for op in operations(
            served,
            (
                "/api/v1/coverage",
                "/api/v1/exports",
                "/api/v1/devices",
                "/api/v1/org-units",
                "/api/v1/people",
            ),
        )
        if not op.path.endswith("/revoke")
        and (
            op.method.upper() == "PUT"
            or not op.path.startswith(("/api/v1/org-units", "/api/v1/people"))
        )
    ]
    assert {
        "GET /api/v1/coverage",
        "GET /api/v1/exports/coverage",
        "POST /api/v1/coverage/assignments",
        "GET /api/v1/devices",
        "PUT /api/v1/org-units/{unit_id}",
        "PUT /api/v1/people/{person_id}",
    } <= labels(ops)
    failures = conform(served, headers, ops, 15)
    assert not failures, "\n\n".join(failures)

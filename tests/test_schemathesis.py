"""schemathesis against the served OpenAPI spec, with a valid token: zero 5xx and zero
responses that violate the spec (a status it does not name, a body or a content type that
does not match). Every operation is called, as an admin and as a member, with schema-valid
and with schema-violating requests; the sync and whistle families also with the headers and
the roles that get past their first refusals. Bounded examples, derandomized: the same cases
every run."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.sync_helpers import SYNC


def operations(base_url, prefixes):
    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    return [
        op for op in (r.ok() for r in schema.get_all_operations()) if op.path.startswith(prefixes)
    ]


def conform(base_url, headers, ops, examples, excluded_for=None, mode=GenerationMode.POSITIVE):
    """Run every operation; collect every failure, then report them all. With
    ``excluded_for`` (op -> checks to skip) every schemathesis check runs; without it, only
    "no server error". Schema-violating requests (``mode``) are held to the conformance checks
    only: that such a request is refused is not asked (an unknown query parameter is ignored,
    as HTTP APIs do, so that an older server serves a newer app)."""
    failures = []
    for op in ops:
        excluded = excluded_for(op) if excluded_for else []

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
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
            elif mode == GenerationMode.NEGATIVE:
                case.call_and_validate(base_url=base_url, headers=headers, checks=CONFORMANCE)
            else:
                case.call_and_validate(base_url=base_url, headers=headers, excluded_checks=excluded)  # noqa: B023

        try:
            check()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{op.method.upper()} {op.path}: {str(exc)[:700]}")
    return failures


# What the document promises about any answer: no 5xx (checked by call_and_validate whatever
# the checks), a documented status, a body and a content type and headers as documented.
CONFORMANCE = [
    status_code_conformance,
    response_schema_conformance,
    content_type_conformance,
    response_headers_conformance,
]


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
            if op.path == "/api/v1/sync/push"
            or op.method.upper() == "PUT"
            or op.path.endswith("/deactivate")  # an admin write, as the PUTs
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


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("person", ["admin", "m1"])
def test_every_operation_conforms_to_the_spec(served, tiny, person, mode):
    """Every operation of the document, the admin writes included (enrol, revoke, org units,
    people, policies, assignments), as an admin (past every role check) and as a member
    (refused by most): every answer's status is documented and its body, content type and
    headers match the document. Only the token is fixed; the sync headers are generated, so
    the sync family answers 426 for most (its deeper answers: the tests above).

    A schema-valid request may still be refused, so "valid data is accepted" is not asked
    here: an id that no unit, person, household or case has, a parent that does not exist, an
    unknown body field (Litestar's schema of a msgspec Struct leaves forbid_unknown_fields
    out), a time the schema's date-time allows and Python does not read."""
    headers = {"Authorization": f"Bearer {tiny.tokens[person]}"}
    ops = operations(served, ("/",))
    every = {
        f"{method.upper()} {path}"
        for path, item in schemathesis.openapi.from_url(f"{served}/schema/openapi.json")
        .raw_schema["paths"]
        .items()
        for method in item
        if method in ("get", "put", "post", "delete")
    }
    assert labels(ops) == every and len(every) >= 37
    failures = conform(served, headers, ops, 10, lambda op: [positive_data_acceptance], mode=mode)
    assert not failures, "\n\n".join(failures)

"""Every error status of SPEC section 3 with its code; nothing of a rejected request is stored."""

from __future__ import annotations

import gzip

import msgspec
import pytest

from gridsync import auth
from gridsync.audit import Actor
from tests.conftest import bearer
from tests.sync_helpers import SYNC, Phone

PUSH = "/api/v1/sync/push"


@pytest.fixture
def m1(client, tiny) -> Phone:
    return Phone(client, tiny.tokens["m1"], tiny.devices["m1"])


def nothing_stored(store) -> None:
    mutations, visits, last_seq = store.read(
        lambda db: (
            db.execute("SELECT count(*) FROM sync_mutations").fetchone()[0],
            db.execute("SELECT count(*) FROM visits").fetchone()[0],
            db.execute("SELECT last_seq FROM devices WHERE id = 'dev-m1'").fetchone()[0],
        )
    )
    assert (mutations, visits, last_seq) == (0, 0, 0)


def error(r, status: int, code: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and body["message"]
    return body


@pytest.mark.parametrize("path", ["/api/v1/sync/pull", "/api/v1/sync/status"])
def test_401_without_or_with_unknown_token(client, tiny, path):
    error(client.get(path, headers=SYNC), 401, "unauthorized")
    error(client.get(path, headers={**SYNC, **bearer("gs1_nope")}), 401, "invalid_token")


def test_401_revoked_device_is_told_to_wipe(client, tiny, store, m1):
    store.write(auth.revoke, "dev-m1", Actor.cli())
    body = error(m1.push([m1.visit("hh-g1-1")]), 401, "device_revoked")
    assert body["wipe"] is True
    assert (
        error(client.get("/api/v1/sync/pull", headers=m1.headers()), 401, "device_revoked")["wipe"]
        is True
    )


@pytest.mark.parametrize("schema", [None, "2", "0", ""])
def test_426_unsupported_schema(client, tiny, store, m1, schema):
    headers = {**bearer(m1.token), "X-Gridsync-App": "1.0"}
    if schema is not None:
        headers["X-Gridsync-Schema"] = schema
    body = {"device_id": "dev-m1", "mutations": [m1.visit("hh-g1-1")]}
    for r in (
        client.post(PUSH, json=body, headers=headers),
        client.get("/api/v1/sync/pull", headers=headers),
        client.get("/api/v1/sync/status", headers=headers),
    ):
        got = error(r, 426, "unsupported_schema")
        assert "update the app" in got["message"] and got["supported"] == ["1"]
    nothing_stored(store)


def test_403_device_mismatch(client, tiny, store, m1):
    r = client.post(
        PUSH, headers=m1.headers(), json={"device_id": "dev-m2", "mutations": [m1.visit("hh-g1-1")]}
    )
    error(r, 403, "device_mismatch")
    nothing_stored(store)


def test_409_seq_gap_with_expected_seq(client, tiny, store, m1):
    m1.seq = 4
    body = error(m1.push([m1.visit("hh-g1-1")]), 409, "seq_gap")
    assert body["expected_seq"] == 1
    nothing_stored(store)
    m1.seq = 0
    assert m1.push([m1.visit("hh-g1-1"), m1.visit("hh-g1-2")]).status_code == 200
    m1.seq = 7
    assert error(m1.push([m1.visit("hh-g1-1")]), 409, "seq_gap")["expected_seq"] == 3


def test_413_too_many_mutations(client, tiny, store, m1):
    body = error(m1.push([m1.visit("hh-g1-1") for _ in range(1001)]), 413, "payload_too_large")
    assert "1000 mutations" in body["message"] and "4 MiB" in body["message"]
    nothing_stored(store)


def test_413_too_many_bytes_raw_and_after_gzip(client, tiny, store, m1):
    big = {
        "device_id": "dev-m1",
        "mutations": [m1.visit("hh-g1-1", note="x" * 2000) for _ in range(1000)],
    }
    raw = msgspec.json.encode(big)
    assert len(raw) > 4 * 1024 * 1024 - 2_000_000  # most of the way; pad the rest
    raw = raw[:-1] + b',"pad":"' + b"y" * (4 * 1024 * 1024) + b'"}'
    error(
        client.post(PUSH, content=raw, headers=m1.headers(**{"Content-Type": "application/json"})),
        413,
        "payload_too_large",
    )
    # A gzip bomb: tiny on the wire, over the limit inflated.
    bomb = gzip.compress(b'{"device_id":"dev-m1","mutations":[],"pad":"' + b"0" * (8 << 20) + b'"}')
    assert len(bomb) < 100_000
    body = error(
        client.post(
            PUSH,
            content=bomb,
            headers=m1.headers(**{"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ),
        413,
        "payload_too_large",
    )
    assert "decompressed" in body["message"]
    nothing_stored(store)


@pytest.mark.parametrize(
    "body, field",
    [
        (b"{not json", "$"),
        (b'{"device_id": "dev-m1"}', "$"),
        (
            b'{"device_id": "dev-m1", "mutations": [{"mid": "a", "seq": "one", "hlc": "x", '
            b'"op": "visit.create", "id": "v"}]}',
            "$.mutations[0].seq",
        ),
        (
            b'{"device_id": "dev-m1", "mutations": [{"mid": "a", "seq": 1, '
            b'"hlc": "2026-11-20 09:30", "op": "visit.create", "id": "v"}]}',
            "$.mutations[0].hlc",
        ),
    ],
)
def test_400_names_the_bad_field(client, tiny, store, m1, body, field):
    # a body that does not decode is malformed_body, as on every REST endpoint
    code = "malformed_body" if body.startswith(b"{not") else "validation_error"
    got = error(
        client.post(PUSH, content=body, headers=m1.headers(**{"Content-Type": "application/json"})),
        400,
        code,
    )
    assert got["field"] == field
    nothing_stored(store)


def test_400_seq_must_count_up_in_a_batch(client, tiny, store, m1):
    a, b, c = m1.visit("hh-g1-1"), m1.visit("hh-g1-1"), m1.visit("hh-g1-1")
    got = error(m1.push([a, c, b]), 400, "validation_error")
    assert got["field"] == "$.mutations[1].seq"
    nothing_stored(store)


def test_400_bad_gzip_and_415_bad_media_type(client, tiny, store, m1):
    error(
        client.post(
            PUSH,
            content=b"not gzip at all",
            headers=m1.headers(**{"Content-Type": "application/json", "Content-Encoding": "gzip"}),
        ),
        400,
        "malformed_body",
    )
    error(
        client.post(
            PUSH, content=b"<xml/>", headers=m1.headers(**{"Content-Type": "application/xml"})
        ),
        415,
        "unsupported_media_type",
    )
    nothing_stored(store)


def test_400_on_bad_pull_limit(client, tiny, m1):
    r = client.get("/api/v1/sync/pull", headers=m1.headers(), params={"limit": 0})
    error(r, 400, "validation_error")

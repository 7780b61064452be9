"""Devices and tokens: enrolment, the bearer guard, revocation, hashing."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridsync.cli import cli
from tests.conftest import bearer


def test_database_never_holds_a_token_in_plain_text(store, tiny, db_path):
    store.close()
    raw = Path(db_path).read_bytes()
    wal_path = Path(db_path + "-wal")
    wal = wal_path.read_bytes() if wal_path.exists() else b""
    for token in tiny.tokens.values():
        secret = token.encode()
        assert secret not in raw and secret not in wal
        assert secret[4:20] not in raw and secret[4:20] not in wal
    conn = sqlite3.connect(db_path)
    hashes = [r[0] for r in conn.execute("SELECT token_hash FROM devices")]
    conn.close()
    assert len(hashes) == len(tiny.tokens) and all(len(h) == 64 for h in hashes)


def test_every_api_route_needs_a_token(client, tiny):
    for path in (
        "/api/v1/me",
        "/api/v1/households",
        "/api/v1/people",
        "/api/v1/org-units",
        "/api/v1/devices",
        "/api/v1/households/hh-g1-1",
    ):
        r = client.get(path)
        assert r.status_code == 401, path
        assert r.json()["code"] == "unauthorized"
        r = client.get(path, headers=bearer("gs1_not-a-real-token"))
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_token"
        r = client.get(path, headers={"Authorization": "Basic abc"})
        assert r.status_code == 401


def test_revoked_device_is_told_to_wipe(client, tiny):
    token = tiny.tokens["m1"]
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    r = client.post(
        f"/api/v1/devices/{tiny.devices['m1']}/revoke",
        headers=bearer(tiny.tokens["admin"]),
        json={"reason": "phone lost"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"]
    r = client.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 401
    assert r.json() == {"code": "device_revoked", "wipe": True, "message": r.json()["message"]}
    # the other devices still work
    assert client.get("/api/v1/me", headers=bearer(tiny.tokens["m2"])).status_code == 200


def test_member_may_revoke_only_their_own_device(client, tiny):
    r = client.post(
        f"/api/v1/devices/{tiny.devices['m2']}/revoke", headers=bearer(tiny.tokens["m1"])
    )
    assert r.status_code == 404
    assert client.get("/api/v1/me", headers=bearer(tiny.tokens["m2"])).status_code == 200
    r = client.post(
        f"/api/v1/devices/{tiny.devices['m1']}/revoke", headers=bearer(tiny.tokens["m1"])
    )
    assert r.status_code == 200


def test_enrol_by_api_is_for_admins(client, tiny):
    r = client.post("/api/v1/devices", headers=bearer(tiny.tokens["sec"]), json={"person_id": "m1"})
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = client.post(
        "/api/v1/devices",
        headers=bearer(tiny.tokens["admin"]),
        json={"person_id": "m1", "label": "华为 P60"},
    )
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    me = client.get("/api/v1/me", headers=bearer(token)).json()
    assert me["person"]["id"] == "m1" and me["device_id"] == r.json()["device_id"]


def test_device_list_is_own_devices_unless_admin(client, tiny):
    mine = client.get("/api/v1/devices", headers=bearer(tiny.tokens["m1"])).json()
    assert [d["id"] for d in mine["items"]] == [tiny.devices["m1"]]
    everything = client.get("/api/v1/devices", headers=bearer(tiny.tokens["admin"])).json()
    assert everything["total"] == len(tiny.devices)
    assert all("token" not in d and "token_hash" not in d for d in everything["items"])


def test_cli_enroll_list_revoke(store, tiny, db_path):
    store.close()
    runner = CliRunner()
    r = runner.invoke(cli, ["device", "enroll", "--db", db_path, "--person", "m1", "--json"])
    assert r.exit_code == 0, r.output
    enrolled = json.loads(r.output)
    assert set(enrolled) == {"device_id", "token"} and enrolled["token"].startswith("gs1_")
    r = runner.invoke(cli, ["device", "list", "--db", db_path, "--json"])
    ids = [d["id"] for d in json.loads(r.output)]
    assert enrolled["device_id"] in ids
    r = runner.invoke(cli, ["device", "revoke", "--db", db_path, enrolled["device_id"]])
    assert r.exit_code == 0
    r = runner.invoke(cli, ["device", "list", "--db", db_path, "--json"])
    revoked = next(d for d in json.loads(r.output) if d["id"] == enrolled["device_id"])
    assert revoked["revoked_at"]
    r = runner.invoke(cli, ["device", "enroll", "--db", db_path, "--person", "nobody"])
    assert r.exit_code == 1 and "not_found" in r.output
    r = runner.invoke(cli, ["device", "revoke", "--db", db_path, "no-such-device"])
    assert r.exit_code == 1 and "not_found" in r.output


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Token abc", ""])
def test_malformed_authorization_header(client, tiny, header):
    r = client.get("/api/v1/me", headers={"Authorization": header})
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"

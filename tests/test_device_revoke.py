"""Revoking devices on purpose and by accident: the last admin device is kept over the API (the
CLI may revoke it, with a warning), and a phone being replaced is drained: it pushes what it
holds once, through the reference client, and is then wiped; meanwhile it can pull nothing."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner

from gridsync import auth, org
from gridsync.cli import cli
from gridsync.clock import FixedClock, uuid7
from gridsync.errors import DeviceRevoked
from gridsync.models import Mutation, PushRequest
from gridsync.sync import push
from gridsync.sync.client import DeviceClient, DeviceDrainedError, DeviceRevokedError
from tests.conftest import CLI, bearer
from tests.test_client import FlakyTransport

SYNC = {"X-Gridsync-Schema": "1"}


def revoke(client, tiny, device_id, who="admin", **body):
    return client.post(
        f"/api/v1/devices/{device_id}/revoke", headers=bearer(tiny.tokens[who]), json=body
    )


def phone(http, tiny, person="m1", **kwargs):
    return DeviceClient(
        http,
        token=tiny.tokens[person],
        device_id=tiny.devices[person],
        person_id=person,
        clock=FixedClock(int(time.time() * 1000)),
        sleep=lambda _s: None,
        **kwargs,
    )


def visits_on_server(store, note: str) -> int:
    return store.read(
        lambda db: db.execute("SELECT count(*) FROM visits WHERE note = ?", [note]).fetchone()[0]
    )


def device_row(store, device_id):
    return store.read(auth.get_device, device_id)


# -- the last admin device -----------------------------------------------------------------------


def test_api_refuses_to_revoke_the_last_admin_device(client, tiny):
    for body in ({}, {"drain": True}, {"reason": "换手机"}):
        r = revoke(client, tiny, tiny.devices["admin"], **body)
        assert r.status_code == 409, r.text
        assert r.json()["code"] == "last_admin_device" and r.json()["message"]
    assert client.get("/api/v1/me", headers=bearer(tiny.tokens["admin"])).status_code == 200
    # with a second admin device, the first may go; the second, now the last, may not
    second = client.post(
        "/api/v1/devices", headers=bearer(tiny.tokens["admin"]), json={"person_id": "admin"}
    ).json()
    assert revoke(client, tiny, tiny.devices["admin"]).status_code == 200
    r = client.post(
        f"/api/v1/devices/{second['device_id']}/revoke", headers=bearer(second["token"]), json={}
    )
    assert (r.status_code, r.json()["code"]) == (409, "last_admin_device")
    assert client.get("/api/v1/me", headers=bearer(second["token"])).status_code == 200
    # other people's devices are not concerned
    assert revoke(client, tiny, tiny.devices["sec"], who="sec").status_code == 200


def test_another_admins_device_keeps_the_district_reachable(client, tiny, store):
    store.write(lambda db: db.execute("UPDATE people SET roles = '[\"admin\"]' WHERE id = 'sec'"))
    assert revoke(client, tiny, tiny.devices["admin"]).status_code == 200
    # the one left belongs to an inactive person: it does not count
    store.write(lambda db: db.execute("UPDATE people SET active = 0 WHERE id = 'sec'"))
    assert store.read(auth.is_last_admin_device, tiny.devices["sec"]) is False
    assert store.read(auth.is_last_admin_device, tiny.devices["m1"]) is False


def test_cli_may_revoke_the_last_admin_device_with_a_warning(store, tiny, db_path):
    store.close()
    r = CliRunner().invoke(cli, ["device", "revoke", "--db", db_path, tiny.devices["admin"]])
    assert r.exit_code == 0, r.output
    assert "最后一台有效的管理员设备" in r.stderr
    assert f"device {tiny.devices['admin']} revoked" in r.stdout
    r = CliRunner().invoke(cli, ["device", "list", "--db", db_path, "--json"])
    admin = next(d for d in json.loads(r.stdout) if d["id"] == tiny.devices["admin"])
    assert admin["revoked_at"]
    quiet = CliRunner().invoke(cli, ["device", "revoke", "--db", db_path, tiny.devices["m1"]])
    assert quiet.exit_code == 0 and quiet.stderr == ""


def put_person(client, tiny, person_id, roles, who="admin"):
    return client.put(
        f"/api/v1/people/{person_id}",
        headers=bearer(tiny.tokens[who]),
        json={"name": "区管理员", "roles": roles, "scope": ["d1"]},
    )


def test_api_refuses_to_take_the_admin_role_from_the_last_admin_with_a_device(client, tiny, store):
    """The same lock-out as revoking the last admin device (org.leaves_no_admin_device asks for
    both): issue 12's review found PUT /people/admin {"roles": ["member"]} answered 200."""
    for roles in (["member"], ["community_secretary", "street"]):
        r = put_person(client, tiny, "admin", roles)
        assert (r.status_code, r.json()["code"]) == (409, "last_admin_device"), r.text
        assert r.json()["field"] == "roles" and r.json()["message"]
    assert store.read(org.get_person, "admin").roles == ["admin"]  # nothing written
    assert client.get("/api/v1/devices", headers=bearer(tiny.tokens["admin"])).status_code == 200
    # keeping the role while changing the rest is fine
    assert put_person(client, tiny, "admin", ["admin", "street"]).status_code == 200
    # a second admin with an active device: the first may step down, the second then may not
    assert put_person(client, tiny, "sec", ["admin"]).status_code == 200
    assert put_person(client, tiny, "admin", ["member"]).status_code == 200
    r = put_person(client, tiny, "sec", ["community_secretary"], who="sec")
    assert (r.status_code, r.json()["code"]) == (409, "last_admin_device")


def test_the_lock_out_rule_counts_active_admins_with_active_devices(store, tiny):
    ask = org.leaves_no_admin_device
    assert store.read(ask, person_id="admin") and store.read(ask, device_id=tiny.devices["admin"])
    assert not store.read(ask, person_id="m1") and not store.read(ask, device_id="dev-m1")
    store.write(auth.enroll, "admin", CLI, device_id="dev-admin-2")
    assert store.read(ask, person_id="admin")  # both devices are the person's
    assert not store.read(ask, device_id=tiny.devices["admin"])  # the other device is left
    store.write(auth.revoke, "dev-admin-2", CLI, drain=True)  # draining: no longer counts
    assert store.read(ask, device_id=tiny.devices["admin"])
    store.write(lambda db: db.execute("UPDATE people SET active = 0 WHERE id = 'admin'"))
    assert not store.read(ask, person_id="admin")  # nobody left to lock out: nothing to refuse
    assert not store.read(org.has_admin_device)


def test_cli_may_take_the_admin_role_from_the_last_admin_with_a_warning(store, tiny, db_path):
    store.close()
    args = ["people", "add", "--db", db_path, "admin", "--name", "区管理员", "--scope", "d1"]
    r = CliRunner().invoke(cli, [*args, "--role", "member"])
    assert r.exit_code == 0, r.output
    assert "已没有持有有效设备的管理员" in r.stderr and "person admin saved" in r.stdout
    back = CliRunner().invoke(cli, [*args, "--role", "admin"])
    assert back.exit_code == 0 and back.stderr == ""  # no lock-out, no warning


# -- drain: the API, the server's rules --------------------------------------------------------


def test_draining_device_may_push_once_and_pull_nothing(client, tiny, store):
    r = revoke(client, tiny, tiny.devices["m1"], drain=True, reason="换新手机")
    assert r.status_code == 200, r.text
    assert r.json()["draining_since"] and r.json()["revoked_at"] is None
    token = bearer(tiny.tokens["m1"])
    for path in ("/api/v1/sync/pull", "/api/v1/me", "/api/v1/households", "/api/v1/whistle/cases"):
        refused = client.get(path, headers={**token, **SYNC})
        assert refused.status_code == 403, path
        assert refused.json()["code"] == "device_draining" and refused.json()["drain"] is True
    status = client.get("/api/v1/sync/status", headers={**token, **SYNC})
    assert status.status_code == 200 and status.json()["draining"] is True
    note = "走访-排空"
    body = {
        "device_id": tiny.devices["m1"],
        "mutations": [
            {
                "mid": uuid7(),
                "seq": 1,
                "hlc": f"{int(time.time() * 1000):015d}:00000:{tiny.devices['m1']}",
                "op": "visit.create",
                "id": uuid7(),
                "data": {
                    "household_id": "hh-g1-1",
                    "at": "2026-11-20T09:30:00+08:00",
                    "channel": "door",
                    "note": note,
                },
            }
        ],
    }
    first = client.post("/api/v1/sync/push", headers={**token, **SYNC}, json=body)
    assert first.status_code == 200, first.text
    assert first.json()["drained"] is True
    assert [x["status"] for x in first.json()["results"]] == ["applied"]
    assert device_row(store, tiny.devices["m1"]).revoked_at is not None
    body["mutations"][0].update(seq=2, mid=uuid7(), id=uuid7())
    second = client.post("/api/v1/sync/push", headers={**token, **SYNC}, json=body)
    assert second.status_code == 401
    assert (second.json()["code"], second.json()["wipe"]) == ("device_revoked", True)
    assert visits_on_server(store, note) == 1
    actions = store.read(
        lambda db: [
            r[0]
            for r in db.execute(
                "SELECT action FROM audit_log WHERE target = ? ORDER BY id", [tiny.devices["m1"]]
            )
        ]
    )
    assert actions[-3:] == ["device.drain", "sync.push", "device.drained"]


def test_a_refused_push_does_not_use_up_the_drain(client, tiny, store):
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    token = {**bearer(tiny.tokens["m1"]), **SYNC}
    gap = {
        "device_id": tiny.devices["m1"],
        "mutations": [
            {
                "mid": uuid7(),
                "seq": 7,
                "hlc": f"{int(time.time() * 1000):015d}:00000:{tiny.devices['m1']}",
                "op": "visit.void",
                "id": uuid7(),
            }
        ],
    }
    r = client.post("/api/v1/sync/push", headers=token, json=gap)
    assert (r.status_code, r.json()["code"]) == (409, "seq_gap")
    assert device_row(store, tiny.devices["m1"]).revoked_at is None
    gap["mutations"][0]["seq"] = 1
    assert client.post("/api/v1/sync/push", headers=token, json=gap).json()["drained"] is True


def _visit_push(tiny, note: str, seq: int = 1, **top) -> dict:
    return {
        "device_id": tiny.devices["m1"],
        "mutations": [
            {
                "mid": uuid7(),
                "seq": seq,
                "hlc": f"{int(time.time() * 1000):015d}:00000:{tiny.devices['m1']}",
                "op": "visit.create",
                "id": uuid7(),
                "data": {
                    "household_id": "hh-g1-1",
                    "at": "2026-11-20T09:30:00+08:00",
                    "channel": "door",
                    "note": note,
                },
            }
        ],
        **top,
    }


def test_a_push_marked_not_drain_is_refused_while_draining_and_stores_nothing(client, tiny, store):
    """A client that marks its drain push sends ``drain: false`` on the others: one that
    arrives after a drain is refused whole (the client then drains with everything), and does
    not use the drain up; the marked push is the last."""
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    token = {**bearer(tiny.tokens["m1"]), **SYNC}
    ordinary = _visit_push(tiny, "未标记", drain=False)
    r = client.post("/api/v1/sync/push", headers=token, json=ordinary)
    assert r.status_code == 403, r.text
    assert (r.json()["code"], r.json()["drain"]) == ("device_draining", True)
    assert visits_on_server(store, "未标记") == 0
    assert device_row(store, tiny.devices["m1"]).revoked_at is None
    assert (
        store.read(
            lambda db: db.execute(
                "SELECT last_seq FROM devices WHERE id = ?", [tiny.devices["m1"]]
            ).fetchone()[0]
        )
        == 0
    )  # the seq was not consumed: the drain push sends it again
    last = client.post("/api/v1/sync/push", headers=token, json={**ordinary, "drain": True})
    assert last.status_code == 200 and last.json()["drained"] is True, last.text
    assert visits_on_server(store, "未标记") == 1
    assert device_row(store, tiny.devices["m1"]).revoked_at is not None


def test_a_hostile_mutation_does_not_lose_the_drain_mark(client, tiny, store):
    """The mark survives the slow path that refuses one mutation at fault (outline.py)."""
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    headers = {**bearer(tiny.tokens["m1"]), **SYNC, "Content-Type": "application/json"}
    for drain, status in ((False, 403), (True, 200)):
        body = _visit_push(tiny, "坏", drain=drain)
        body["mutations"][0].update(op="household.update", id="hh-g1-1", fields={"notes": "NOTE"})
        raw = json.dumps(body).encode().replace(b"NOTE", b"\xff\xfe")  # invalid UTF-8
        r = client.post("/api/v1/sync/push", headers=headers, content=raw)
        assert r.status_code == status, r.text
    assert r.json()["drained"] is True
    assert r.json()["results"][0]["code"] == "validation_error"


def test_a_drain_mark_from_a_device_not_draining_changes_nothing(client, tiny, store):
    token = {**bearer(tiny.tokens["m1"]), **SYNC}
    r = client.post("/api/v1/sync/push", headers=token, json=_visit_push(tiny, "照常", drain=True))
    assert r.status_code == 200 and "drained" not in r.json(), r.text
    assert device_row(store, tiny.devices["m1"]).revoked_at is None
    assert visits_on_server(store, "照常") == 1


def test_the_reference_client_marks_its_drain_push(client, tiny, store):
    net = FlakyTransport(client)
    m1 = phone(net, tiny)
    m1.sync()
    m1.log_visit("hh-g1-1", "door", [], "普通")
    m1.push()
    offline_work(m1, "最后")
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    with pytest.raises(DeviceDrainedError):
        m1.sync()
    pushes = [json.loads(body) for _m, url, body in net.sent if url.endswith("/push")]
    # an ordinary push; after the drain, one refused (it did not know), then the drain push
    # with everything that one held and more
    assert [p["drain"] for p in pushes] == [False, False, True]
    assert len(pushes[2]["mutations"]) == len(pushes[1]["mutations"]) == 4
    assert visits_on_server(store, "最后") == 2


def test_a_push_checked_before_a_revoke_stores_nothing_after_it(store, tiny, settings):
    """The token is checked before the push waits for the writer: a revoke (or a drain push)
    that commits in between must still shut the push out."""
    principal = store.read(auth.authenticate, tiny.tokens["m1"])
    store.write(auth.revoke, tiny.devices["m1"], CLI, "stolen")
    request = PushRequest(
        device_id=tiny.devices["m1"],
        mutations=[
            Mutation(
                mid=uuid7(),
                seq=1,
                hlc=f"{int(time.time() * 1000):015d}:00000:{tiny.devices['m1']}",
                op="visit.void",
                id="v-1",
            )
        ],
    )
    decoded = push.decode_data(request, "json")
    clock = FixedClock(int(time.time() * 1000))
    with pytest.raises(DeviceRevoked):
        store.write(push.apply_push, principal, request, decoded, settings, clock)
    last_seq = store.read(
        lambda db: db.execute(
            "SELECT last_seq FROM devices WHERE id = ?", [tiny.devices["m1"]]
        ).fetchone()[0]
    )
    assert last_seq == 0


def test_a_plain_revoke_cuts_a_drain_short(client, tiny, store):
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    again = revoke(client, tiny, tiny.devices["m1"], drain=True)  # nothing changes
    assert again.json()["revoked_at"] is None
    assert revoke(client, tiny, tiny.devices["m1"]).json()["revoked_at"]
    r = client.get("/api/v1/sync/status", headers={**bearer(tiny.tokens["m1"]), **SYNC})
    assert (r.status_code, r.json()["code"]) == (401, "device_revoked")
    # a drain of a revoked device does not bring it back
    assert revoke(client, tiny, tiny.devices["m1"], drain=True).json()["revoked_at"]


# -- drain: the reference client --------------------------------------------------------------


def offline_work(device, note):
    """A visit, a household edit and a whistle case, made offline and still queued."""
    device.log_visit("hh-g1-1", "door", ["policy"], note)
    device.log_visit("hh-g1-2", "phone", [], note)
    device.update_household("hh-g1-3", fields={"notes": note})
    device.enqueue("whistle.raise", uuid7(), data={"category": "漏水", "grid_id": "g1"})


def test_queued_edits_survive_a_drain_and_arrive_once(client, tiny, store):
    m1 = phone(client, tiny)
    m1.sync()
    note = "换机前的走访"
    offline_work(m1, note)
    assert revoke(client, tiny, tiny.devices["m1"], drain=True).status_code == 200
    with pytest.raises(DeviceDrainedError) as drained:
        m1.sync()
    assert (drained.value.drained, drained.value.unsent) == (4, 0)
    assert drained.value.body["wipe"] is True
    assert m1.revoked and m1.pending_count() == 0 and m1.households() == {}
    assert visits_on_server(store, note) == 2
    notes = store.read(
        lambda db: db.execute("SELECT notes FROM households WHERE id = 'hh-g1-3'").fetchone()[0]
    )
    assert notes == note
    assert store.read(lambda db: db.execute("SELECT count(*) FROM whistle_cases").fetchone()[0])
    assert device_row(store, tiny.devices["m1"]).revoked_at is not None
    with pytest.raises(DeviceRevokedError):
        m1.log_visit("hh-g1-1", "door", [], "after")


def test_a_lost_answer_to_the_drain_push_still_lands_once(client, tiny, store):
    net = FlakyTransport(client)
    m1 = phone(net, tiny)
    m1.sync()
    note = "答复丢失"
    offline_work(m1, note)
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    net.lose_next = 1  # the drain push is applied, its answer lost; the resend is refused
    with pytest.raises(DeviceRevokedError) as refused:
        m1.push()
    assert refused.value.body["wipe"] is True and m1.revoked
    assert visits_on_server(store, note) == 2


def test_a_pull_while_draining_makes_the_client_drain(client, tiny, store):
    m1 = phone(client, tiny)
    m1.sync()
    note = "先拉取"
    offline_work(m1, note)
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    with pytest.raises(DeviceDrainedError) as drained:
        m1.pull()  # refused (device_draining): the client pushes what it holds, then wipes
    assert drained.value.drained == 4 and m1.revoked
    assert visits_on_server(store, note) == 2


def test_a_drain_with_nothing_queued_ends_at_once(client, tiny, store):
    m1 = phone(client, tiny)
    m1.sync()
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    with pytest.raises(DeviceDrainedError) as drained:
        m1.sync()
    assert (drained.value.drained, drained.value.unsent) == (0, 0)
    assert m1.revoked and device_row(store, tiny.devices["m1"]).revoked_at is not None


def test_a_queue_larger_than_a_batch_drains_in_its_one_push(client, tiny, store):
    net = FlakyTransport(client)
    m1 = phone(net, tiny, batch_size=2)
    m1.sync()
    note = "批量"
    for i in range(5):
        m1.log_visit(f"hh-g1-{1 + i % 4}", "door", [], note)
    revoke(client, tiny, tiny.devices["m1"], drain=True)
    with pytest.raises(DeviceDrainedError) as drained:
        m1.sync()
    assert (drained.value.drained, drained.value.unsent) == (5, 0)
    assert visits_on_server(store, note) == 5
    assert sum(1 for _m, url, _c in net.sent if url.endswith("/sync/push")) == 1


def test_cli_drain_then_the_phone_pushes_and_is_wiped(client, tiny, store, db_path):
    m1 = phone(client, tiny)
    m1.sync()
    note = "命令行排空"
    offline_work(m1, note)
    r = CliRunner().invoke(
        cli, ["device", "revoke", "--db", db_path, "--drain", tiny.devices["m1"]]
    )
    assert r.exit_code == 0, r.output
    assert "draining" in r.stdout
    listed = CliRunner().invoke(cli, ["device", "list", "--db", db_path])
    assert any(
        line.startswith(tiny.devices["m1"]) and "draining since" in line
        for line in listed.stdout.splitlines()
    )
    with pytest.raises(DeviceDrainedError):
        m1.sync()
    assert visits_on_server(store, note) == 2
    listed = CliRunner().invoke(cli, ["device", "list", "--db", db_path])
    assert any(
        line.startswith(tiny.devices["m1"]) and "\trevoked " in line
        for line in listed.stdout.splitlines()
    )

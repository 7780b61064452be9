"""The reference device client against the real app in process (litestar TestClient)."""

from __future__ import annotations

import json
import time

import httpx
import msgspec
import pytest

from gridsync import auth
from gridsync import db as dbmod
from gridsync.clock import FixedClock
from gridsync.sync.client import (
    DeviceClient,
    DeviceRevokedError,
    Unreachable,
)
from tests.conftest import CLI


def now_ms() -> int:
    """Device clocks start at the real time of the test (the server's HLC runs on it, and phones
    advance theirs from every answer); tests then move them forward explicitly. Taken per test:
    a start time fixed at import is seconds old by the time a late test runs, and the server's
    clock would then outrun the tests' advances."""
    return int(time.time() * 1000)


class FlakyTransport:
    """Wraps the app's TestClient like a bad mobile network: ``lose_next`` lets the request
    reach the server and then loses the answer of the next push (a timeout); ``refuse_next``
    fails to connect. Records every request body sent."""

    def __init__(self, http: httpx.Client):
        self.http = http
        self.lose_next = 0
        self.refuse_next = 0
        self.sent: list[tuple[str, str, bytes | None]] = []

    def request(self, method: str, url: str, **kwargs):
        self.sent.append((method, url, kwargs.get("content")))
        if self.refuse_next:
            self.refuse_next -= 1
            raise httpx.ConnectError("network unreachable")
        response = self.http.request(method, url, **kwargs)
        if self.lose_next and url.endswith("/sync/push"):
            self.lose_next -= 1
            raise httpx.ReadTimeout("the answer was lost")
        return response


def device(http, tiny, person: str, *, path: str = ":memory:", clock=None, **kwargs):
    return DeviceClient(
        http,
        token=tiny.tokens[person],
        device_id=tiny.devices[person],
        person_id=person,
        path=path,
        clock=clock or FixedClock(now_ms()),
        sleep=lambda _s: None,
        **kwargs,
    )


def synced_pair(client, tiny):
    """Two phones on one clock, both synced: m1's and the community secretary's. m1 is made
    responsible for the households of g1 first, so both phones read their numbers in full
    (gridsync/privacy.py) and their views of them can be compared whole."""
    for hid in tiny.households["g1"]:
        r = client.post(
            "/api/v1/coverage/assignments",
            headers={"Authorization": f"Bearer {tiny.tokens['admin']}"},
            json={"household_id": hid, "member_id": "m1"},
        )
        assert r.status_code == 200, r.text
    clock = FixedClock(now_ms())
    a, b = device(client, tiny, "m1", clock=clock), device(client, tiny, "sec", clock=clock)
    a.sync()
    b.sync()
    return clock, a, b


def server_household(store, household_id: str) -> dict:
    row = store.read(
        lambda db: db.execute(
            "SELECT phone, notes, tags, status FROM households WHERE id = ?", [household_id]
        ).fetchone()
    )
    return {"phone": row[0], "notes": row[1], "tags": row[2], "status": row[3]}


def visit_count(store) -> int:
    return store.read(lambda db: db.execute("SELECT count(*) FROM visits").fetchone()[0])


# -- offline behaviour -------------------------------------------------------------------------


def test_queue_survives_a_restart(tmp_path, client, tiny):
    path = str(tmp_path / "phone.db")
    phone = device(client, tiny, "m1", path=path)
    phone.pull()
    phone.update_household("hh-g1-1", fields={"phone": "13911112222"}, tags_add=["renter"])
    visit = phone.log_visit("hh-g1-2", "door", ["policy"], "问候")
    before = phone.pending()
    phone.close()

    again = device(client, tiny, "m1", path=path)
    assert again.pending() == before
    assert [m.seq for m in before] == [1, 2]
    assert again.household("hh-g1-1")["phone"] == "13911112222"
    assert "renter" in again.household("hh-g1-1")["tags"]
    assert visit.id in again.visits("hh-g1-2")
    nxt = again.void_visit(visit.id)
    assert nxt.seq == 3 and nxt.hlc > before[-1].hlc
    again.sync()
    assert again.pending_count() == 0
    assert server_household(client.app.state.store, "hh-g1-1")["phone"] == "13911112222"


def test_a_file_belongs_to_one_device(tmp_path, client, tiny):
    path = str(tmp_path / "phone.db")
    device(client, tiny, "m1", path=path).close()
    with pytest.raises(ValueError, match="belongs to device"):
        device(client, tiny, "m2", path=path)


def test_local_edits_show_at_once_and_hlc_is_spec_shaped(client, tiny):
    phone = device(client, tiny, "m1")
    phone.pull()
    m = phone.update_household("hh-g1-3", fields={"notes": "独居"}, tags_remove=["x"])
    wall, counter, node = m.hlc.split(":", 2)
    assert (len(wall), len(counter), node) == (15, 5, tiny.devices["m1"])
    server_seq = client.app.state.store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'hh-g1-3'").fetchone()[0]
    )
    assert m.base_seq == server_seq
    assert phone.household("hh-g1-3")["notes"] == "独居"
    assert phone.server_copy("household")["hh-g1-3"]["notes"] == ""


# -- push and pull -----------------------------------------------------------------------------


def test_push_and_pull_carry_edits_between_phones(client, tiny):
    _clock, a, b = synced_pair(client, tiny)
    a.update_household("hh-g1-1", fields={"phone": "13800000001"}, tags_add=["low_income"])
    visit = a.log_visit("hh-g1-1", "phone", ["hardship"], "")
    report = a.sync()
    assert report.push.applied == 2 and report.push.batches == 1
    b.sync()
    assert b.household("hh-g1-1")["phone"] == "13800000001"
    assert "low_income" in b.household("hh-g1-1")["tags"]
    assert b.visits()[visit.id]["member_id"] == "m1"
    assert b.visits()[visit.id] == a.visits()[visit.id]


def test_a_household_found_offline_is_created_then_moved_out(client, tiny, store):
    clock, a, b = synced_pair(client, tiny)
    created = a.create_household(
        "g1",
        building="5号楼",
        room="302",
        head_name="刘芳",
        phone="13600000000",
        size=3,
        tags=["renter"],
    )
    assert a.household(created.id)["head_name"] == "刘芳"  # shown before any sync
    assert a.sync().push.applied == 1
    b.sync()
    # m1 found it but is not its responsible member: after the sync m1 reads the number masked
    # (gridsync/privacy.py); the community secretary reads it in full
    assert b.household(created.id) == {**a.household(created.id), "phone": "13600000000"}
    assert a.household(created.id)["phone"] == "136****0000"
    assert b.household(created.id)["tags"] == ["renter"]
    clock.advance(seconds=10)
    b.move_out(created.id)
    assert b.household(created.id)["status"] == "moved_out"
    b.sync()
    a.sync()
    assert a.household(created.id)["status"] == "moved_out"
    assert server_household(store, created.id)["status"] == "moved_out"


def test_rebase_keeps_unsent_edits_visible_over_pulled_state(client, tiny):
    clock, a, b = synced_pair(client, tiny)
    a.update_household("hh-g1-2", fields={"phone": "13700000000"}, tags_add=["renter"])
    clock.advance(seconds=5)
    b.update_household("hh-g1-2", fields={"notes": "楼道灯坏了"}, tags_add=["disabled"])
    b.sync()
    a.pull()  # a's edit is still unsent
    seen = a.household("hh-g1-2")
    assert seen["notes"] == "楼道灯坏了"  # the other phone's edit, pulled
    assert seen["phone"] == "13700000000"  # this phone's unsent edit, rebased on top
    assert {"renter", "disabled"} <= set(seen["tags"])
    assert a.server_copy("household")["hh-g1-2"]["phone"] != "13700000000"
    a.sync()
    b.sync()
    assert a.household("hh-g1-2") == b.household("hh-g1-2")


def test_concurrent_edit_loses_into_the_outcomes_and_both_phones_converge(client, tiny):
    clock, a, b = synced_pair(client, tiny)
    b.update_household("hh-g1-4", fields={"phone": "older"})
    clock.advance(seconds=30)
    a.update_household("hh-g1-4", fields={"phone": "newer"})
    a.sync()
    report = b.sync()
    assert report.push.merged == 1
    assert report.push.lost and report.push.lost[0]["field"] == "phone"
    assert report.push.lost[0]["value"] == "older"
    assert b.outcomes("merged")[0]["lost"][0]["value"] == "older"
    assert b.household("hh-g1-4")["phone"] == "newer"
    a.sync()
    assert a.households() == {h: b.households()[h] for h in tiny.households["g1"]}


def test_an_edit_that_wins_over_an_unseen_one_stays_shown_and_is_logged(client, tiny):
    clock, a, b = synced_pair(client, tiny)
    a.update_household("hh-g1-4", fields={"phone": "older"})
    a.sync()
    clock.advance(seconds=30)
    b.update_household("hh-g1-4", fields={"phone": "newer", "notes": "核实"})
    report = b.push()  # b had not seen a's phone: merged, and a's value is the one lost
    assert report.merged == 1 and report.lost[0]["value"] == "older"
    assert report.lost[0]["winner"] == "newer"
    assert b.outcomes("merged")[0]["mutation"]["fields"] == {"phone": "newer", "notes": "核实"}
    assert b.household("hh-g1-4")["phone"] == "newer"  # before any pull
    assert b.pending_count() == 0
    b.pull()
    a.pull()
    assert a.household("hh-g1-4") == b.household("hh-g1-4")
    assert b.household("hh-g1-4")["phone"] == "newer"


def test_a_rejected_mutation_is_kept_for_inspection_and_blocks_nothing(client, tiny, store):
    phone = device(client, tiny, "m1")
    phone.sync()
    phone.update_household("hh-g2-1", fields={"phone": "13000000000"})  # another grid's
    visit = phone.log_visit("hh-g1-1", "door", ["policy"], "")
    report = phone.sync().push
    assert (report.rejected, report.applied) == (1, 1)
    [rejected] = phone.rejected()
    assert rejected["code"] == "out_of_scope" and rejected["id"] == "hh-g2-1"
    assert rejected["mutation"]["fields"] == {"phone": "13000000000"}
    assert phone.pending_count() == 0 and visit.id in phone.visits()
    assert server_household(store, "hh-g2-1")["phone"] != "13000000000"
    assert phone.household("hh-g2-1") is None  # never shown: it is outside the scope


def test_reset_drops_the_copy_but_keeps_the_queue(client, tiny, store):
    phone = device(client, tiny, "m1")
    phone.sync()
    assert phone.cursor
    phone.update_household("hh-g1-1", fields={"notes": "待回访"})
    store.write(dbmod.new_epoch)  # a restored database: old cursors cannot be honoured
    report = phone.pull()
    assert report.resets == 1
    assert phone.pending_count() == 1
    assert phone.household("hh-g1-1")["notes"] == "待回访"
    assert set(phone.households()) == set(tiny.households["g1"])
    phone.sync()
    assert server_household(store, "hh-g1-1")["notes"] == "待回访"


def test_a_lost_answer_is_retried_with_the_same_mids_and_seqs(client, tiny, store):
    net = FlakyTransport(client)
    phone = device(net, tiny, "m1")
    phone.pull()
    for i in range(3):
        phone.log_visit("hh-g1-1", "door", ["policy"], f"第{i}次")
    net.sent.clear()
    net.lose_next = 1
    report = phone.push()
    pushes = [body for method, url, body in net.sent if url.endswith("/sync/push")]
    assert len(pushes) == 2 and pushes[0] == pushes[1]  # the very same bytes, resent
    assert report.duplicate == 3 and report.applied == 0
    assert visit_count(store) == 3
    assert phone.pending_count() == 0


def test_a_json_batch_is_the_queue_as_stored_in_spec_shape(client, tiny):
    """Push sends the stored JSON parts as they are (no decode and re-encode): the bytes must be
    exactly those of the queue's mutations in their SPEC 3.1 shape."""
    net = FlakyTransport(client)
    phone = device(net, tiny, "m1")
    phone.pull()
    phone.update_household(
        "hh-g1-1",
        fields={"phone": "13911112222", "size": 3},
        tags_add=["renter", "elderly"],
        tags_remove=["x"],
    )
    phone.update_household("hh-g1-2", tags_remove=["renter"])
    phone.log_visit(
        "hh-g1-1", "door", ["policy", "safety"], '问候 "引号"', geo={"lat": 30.5, "lon": 114.3}
    )
    phone.create_household("g1", building="5号楼", room="302", tags=["renter"])
    phone.move_out("hh-g1-3")
    queued = phone.pending()
    net.sent.clear()
    report = phone.push()
    [body] = [body for _method, url, body in net.sent if url.endswith("/sync/push")]
    assert body == msgspec.json.encode(
        {
            "device_id": tiny.devices["m1"],
            "mutations": [m.wire() for m in queued],
            "drain": False,  # an ordinary push: the client marks its drain push
        }
    )
    assert report.applied == 5 and phone.pending_count() == 0


class CrashAfterPush(FlakyTransport):
    """The phone dies after the server applied its push and before it stored the answer: the
    local database goes away under it while the answer is on its way."""

    def __init__(self, http: httpx.Client, phone_db: list):
        super().__init__(http)
        self.phone_db = phone_db

    def request(self, method: str, url: str, **kwargs):
        response = super().request(method, url, **kwargs)
        if url.endswith("/sync/push") and self.phone_db:
            self.phone_db.pop().close()
        return response


def test_a_crash_between_push_and_acknowledgement_resends_the_same_mids(
    tmp_path, client, tiny, store
):
    path = str(tmp_path / "phone.db")
    handle: list = []
    phone = device(CrashAfterPush(client, handle), tiny, "m1", path=path, batch_size=2)
    phone.pull()
    for i in range(3):
        phone.log_visit("hh-g1-1", "door", ["policy"], f"第{i}次")
    sent = phone.pending()
    handle.append(phone.db)
    with pytest.raises(Exception, match="closed"):
        phone.push()  # the first batch reached the server, its answer never got stored
    assert visit_count(store) == 2

    again = device(client, tiny, "m1", path=path, batch_size=2)
    assert again.pending() == sent  # nothing was acknowledged
    report = again.push()
    assert (report.duplicate, report.applied) == (2, 1)
    assert visit_count(store) == 3 and again.pending_count() == 0


def test_edits_made_during_a_push_stay_queued_until_answered(client, tiny, store):
    class EditWhilePushing(FlakyTransport):
        def request(self, method: str, url: str, **kwargs):
            if url.endswith("/sync/push") and len(phone.pending()) == 2:
                phone.log_visit("hh-g1-2", "phone", [], "推送中记录")  # while in flight
                assert phone.pending_count() == 3
            return super().request(method, url, **kwargs)

    phone = device(EditWhilePushing(client), tiny, "m1")
    phone.pull()
    phone.log_visit("hh-g1-1", "door", [], "")
    phone.update_household("hh-g1-1", fields={"notes": "已核实"})
    report = phone.push()
    assert (report.batches, report.applied) == (2, 3)
    assert visit_count(store) == 2 and phone.pending_count() == 0


def test_answered_batches_are_acknowledged_when_a_later_batch_fails(client, tiny, store):
    """Push is pipelined (the next batch is read and the previous answer acknowledged while a
    batch is in flight): when the network goes away at the third batch, the first two are
    acknowledged all the same, and only the third is sent again."""

    class NetworkGoneAfter(FlakyTransport):
        gone = False
        pushes = 0

        def request(self, method: str, url: str, **kwargs):
            if url.endswith("/sync/push"):
                self.pushes += 1
                if self.gone and self.pushes >= 3:
                    raise httpx.ConnectError("network unreachable")
            return super().request(method, url, **kwargs)

    transport = NetworkGoneAfter(client)
    phone = device(transport, tiny, "m1", batch_size=2, retries=0)
    phone.pull()
    for i in range(5):
        phone.log_visit(f"hh-g1-{i % 4 + 1}", "door", ["policy"], f"第{i}次")
    transport.gone = True  # every push from the third on fails
    with pytest.raises(Unreachable):
        phone.push()
    assert visit_count(store) == 4 and phone.pending_count() == 1
    transport.gone = False
    report = phone.push()
    assert (report.batches, report.applied, report.duplicate) == (1, 1, 0)
    assert visit_count(store) == 5 and phone.pending_count() == 0


def test_a_batch_too_large_is_halved_and_the_rest_follows(client, tiny, store):
    """``413`` (here: a proxy that takes at most two mutations a request) halves the batch; the
    batch read ahead at the old size is dropped, and every mutation arrives exactly once."""

    class SmallProxy(FlakyTransport):
        def request(self, method: str, url: str, **kwargs):
            if (
                url.endswith("/sync/push")
                and kwargs.get("content")
                and (len(json.loads(kwargs["content"])["mutations"]) > 2)
            ):
                self.sent.append((method, url, kwargs["content"]))
                return httpx.Response(
                    413, json={"code": "payload_too_large", "message": "at most 2 mutations"}
                )
            return super().request(method, url, **kwargs)

    transport = SmallProxy(client)
    phone = device(transport, tiny, "m1", batch_size=4)
    phone.pull()
    for i in range(5):
        phone.log_visit(f"hh-g1-{i % 4 + 1}", "door", ["policy"], f"第{i}次")
    report = phone.push()
    assert (report.applied, report.duplicate, report.batches) == (5, 0, 3)
    assert visit_count(store) == 5 and phone.pending_count() == 0


def test_a_reinstalled_app_numbers_its_queue_after_the_seqs_the_server_has(client, tiny, store):
    old = device(client, tiny, "m1")
    old.sync()
    old.log_visit("hh-g1-1", "door", [], "")
    old.log_visit("hh-g1-2", "door", [], "")
    old.sync()
    old.close()
    # Same device and token, new empty local store: its first edit is seq 1 locally, but the
    # server has consumed 1 and 2 already and would take seq 1 for a resend.
    fresh = device(client, tiny, "m1")
    visit = fresh.log_visit("hh-g1-3", "phone", [], "重装后第一次")
    assert visit.seq == 1
    report = fresh.sync().push
    assert (report.applied, report.duplicate) == (1, 0)
    assert visit.id in fresh.visits() and visit_count(store) == 3
    assert fresh.log_visit("hh-g1-4", "door", [], "").seq == 4


def test_seq_gap_renumbers_the_pending_queue_from_the_expected_seq(client, tiny, store):
    phone = device(client, tiny, "m1")
    phone.sync()
    for household in ("hh-g1-1", "hh-g1-2", "hh-g1-3"):
        phone.log_visit(household, "door", [], "")
    phone.sync()
    # The server lost the tail of this device's history (restored from an older backup).
    store.write(
        lambda db: db.execute("UPDATE devices SET last_seq = 1 WHERE id = ?", [tiny.devices["m1"]])
    )
    late = phone.log_visit("hh-g1-4", "door", [], "")
    assert late.seq == 4
    report = phone.push()
    assert report.renumbered == 1 and report.applied == 1
    assert visit_count(store) == 4
    assert phone.log_visit("hh-g1-4", "wechat", [], "").seq == 3  # numbering continues


def test_connection_errors_back_off_then_give_up_keeping_the_queue(client, tiny):
    net = FlakyTransport(client)
    waits: list[float] = []
    phone = DeviceClient(
        net,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        clock=FixedClock(now_ms()),
        retries=3,
        sleep=waits.append,
    )
    phone.log_visit("hh-g1-1", "door", [], "")
    net.refuse_next = 10
    with pytest.raises(Unreachable):
        phone.push()
    assert len(waits) == 3 and waits == sorted(waits) and waits[0] > 0
    assert phone.pending_count() == 1
    net.refuse_next = 2  # the network comes back after two more failures
    assert phone.push().applied == 1


def test_a_revoked_phone_wipes_its_data(client, tiny, store):
    phone = device(client, tiny, "m1")
    phone.sync()
    phone.log_visit("hh-g1-1", "door", [], "")
    store.write(auth.revoke, tiny.devices["m1"], CLI, "lost phone")
    with pytest.raises(DeviceRevokedError) as info:
        phone.sync()
    assert info.value.body.get("wipe") is True
    assert phone.revoked
    assert phone.households() == {} and phone.pending_count() == 0 and phone.cursor is None
    with pytest.raises(DeviceRevokedError):
        phone.log_visit("hh-g1-1", "door", [], "")


def test_msgpack_and_gzip_round_trip(client, tiny, store):
    phone = device(client, tiny, "m1", encoding="msgpack", gzip=True)
    phone.sync()
    assert set(phone.households()) == set(tiny.households["g1"])
    phone.update_household("hh-g1-3", fields={"phone": "13100000000"})
    assert phone.sync().push.applied == 1
    assert server_household(store, "hh-g1-3")["phone"] == "13100000000"


# -- gridsync simulate ---------------------------------------------------------------------------


def test_simulate_converges_against_a_real_server(db_path):
    import json

    from click.testing import CliRunner

    from gridsync.cli import cli
    from gridsync.db import Store
    from tests.conftest import build_tiny_org
    from tests.servers import ServerProcess

    with Store(db_path) as store:
        build_tiny_org(store)
    with ServerProcess(db_path) as server:
        result = CliRunner().invoke(
            cli,
            [
                "simulate",
                "--url",
                server.url,
                "--db",
                db_path,
                "--devices",
                "4",
                "--days",
                "3",
                "--seed",
                "7",
                "--json",
            ],
        )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] is True
    assert doc["converged_devices"] == doc["devices"] == 4
    assert doc["visits_created"] > 0
    assert doc["visits_on_server"] == doc["visits_created"] - doc["visits_rejected"]
    assert doc["mutations_pushed"] == (
        doc["visits_created"] + doc["visits_voided"] + doc["household_edits"]
    )

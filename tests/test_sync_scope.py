"""Scope in sync: from the token only; reassignment moves households in and out of pulls; a
foreign household's edit is rejected; an offline edit made before a reassignment is accepted."""

from __future__ import annotations

import time

from gridsync import auth, org
from gridsync.audit import Actor
from gridsync.clock import iso_ms, now_iso
from gridsync.sync.hlc import format_hlc
from tests.sync_helpers import Phone, state


def phone(client, tiny, person: str) -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def seq_of(store, hid: str) -> int:
    return store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = ?", [hid]).fetchone()[0]
    )


def households(replica) -> set[str]:
    return {i for (t, i) in replica if t == "household"}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_pull_is_scoped_by_token(client, tiny):
    m1, m2, sec = (phone(client, tiny, p) for p in ("m1", "m2", "sec"))
    assert households(state(m1.pull_all())) == set(tiny.households["g1"])
    assert households(state(m2.pull_all())) == set(tiny.households["g2"])
    assert households(state(sec.pull_all())) == set(tiny.households["g1"] + tiny.households["g2"])
    units = {i for (t, i) in state(m1.pull_all()) if t == "org_unit"}
    assert "g2" not in units


def test_foreign_household_edit_is_rejected(client, tiny, store):
    m2 = phone(client, tiny, "m2")
    r = m2.push(
        [
            m2.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=seq_of(store, "hh-g1-1"),
                fields={"notes": "not mine"},
            ),
            m2.mutation("household.create", "new-hh", data={"grid_id": "g1"}),
        ]
    )
    assert [(x["status"], x["code"]) for x in r.json()["results"]] == [
        ("rejected", "out_of_scope"),
        ("rejected", "out_of_scope"),
    ]
    notes = store.read(
        lambda db: db.execute("SELECT notes FROM households WHERE id = 'hh-g1-1'").fetchone()[0]
    )
    assert notes == ""


def test_household_moved_to_another_grid_leaves_and_enters_pulls(client, tiny, store):
    m1, m2, sec = (phone(client, tiny, p) for p in ("m1", "m2", "sec"))
    visit = m1.visit("hh-g1-3", at=now_iso())
    assert m1.push([visit]).json()["results"][0]["status"] == "applied"
    rep1, rep2 = state(m1.pull_all()), state(m2.pull_all())
    assert "hh-g1-3" in households(rep1) and "hh-g1-3" not in households(rep2)
    # m1 edits offline before the move; the secretary moves the household to g2.
    offline = m1.mutation(
        "household.update",
        "hh-g1-3",
        base_seq=seq_of(store, "hh-g1-3"),
        hlc=m1.hlc(now_ms() - 60_000),
        fields={"notes": "edited offline"},
    )
    move = sec.mutation(
        "household.update", "hh-g1-3", base_seq=seq_of(store, "hh-g1-3"), fields={"grid_id": "g2"}
    )
    assert sec.push([move]).json()["results"][0]["status"] == "applied"
    changes1 = m1.pull_all()
    assert {"type": "household", "id": "hh-g1-3", "op": "remove"}.items() <= {
        k: v for c in changes1 if c["id"] == "hh-g1-3" for k, v in c.items()
    }.items()
    rep1 = {**rep1}
    for c in changes1:
        if c["op"] == "remove":
            rep1.pop((c["type"], c["id"]), None)
    assert "hh-g1-3" not in households(rep1)
    changes2 = m2.pull_all()
    put = [c for c in changes2 if c["id"] == "hh-g1-3"]
    assert put and put[-1]["op"] == "put" and put[-1]["data"]["grid_id"] == "g2"
    # Its visits follow it to the new grid's phones.
    assert [c["id"] for c in changes2 if c["type"] == "visit"] == [visit["id"]]
    # The offline edit made before the move is still accepted...
    r = m1.push([offline]).json()["results"][0]
    assert r["status"] == "applied", r
    # ...but a new edit of the now foreign household is not.
    late = m1.mutation(
        "household.update",
        "hh-g1-3",
        base_seq=seq_of(store, "hh-g1-3"),
        fields={"notes": "after the move"},
    )
    assert m1.push([late]).json()["results"][0]["code"] == "out_of_scope"
    # m2 receives m1's accepted edit.
    assert [c["data"]["notes"] for c in m2.pull_all() if c["id"] == "hh-g1-3"] == ["edited offline"]


def test_person_reassigned_gets_removes_and_puts(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    replica = state(m1.pull_all())
    assert households(replica) == set(tiny.households["g1"])
    before = now_ms() - 30_000
    offline = m1.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=seq_of(store, "hh-g1-2"),
        hlc=m1.hlc(before),
        fields={"notes": "visited before reassignment"},
    )
    offline_visit = m1.mutation(
        "visit.create",
        "0190a000-0000-7000-8000-000000000001",
        hlc=m1.hlc(before),
        data={"household_id": "hh-g1-2", "at": "2026-11-20T09:30:00+08:00", "channel": "door"},
    )
    store.write(org.set_scope, "m1", ["g2"], Actor.cli())
    for c in m1.pull_all():
        if c.get("reset"):
            raise AssertionError("a scope change is put/remove, not a reset")
        key = (c["type"], c["id"])
        if c["op"] == "put":
            replica[key] = c["data"]
        else:
            replica.pop(key, None)
    assert households(replica) == set(tiny.households["g2"])
    # Edits made before the reassignment are accepted; one made after is not.
    res = m1.push([offline, offline_visit]).json()["results"]
    assert [x["status"] for x in res] == ["applied", "applied"], res
    after = m1.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=seq_of(store, "hh-g1-2"),
        hlc=format_hlc(now_ms() + 1000, 0, "dev-m1"),
        fields={"notes": "later"},
    )
    assert m1.push([after]).json()["results"][0]["code"] == "out_of_scope"
    # Incremental pulls go on normally after the transition.
    assert m1.pull_all() == []


def test_an_edit_cannot_be_dated_back_to_before_a_reassignment(client, tiny, store):
    """The "edited while still in scope" acceptance trusts the edit's HLC, which the phone
    writes; but a device's HLCs only go forward, so an edit dated before the device's earlier
    mutations is checked at the time of those (SPEC 3.1: edits made while still in scope)."""
    m1 = phone(client, tiny, "m1")
    m1.pull_all()
    tablet = _second_device(store, "m1")  # enrolled before the reassignment, then offline
    before = now_ms() - 60_000
    _backdate_enrollment(store, tablet[1], before - 60_000)
    store.write(org.set_scope, "m1", ["g2"], Actor.cli())
    # After the reassignment the phone pushes an edit of its new grid, stamped now...
    fresh = m1.mutation(
        "household.update",
        "hh-g2-1",
        base_seq=seq_of(store, "hh-g2-1"),
        hlc=m1.hlc(now_ms()),
        fields={"notes": "new grid"},
    )
    assert m1.push([fresh]).json()["results"][0]["status"] == "applied"
    # ...then one of a household it lost, dated a minute back: refused, and so is a visit.
    backdated = m1.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=seq_of(store, "hh-g1-2"),
        hlc=m1.hlc(before),
        fields={"notes": "dated back"},
    )
    visit = m1.mutation(
        "visit.create",
        "0190a000-0000-7000-8000-0000000000bd",
        hlc=m1.hlc(before),
        data={"household_id": "hh-g1-2", "at": "2026-11-20T09:30:00+08:00", "channel": "door"},
    )
    res = m1.push([backdated, visit]).json()["results"]
    assert [x.get("code") for x in res] == ["out_of_scope", "out_of_scope"], res
    row = store.read(
        lambda db: db.execute("SELECT notes FROM households WHERE id = 'hh-g1-2'").fetchone()
    )
    assert row[0] != "dated back"
    # A device enrolled after the reassignment holds no edit from before its enrollment: refused.
    late = Phone(client, *_second_device(store, "m1"))
    claimed = late.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=seq_of(store, "hh-g1-2"),
        hlc=late.hlc(before),
        fields={"notes": "from a new phone"},
    )
    assert late.push([claimed]).json()["results"][0]["code"] == "out_of_scope"
    # Another device of the same person, enrolled before and offline since, keeps the SPEC's
    # promise: its edit from before the reassignment is accepted.
    other = Phone(client, *tablet)
    offline = other.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=seq_of(store, "hh-g1-2"),
        hlc=other.hlc(before),
        fields={"notes": "offline on the tablet"},
    )
    assert other.push([offline]).json()["results"][0]["status"] == "applied"


def _second_device(store, person: str) -> tuple[str, str]:
    enrolled = store.write(auth.enroll, person, Actor.cli(), label="tablet")
    return enrolled.token, enrolled.device_id


def _backdate_enrollment(store, device_id: str, at_ms: int) -> None:
    """The device was enrolled at ``at_ms`` (tests act out hours of offline work in seconds)."""
    store.write(
        lambda db: db.execute(
            "UPDATE devices SET created_at = ? WHERE id = ?", [iso_ms(at_ms), device_id]
        )
    )


def test_conflicts_are_scoped(client, tiny, store):
    sec, m1, m2 = (phone(client, tiny, p) for p in ("sec", "m1", "m2"))
    base = seq_of(store, "hh-g2-1")
    m2.push(
        [
            m2.mutation(
                "household.update",
                "hh-g2-1",
                base_seq=base,
                hlc=format_hlc(now_ms(), 0, "dev-m2"),
                fields={"notes": "B"},
            )
        ]
    )
    sec.push(
        [
            sec.mutation(
                "household.update",
                "hh-g2-1",
                base_seq=base,
                hlc=format_hlc(now_ms() - 5000, 0, "dev-sec"),
                fields={"notes": "A"},
            )
        ]
    )
    assert client.get("/api/v1/sync/conflicts", headers=sec.headers()).json()["total"] == 1
    # A member is not a secretary: 403; a secretary of another scope would see nothing.
    r = client.get("/api/v1/sync/conflicts", headers=m1.headers())
    assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_conflicts_and_status_of_another_scope_stay_hidden(client, tiny, store):
    store.write(
        org.add_people,
        [org.NewPerson(id="bsec", name="周书记", roles=["branch_secretary"], scope=["b1"])],
        Actor.cli(),
    )
    token = store.write(auth.enroll, "bsec", Actor.cli(), device_id="dev-bsec").token
    bsec = Phone(client, token, "dev-bsec")
    sec, m2 = phone(client, tiny, "sec"), phone(client, tiny, "m2")
    base = seq_of(store, "hh-g2-3")
    m2.push(
        [
            m2.mutation(
                "household.update",
                "hh-g2-3",
                base_seq=base,
                hlc=format_hlc(now_ms(), 0, "dev-m2"),
                fields={"phone": "B"},
            )
        ]
    )
    sec.push(
        [
            sec.mutation(
                "household.update",
                "hh-g2-3",
                base_seq=base,
                hlc=format_hlc(now_ms() - 5000, 0, "dev-sec"),
                fields={"phone": "A"},
            )
        ]
    )
    conflict = client.get("/api/v1/sync/conflicts", headers=sec.headers()).json()["items"][0]
    # The g1 branch secretary sees neither the conflict nor a count of it, nor can restore it.
    assert client.get("/api/v1/sync/conflicts", headers=bsec.headers()).json()["total"] == 0
    assert (
        client.get("/api/v1/sync/status", headers=bsec.headers()).json()["pending_conflicts"] == 0
    )
    r = client.post(f"/api/v1/sync/conflicts/{conflict['id']}/restore", headers=bsec.headers())
    assert r.status_code == 404
    status = client.get("/api/v1/sync/status", headers=bsec.headers()).json()
    assert (
        status["full_sync_changes"]
        < client.get("/api/v1/sync/status", headers=sec.headers()).json()["full_sync_changes"]
    )
    assert households(state(bsec.pull_all())) == set(tiny.households["g1"])

"""Push: ops, exactly once, merge and the conflict log, clock sanity, audit."""

from __future__ import annotations

import json

from gridsync import auth, org
from gridsync.clock import parse_ms, uuid7
from gridsync.sync.hlc import format_hlc
from tests.conftest import CLI
from tests.sync_helpers import Phone, state


def phone(client, tiny, person: str, **kw) -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person], **kw)


def base(store, hid) -> int:
    return store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = ?", [hid]).fetchone()[0]
    )


def household_row(store, hid):
    return store.read(
        lambda db: db.execute(
            "SELECT phone, notes, tags, status, seq, last_visit_ms, grid_id FROM households "
            "WHERE id = ?",
            [hid],
        ).fetchone()
    )


def test_push_applies_ops_and_pull_returns_them(client, tiny, store):
    p = phone(client, tiny, "m1")
    hid = uuid7()
    muts = [
        p.mutation(
            "household.create",
            hid,
            data={
                "grid_id": "g1",
                "building": "5号楼",
                "room": "201",
                "head_name": "陈",
                "size": 3,
                "tags": ["renter"],
            },
        ),
        p.mutation(
            "household.update",
            "hh-g1-1",
            base_seq=base(store, "hh-g1-1"),
            fields={"phone": "13900000000", "notes": "腿脚不便"},
            tags_add=["disabled"],
        ),
        p.visit(hid, kinds=["policy", "safety"]),
        p.visit("hh-g1-1", at="2026-11-21T10:00:00+08:00"),
        p.mutation("household.move_out", "hh-g1-2", base_seq=base(store, "hh-g1-2")),
    ]
    r = p.push(muts)
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["status"] for x in body["results"]] == ["applied"] * 5
    assert [x["mid"] for x in body["results"]] == [m["mid"] for m in muts]
    assert body["server_hlc"] and body["last_seq"] == 5
    assert household_row(store, "hh-g1-1")[:3] == (
        "13900000000",
        "腿脚不便",
        '["disabled","elderly_alone"]',
    )
    assert household_row(store, "hh-g1-2")[3] == "moved_out"
    assert household_row(store, "hh-g1-1")[5] == parse_ms("2026-11-21T10:00:00+08:00")

    replica = state(p.pull_all())
    created = replica[("household", hid)]
    assert created == {
        "id": hid,
        "grid_id": "g1",
        "building": "5号楼",
        "unit": "",
        "room": "201",
        "head_name": "陈",
        "phone": "",
        "size": 3,
        "tags": ["renter"],
        "notes": "",
        "responsible_member_id": None,
        "status": "active",
    }
    visits = [v for (t, _), v in replica.items() if t == "visit"]
    assert {v["household_id"] for v in visits} == {hid, "hh-g1-1"}
    assert all(v["member_id"] == "m1" and v["device_id"] == "dev-m1" for v in visits)
    assert set(visits[0]) == {
        "id",
        "household_id",
        "member_id",
        "device_id",
        "at",
        "channel",
        "kinds",
        "note",
        "geo",
        "voided",
        "household_ids",  # null: a visit of one household (a group visit lists them)
    }
    # Only g1 for m1: no household of g2.
    assert not any(d.get("grid_id") == "g2" for (t, _), d in replica.items() if t == "household")


def test_resent_batch_is_duplicate_without_second_effect(client, tiny, store):
    p = phone(client, tiny, "m1")
    muts = [
        p.visit("hh-g1-1"),
        p.visit("hh-g1-2"),
        p.mutation(
            "household.update", "hh-g1-3", base_seq=base(store, "hh-g1-3"), fields={"notes": "x"}
        ),
    ]
    assert p.push(muts).status_code == 200
    seq_before = household_row(store, "hh-g1-3")[4]
    again = p.push(muts)
    assert again.status_code == 200
    assert [x["status"] for x in again.json()["results"]] == ["duplicate"] * 3
    assert household_row(store, "hh-g1-3")[4] == seq_before
    n = store.read(lambda db: db.execute("SELECT count(*) FROM visits").fetchone()[0])
    assert n == 2
    # Resent together with new ones: the old ones are duplicates, the new one applies.
    more = p.visit("hh-g1-4")
    r = p.push([*muts, more])
    assert [x["status"] for x in r.json()["results"]] == ["duplicate"] * 3 + ["applied"]


def test_same_mid_under_new_seq_is_duplicate(client, tiny, store):
    p = phone(client, tiny, "m1")
    first = p.mutation(
        "household.update", "hh-g1-1", base_seq=base(store, "hh-g1-1"), fields={"notes": "once"}
    )
    assert p.push([first]).status_code == 200
    second = {
        **p.mutation(
            "household.update",
            "hh-g1-1",
            base_seq=base(store, "hh-g1-1"),
            fields={"notes": "twice"},
        ),
        "mid": first["mid"],
    }
    r = p.push([second])
    assert r.json()["results"][0]["status"] == "duplicate"
    assert r.json()["last_seq"] == 2  # the seq is consumed
    assert household_row(store, "hh-g1-1")[1] == "once"


def test_rejected_mutations_do_not_block_the_batch(client, tiny, store):
    p = phone(client, tiny, "m1")
    muts = [
        p.mutation(
            "household.update",
            "hh-g2-1",
            base_seq=base(store, "hh-g2-1"),
            fields={"notes": "foreign"},
        ),
        p.visit("hh-g2-1"),
        p.visit("no-such-household"),
        p.visit("hh-g1-1", channel="pigeon"),
        p.visit("hh-g1-1", kinds=["astrology"]),
        p.mutation(
            "household.update",
            "hh-g1-1",
            base_seq=base(store, "hh-g1-1"),
            fields={"responsible_member_id": "m1"},
        ),
        p.mutation(
            "household.update",
            "hh-g1-1",
            base_seq=base(store, "hh-g1-1"),
            fields={"status": "archived"},
        ),
        p.mutation("whatever.op", "x"),
        p.mutation("visit.void", "no-such-visit"),
        p.visit("hh-g1-1"),
    ]
    r = p.push(muts)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert [(x["status"], x.get("code")) for x in res] == [
        ("rejected", "out_of_scope"),
        ("rejected", "out_of_scope"),
        ("rejected", "not_found"),
        ("rejected", "validation_error"),
        ("rejected", "validation_error"),
        ("rejected", "forbidden_field"),
        ("rejected", "forbidden_field"),
        ("rejected", "unknown_op"),
        ("rejected", "not_found"),
        ("applied", None),
    ]
    assert all(x["message"] for x in res[:-1])
    assert "$.mutations[3].data.channel" in res[3]["message"]
    assert household_row(store, "hh-g2-1")[1] == ""
    logged = store.read(
        lambda db: db.execute("SELECT status, code FROM sync_mutations ORDER BY seq").fetchall()
    )
    assert len(logged) == 9 and logged[0] == ("rejected", "out_of_scope")  # visits: own record
    # Rejected ones consumed their seq: a resend is all duplicates.
    again = p.push(muts).json()["results"]
    assert {x["status"] for x in again} == {"duplicate"}


def test_field_merge_loses_nothing(client, tiny, store):
    sec = phone(client, tiny, "sec")
    m1 = phone(client, tiny, "m1")
    base = household_row(store, "hh-g1-1")[4]
    # Both edited offline from the same base; m1's edit is later by HLC but pushed first.
    early = sec.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860000000, 0, "dev-sec"),
        fields={"phone": "13700000001", "notes": "秘书备注"},
    )
    late = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860005000, 0, "dev-m1"),
        fields={"phone": "13700000002"},
    )
    assert m1.push([late]).json()["results"][0]["status"] == "applied"
    res = sec.push([early]).json()["results"][0]
    assert res["status"] == "merged"
    assert res["lost"] == [
        {
            "field": "phone",
            "value": "13700000001",
            "winner": "13700000002",
            "conflict_id": res["lost"][0]["conflict_id"],
        }
    ]
    row = household_row(store, "hh-g1-1")
    assert row[0] == "13700000002" and row[1] == "秘书备注"  # notes had no rival: it applied
    page = client.get("/api/v1/sync/conflicts", headers=sec.headers()).json()
    assert page["total"] == 1
    c = page["items"][0]
    assert (c["field"], c["value"], c["winner"]) == ("phone", "13700000001", "13700000002")
    assert (c["lost_person_id"], c["lost_device_id"]) == ("sec", "dev-sec")
    assert (c["winner_person_id"], c["winner_device_id"]) == ("m1", "dev-m1")
    assert c["lost_hlc"].endswith("dev-sec") and c["winner_hlc"].endswith("dev-m1")


def test_later_unseen_write_logs_the_overwritten_value(client, tiny, store):
    sec = phone(client, tiny, "sec")
    m1 = phone(client, tiny, "m1")
    base = household_row(store, "hh-g1-1")[4]
    first = sec.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860000000, 0, "dev-sec"),
        fields={"notes": "A"},
    )
    second = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860009000, 0, "dev-m1"),
        fields={"notes": "B"},
    )
    sec.push([first])
    res = m1.push([second]).json()["results"][0]
    assert res["status"] == "merged"
    assert (res["lost"][0]["value"], res["lost"][0]["winner"]) == ("A", "B")
    assert household_row(store, "hh-g1-1")[1] == "B"
    # A sequential edit (the writer saw the value) is no conflict.
    seen = household_row(store, "hh-g1-1")[4]
    third = sec.mutation("household.update", "hh-g1-1", base_seq=seen, fields={"notes": "C"})
    assert sec.push([third]).json()["results"][0]["status"] == "applied"


def test_tags_add_wins_over_concurrent_remove(client, tiny, store):
    sec = phone(client, tiny, "sec")
    m1 = phone(client, tiny, "m1")
    base = household_row(store, "hh-g1-2")[4]
    add = m1.mutation("household.update", "hh-g1-2", base_seq=base, tags_add=["low_income"])
    assert m1.push([add]).json()["results"][0]["status"] == "applied"
    # sec did not see that add: its remove loses (add wins) and is logged.
    remove = sec.mutation(
        "household.update",
        "hh-g1-2",
        base_seq=base,
        tags_remove=["low_income"],
        tags_add=["renter"],
    )
    res = sec.push([remove]).json()["results"][0]
    assert res["status"] == "merged"
    assert res["lost"][0]["field"] == "tags:low_income"
    assert (res["lost"][0]["value"], res["lost"][0]["winner"]) == (False, True)
    assert json.loads(household_row(store, "hh-g1-2")[2]) == ["low_income", "renter"]
    # A remove of an add it saw applies.
    seen = household_row(store, "hh-g1-2")[4]
    r = sec.push(
        [sec.mutation("household.update", "hh-g1-2", base_seq=seen, tags_remove=["low_income"])]
    ).json()["results"][0]
    assert r["status"] == "applied"
    assert json.loads(household_row(store, "hh-g1-2")[2]) == ["renter"]
    # Both concurrent adds survive.
    b = household_row(store, "hh-g1-2")[4]
    m1.push([m1.mutation("household.update", "hh-g1-2", base_seq=b, tags_add=["disabled"])])
    sec.push([sec.mutation("household.update", "hh-g1-2", base_seq=b, tags_add=["elderly_alone"])])
    assert json.loads(household_row(store, "hh-g1-2")[2]) == ["disabled", "elderly_alone", "renter"]


def test_clock_ahead_is_clamped(client, tiny, store):
    p = phone(client, tiny, "m1")
    year_ahead = format_hlc(1763860000000 + 365 * 86_400_000 * 2, 0, "dev-m1")
    m = p.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base(store, "hh-g1-1"),
        hlc=year_ahead,
        fields={"notes": "from the future"},
    )
    body = p.push([m]).json()
    res = body["results"][0]
    assert res == {"mid": m["mid"], "status": "applied", "clock": "clamped"}
    stamps = store.read(
        lambda db: db.execute("SELECT field_hlc FROM households WHERE id = 'hh-g1-1'").fetchone()[0]
    )
    notes_hlc = json.loads(stamps)["notes"][0]
    assert notes_hlc.endswith(":server") and notes_hlc < year_ahead
    assert body["server_hlc"] >= notes_hlc[:21]
    # The clamped phone no longer beats an honest later edit.
    sec = phone(client, tiny, "sec")
    later = sec.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=household_row(store, "hh-g1-1")[4],
        fields={"notes": "now"},
    )
    assert sec.push([later]).json()["results"][0]["status"] == "applied"
    assert household_row(store, "hh-g1-1")[1] == "now"


def test_visit_void_and_last_visit(client, tiny, store):
    p = phone(client, tiny, "m1")
    v1 = p.visit("hh-g1-3", at="2026-11-10T09:00:00+08:00")
    v2 = p.visit("hh-g1-3", at="2026-11-12T09:00:00+08:00")
    p.push([v1, v2])
    assert household_row(store, "hh-g1-3")[5] == parse_ms("2026-11-12T09:00:00+08:00")
    r = p.push([p.mutation("visit.void", v2["id"], data={"reason": "wrong household"})])
    assert r.json()["results"][0]["status"] == "applied"
    assert household_row(store, "hh-g1-3")[5] == parse_ms("2026-11-10T09:00:00+08:00")
    voided = store.read(
        lambda db: db.execute("SELECT voided FROM visits WHERE id = ?", [v2["id"]]).fetchone()[0]
    )
    assert voided == 1
    # visit.create is idempotent by id even under a new mid.
    again = {**v1, "mid": uuid7(), "seq": p.seq + 1}
    p.seq += 1
    assert p.push([again]).json()["results"][0]["status"] == "duplicate"


def test_only_the_author_or_a_secretary_above_may_void_a_visit(client, tiny, store):
    """issue 12's review: any member in scope could void another member's visits (and with
    them the other's 1-5-N contact). The rule is applied where voids are applied (the
    visit.void op), so it holds on every push; a refused void is rejected alone."""
    extra = [
        org.NewPerson(id="m3", name="王芳", roles=["member"], scope=["g1"], branch_id="b1"),
        org.NewPerson(id="gw", name="网格员", roles=["grid_worker"], scope=["g1"]),
        org.NewPerson(id="bsec", name="支部书记", roles=["branch_secretary"], scope=["b1"]),
    ]
    store.write(org.add_people, extra, CLI)
    for person in ("m3", "gw", "bsec"):
        enrolled = store.write(auth.enroll, person, CLI, device_id=f"dev-{person}")
        tiny.tokens[person], tiny.devices[person] = enrolled.token, enrolled.device_id
    m1 = phone(client, tiny, "m1")
    visits = [m1.visit("hh-g1-1", note=str(i)) for i in range(4)]
    assert {x["status"] for x in m1.push(visits).json()["results"]} == {"applied"}
    ids = [v["id"] for v in visits]

    def void(who: str, visit_id: str) -> dict:
        p = phone(client, tiny, who)
        p.seq = store.read(
            lambda db: db.execute(
                "SELECT last_seq FROM devices WHERE id = ?", [tiny.devices[who]]
            ).fetchone()[0]
        )
        first = p.mutation("visit.void", visit_id)
        other = p.visit("hh-g2-1" if who == "m2" else "hh-g1-2")  # in the pusher's scope
        r = p.push([first, other])
        assert r.status_code == 200, r.text
        first, then = r.json()["results"]
        assert then["status"] == "applied"  # the batch goes on
        return first

    def voided() -> set[str]:
        return {
            r[0]
            for r in store.read(
                lambda db: db.execute("SELECT id FROM visits WHERE voided = 1").fetchall()
            )
        }

    for who in ("m3", "gw"):  # another member, a grid worker of the grid: not theirs
        refused = void(who, ids[0])
        assert (refused["status"], refused["code"]) == ("rejected", "forbidden"), refused
        assert "m1" in refused["message"]
    assert voided() == set()
    m2 = void("m2", ids[0])  # outside the scope altogether
    assert (m2["status"], m2["code"]) == ("rejected", "out_of_scope")
    assert void("m1", ids[0])["status"] == "applied"  # the author
    assert void("bsec", ids[1])["status"] == "applied"  # the grid's branch secretary
    assert void("sec", ids[2])["status"] == "applied"  # the community secretary
    assert void("admin", ids[3])["status"] == "applied"
    assert voided() == set(ids)
    again = void("m3", ids[0])  # a voided visit is still not theirs to void
    assert (again["status"], again["code"]) == ("rejected", "forbidden")


def test_push_is_audited_once_per_batch(client, tiny, store):
    p = phone(client, tiny, "m1")
    p.push([p.visit("hh-g1-1"), p.visit("hh-g1-2")])
    rows = store.read(
        lambda db: db.execute(
            "SELECT person_id, device_id, detail FROM audit_log WHERE action = 'sync.push'"
        ).fetchall()
    )
    assert len(rows) == 1
    assert rows[0][:2] == ("m1", "dev-m1")
    assert json.loads(rows[0][2])["applied"] == 2
    assert json.loads(rows[0][2])["app"] == "test/1.0"


def test_msgpack_and_gzip_both_ways(client, tiny, store):
    import gzip

    import msgspec

    p = phone(client, tiny, "m1")
    body = msgspec.msgpack.encode({"device_id": "dev-m1", "mutations": [p.visit("hh-g1-1")]})
    r = client.post(
        "/api/v1/sync/push",
        content=gzip.compress(body),
        headers=p.headers(
            **{
                "Content-Type": "application/msgpack",
                "Content-Encoding": "gzip",
                "Accept": "application/msgpack",
            }
        ),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/msgpack")
    decoded = msgspec.msgpack.decode(r.content)
    assert decoded["results"][0]["status"] == "applied"
    page = client.get(
        "/api/v1/sync/pull",
        headers=p.headers(**{"Accept": "application/msgpack", "Accept-Encoding": "gzip"}),
    )
    assert page.headers.get("content-encoding") == "gzip"
    assert msgspec.msgpack.decode(page.content)["changes"]


def test_visit_dated_in_the_future_does_not_count_as_contact_ahead(client, tiny, store):
    """A phone whose clock is a year ahead keeps its visit (``at`` as sent), but the visit
    counts from the server's receipt: it must not mark the household contacted for a year."""
    p = phone(client, tiny, "m1")
    visit = p.visit("hh-g1-3", at="2027-11-20T09:30:00+08:00")
    r = p.push([visit])
    assert r.json()["results"][0]["status"] == "applied"
    at, at_ms = store.read(
        lambda db: db.execute("SELECT at, at_ms FROM visits WHERE id = ?", [visit["id"]]).fetchone()
    )
    assert at == "2027-11-20T09:30:00+08:00"
    assert at_ms < parse_ms("2027-01-01T00:00:00+08:00")
    assert household_row(store, "hh-g1-3")[5] == at_ms


def test_visit_kinds_follow_the_community_policy(client, tiny, store, settings):
    """A community that overrides its N service kinds: its phones record those kinds (the
    reports count them), not the district default's."""
    from gridsync import coverage
    from gridsync.audit import Actor

    store.write(
        coverage.set_policy,
        settings,
        Actor.cli(),
        "c1",
        coverage.PolicyOverride(service_kinds=["policy", "elderly_care"]),
    )
    p = phone(client, tiny, "m1")
    r = p.push([p.visit("hh-g1-1", kinds=["elderly_care"]), p.visit("hh-g1-2", kinds=["safety"])])
    results = r.json()["results"]
    assert results[0]["status"] == "applied", results
    assert (results[1]["status"], results[1]["code"]) == ("rejected", "validation_error")
    assert "elderly_care" in results[1]["message"]


def test_a_visit_id_taken_by_someone_else_is_rejected_not_a_silent_duplicate(client, tiny, store):
    """``duplicate`` means "already stored": another member's visit under a taken id (a buggy
    app, a reused id) must not be acknowledged as stored and dropped."""
    m1, m2 = phone(client, tiny, "m1"), phone(client, tiny, "m2")
    visit = m1.visit("hh-g1-1")
    assert m1.push([visit]).json()["results"][0]["status"] == "applied"
    again = m1.mutation("visit.create", visit["id"], data=visit["data"])
    assert m1.push([again]).json()["results"][0]["status"] == "duplicate"  # a resend
    clash = m2.mutation(
        "visit.create", visit["id"], data={**visit["data"], "household_id": "hh-g2-1"}
    )
    result = m2.push([clash]).json()["results"][0]
    assert (result["status"], result["code"]) == ("rejected", "id_taken"), result


def test_a_reused_mid_is_neither_a_poison_pill_nor_a_silent_drop(client, tiny, store):
    """mids are per device: another device's mutation under a known mid applies (it is not a
    resend), and a rejected mutation reusing a logged mid does not fail the batch (it was a
    500, resent forever)."""
    m1, m2 = phone(client, tiny, "m1"), phone(client, tiny, "m2")
    update = m1.mutation("household.update", "hh-g1-1", fields={"notes": "m1"})
    assert m1.push([update]).status_code == 200
    rejected = m1.visit("hh-g2-1")  # out of m1's scope: rejected, and rejections are logged
    rejected["mid"] = update["mid"]
    r = m1.push([rejected])
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["code"] == "out_of_scope"
    other = m2.mutation("household.update", "hh-g2-1", fields={"notes": "m2"})
    other["mid"] = update["mid"]
    assert m2.push([other]).json()["results"][0]["status"] in ("applied", "merged")
    assert household_row(store, "hh-g2-1")[1] == "m2"


def _updates(p: Phone, hid: str, seen: int) -> list[dict]:
    """A run of household updates on one household (as seen at ``seen``): a conflict, plain
    merges, tags added and removed, a refused one in the middle, a move to another grid and an
    edit after it."""
    return [
        p.mutation("household.update", hid, base_seq=seen, fields={"phone": "13600000001"}),
        p.mutation(
            "household.update",
            hid,
            base_seq=seen,
            fields={"notes": "第一次"},
            tags_add=["renter", "elderly"],
        ),
        p.mutation("household.update", hid, base_seq=seen, fields={"status": "moved_out"}),
        p.mutation("household.update", hid, base_seq=seen, tags_remove=["renter"]),
        p.mutation("household.update", hid, base_seq=seen, fields={"grid_id": "g2"}),
        p.mutation(
            "household.update",
            hid,
            base_seq=seen,
            fields={"notes": "搬到二网格后"},
            tags_add=["disabled"],
        ),
        p.mutation("household.update", hid, base_seq=seen, fields={"size": 4}),
    ]


def _outcome_shape(result: dict) -> tuple:
    return (
        result["status"],
        result.get("code"),
        [(x["field"], x["value"], x["winner"]) for x in result.get("lost") or []],
    )


def test_a_run_of_updates_in_one_push_ends_as_the_same_updates_pushed_one_by_one(
    client, tiny, store
):
    """Household updates are merged as a run (one load, one write at the end): the rows, the
    answers, the conflict log and the moves must be what one push per update gives."""
    other, sec = phone(client, tiny, "m1"), phone(client, tiny, "sec")
    batched, single = "hh-g1-1", "hh-g1-2"
    seen = {hid: base(store, hid) for hid in (batched, single)}
    tags_before = {hid: set(json.loads(household_row(store, hid)[2])) for hid in seen}
    for hid in (batched, single):  # an edit the secretary's phone has not seen: a conflict
        assert (
            other.push(
                [
                    other.mutation(
                        "household.update",
                        hid,
                        base_seq=base(store, hid),
                        fields={"phone": "13900000000"},
                    )
                ]
            ).status_code
            == 200
        )
    before = store.read(lambda db: db.execute("SELECT max(seq) FROM visits").fetchone()[0])
    assert sec.push([sec.visit(batched), sec.visit(single)]).status_code == 200

    r = sec.push(_updates(sec, batched, seen[batched]))
    assert r.status_code == 200, r.text
    run = [_outcome_shape(x) for x in r.json()["results"]]
    logged = [
        (x["conflict_id"], x["field"], x["value"])
        for result in r.json()["results"]
        for x in result.get("lost") or []
    ]
    assert (
        logged
        and store.read(
            lambda db: [
                db.execute(
                    "SELECT id, field, json_extract(value, '$') FROM sync_conflicts WHERE id = ? "
                    "AND household_id = ?",
                    [cid, batched],
                ).fetchone()
                for cid, _, _ in logged
            ]
        )
        == logged
    )
    one_by_one = []
    for m in _updates(sec, single, seen[single]):
        r = sec.push([m])
        assert r.status_code == 200, r.text
        one_by_one.append(_outcome_shape(r.json()["results"][0]))

    assert run == one_by_one
    assert [s for s, _, _ in run] == [
        "merged",
        "applied",
        "rejected",
        "applied",
        "applied",
        "applied",
        "applied",
    ]
    assert run[0][2] == [("phone", "13900000000", "13600000001")]

    def row(db, hid):
        return db.execute(
            "SELECT grid_id, phone, notes, tags, status, size FROM households WHERE id = ?", [hid]
        ).fetchone()

    def history(db, hid):
        return (
            db.execute(
                "SELECT field, value, winner FROM sync_conflicts "
                "WHERE household_id = ? ORDER BY id",
                [hid],
            ).fetchall(),
            db.execute(
                "SELECT from_grid, to_grid FROM household_moves WHERE household_id = ?", [hid]
            ).fetchall(),
            db.execute(
                "SELECT grid_id, seq > ? FROM visits WHERE household_id = ?", [before, hid]
            ).fetchall(),
        )

    for hid in (batched, single):
        *values, tags = store.read(row, hid)[:4]
        assert values == ["g2", "13600000001", "搬到二网格后"]
        assert set(json.loads(tags)) == (tags_before[hid] | {"disabled", "elderly"}) - {"renter"}
        assert store.read(row, hid)[4:] == ("active", 4)
    assert store.read(history, batched) == store.read(history, single)
    assert store.read(history, batched)[1] == [("g1", "g2")]
    # the row's change seq is its last update's; every field stamp is one of the run's writes
    seq, stamps = store.read(
        lambda db: db.execute(
            "SELECT seq, field_hlc FROM households WHERE id = ?", [batched]
        ).fetchone()
    )
    stamps = json.loads(stamps)
    assert stamps["size"][1] == seq and stamps["notes"][1] < seq
    assert stamps["phone"][2] == tiny.devices["sec"]


def test_field_stamps_written_by_other_tools_still_merge():
    """``field_hlc`` is decoded in one typed pass; stamps in other shapes (a bare HLC, short or
    oddly typed lists, no stamp at all) fall back to the lenient reading, pinned at the row's
    seq, and are written back in the canonical shape."""
    from gridsync.sync import merge

    row = (
        "h1",
        "g1",
        "",
        "",
        "",
        "",
        "",
        1,
        '["a","b"]',
        "",
        None,
        "active",
        json.dumps(
            {
                "phone": ["000000000000005:00000:dev-x", 17, "dev-x", "p"],
                "notes": "000000000000006:00001:other",
                "size": [],
                "unit": ["u", 2],
                "room": ["r", "7"],
                "tags": {"a": ["t", 5, None, None], "b": "tb"},
            }
        ),
        42,
    )
    state = merge.state_from_row(row)
    assert state.stamps["phone"] == merge.Stamp("000000000000005:00000:dev-x", 17, "dev-x", "p")
    assert state.stamps["notes"] == merge.Stamp("000000000000006:00001:other", 42)
    assert state.stamps["size"] == state.stamps["building"] == merge.Stamp("", 42)
    assert (state.stamps["unit"], state.stamps["room"]) == (
        merge.Stamp("u", 2),
        merge.Stamp("r", 7),
    )
    assert state.tag_adds == {"a": merge.Stamp("t", 5), "b": merge.Stamp("tb", 42)}
    stored = json.loads(merge.encode_stamps(state))
    assert stored["notes"] == ["000000000000006:00001:other", 42, None, None]
    assert stored["tags"] == {"a": ["t", 5, None, None], "b": ["tb", 42, None, None]}
    again = merge.state_from_row((*row[:12], merge.encode_stamps(state), 42))
    assert (again.stamps, again.tag_adds) == (state.stamps, state.tag_adds)
    # a writer that saw seq 17 overwrites phone without a conflict; one that did not, conflicts
    writer = merge.Stamp("000000000000009:00000:dev-y", 50, "dev-y", "q")
    assert merge.merge_field(again, "phone", "139", writer, 17) is None
    lost = merge.merge_field(merge.state_from_row(row), "phone", "139", writer, 16)
    assert lost is not None and lost.lost.seq == 17

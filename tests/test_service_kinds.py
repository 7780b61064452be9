"""The kept service kinds (migration 0007: newest non-voided visit per (grid, kind) and per (grid,
member, kind)) equal a recount straight from visits after every writer of visits: a phone's
visits (new kinds, an older visit arriving after a newer one, a resend, a refused visit), a
void, a household's move to another grid, and the demo generator (checked with the other kept
aggregates in ``tests/test_coverage_aggregates.py``)."""

from __future__ import annotations

from gridsync import visits
from gridsync.clock import parse_ms
from gridsync.db import Store
from tests.sync_helpers import Phone


def kept(db) -> tuple[dict, dict]:
    grids = {
        (g, k): ms
        for g, k, ms in db.execute("SELECT grid_id, kind, last_ms FROM coverage_grid_kinds")
    }
    members = {
        (g, m, k): ms
        for g, m, k, ms in db.execute(
            "SELECT grid_id, member_id, kind, last_ms FROM coverage_member_kinds"
        )
    }
    return grids, members


def from_visits(db) -> tuple[dict, dict]:
    """The same figures from visits alone (no kept table, no code of gridsync.visits)."""
    grids = {
        (g, k): ms
        for g, k, ms in db.execute(
            "SELECT v.grid_id, k.value, max(v.at_ms) FROM visits v, json_each(v.kinds) k "
            "WHERE v.voided = 0 GROUP BY 1, 2"
        )
    }
    members = {
        (g, m, k): ms
        for g, m, k, ms in db.execute(
            "SELECT v.grid_id, v.member_id, k.value, max(v.at_ms) FROM visits v, "
            "json_each(v.kinds) k WHERE v.voided = 0 GROUP BY 1, 2, 3"
        )
    }
    return grids, members


def assert_exact(store: Store) -> tuple[dict, dict]:
    got = store.read(kept)
    assert got == store.read(from_visits)
    return got


def test_kept_kinds_follow_pushes_voids_and_moves(client, tiny, store):
    sec = Phone(client, tiny.tokens["sec"], tiny.devices["sec"])
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    newer, older = "2026-11-20T09:30:00+08:00", "2026-11-18T09:30:00+08:00"

    # one batch: two grids, several kinds, the same key twice (the newer time wins)
    first = sec.visit("hh-g1-1", at=older, kinds=["policy", "safety"])
    latest = sec.visit("hh-g1-2", at=newer, kinds=["policy"])
    r = sec.push(
        [
            first,
            latest,
            sec.visit("hh-g2-1", at=older, kinds=["opinion"]),
            sec.visit("hh-g2-2", at=older, kinds=[]),
        ]
    )
    assert [x["status"] for x in r.json()["results"]] == ["applied"] * 4, r.text
    grids, members = assert_exact(store)
    assert grids[("g1", "policy")] == parse_ms(newer) and grids[("g1", "safety")] == parse_ms(older)
    assert members[("g2", "sec", "opinion")] == parse_ms(older)

    # another member; an older visit arriving after a newer one does not move the time back;
    # a resend and a refused visit (unknown kind) change nothing
    r = m1.push([m1.visit("hh-g1-3", at=older, kinds=["policy", "dispute"])])
    assert r.json()["results"][0]["status"] == "applied", r.text
    older_policy = sec.visit("hh-g1-4", at=older, kinds=["policy"])
    r = sec.push([older_policy, sec.visit("hh-g1-4", kinds=["no-such-kind"])])
    assert [x["status"] for x in r.json()["results"]] == ["applied", "rejected"], r.text
    r = sec.push([first])  # a resend of an applied batch's mutation
    assert r.json()["results"][0]["status"] == "duplicate", r.text
    grids, members = assert_exact(store)
    assert grids[("g1", "policy")] == parse_ms(newer)
    assert members[("g1", "m1", "dispute")] == parse_ms(older)
    assert not any(k == "no-such-kind" for _, k in grids)

    # voiding a visit that is not the newest of any of its keys changes nothing kept (and
    # recounts nothing)
    before = store.read(kept)
    r = sec.push([sec.mutation("visit.void", older_policy["id"])])
    assert r.json()["results"][0]["status"] == "applied", r.text
    assert assert_exact(store) == before
    # voiding the newest visit of a kind brings the time back to the next newest
    r = sec.push([sec.mutation("visit.void", latest["id"])])
    assert r.json()["results"][0]["status"] == "applied", r.text
    grids, _ = assert_exact(store)
    assert grids[("g1", "policy")] == parse_ms(older)
    # voiding the only visit of a kind removes it
    r = sec.push([sec.mutation("visit.void", first["id"])])
    grids, members = assert_exact(store)
    assert ("g1", "safety") not in grids and ("g1", "sec", "safety") not in members

    # a household moving to another grid takes its visits' kinds along
    seq = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'hh-g1-3'").fetchone()[0]
    )
    r = sec.push(
        [sec.mutation("household.update", "hh-g1-3", base_seq=seq, fields={"grid_id": "g2"})]
    )
    assert r.json()["results"][0]["status"] == "applied", r.text
    grids, members = assert_exact(store)
    assert ("g1", "dispute") not in grids and grids[("g2", "dispute")] == parse_ms(older)
    assert ("g2", "m1", "dispute") in members and ("g1", "m1", "dispute") not in members

    # the recount (the migration's backfill) gives the same rows
    before = store.read(kept)
    store.write(lambda db: db.execute("DELETE FROM coverage_member_kinds"))
    store.write(visits.recount_kinds)
    assert store.read(kept) == before

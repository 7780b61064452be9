"""Pull: paged consistent snapshot, incremental changes, resets, visit window, restores reaching
phones, status, and the byte budgets of SPEC section 8."""

from __future__ import annotations

import gzip
import random
import time

import msgspec

from gridsync import auth, demo, org
from gridsync import db as gdb
from gridsync.audit import Actor
from gridsync.clock import iso_ms, now_iso, uuid7
from gridsync.db import next_seq
from gridsync.models import OrgUnit
from gridsync.sync.hlc import format_hlc
from gridsync.sync.pull import Cursor, decode_cursor, encode_cursor, set_horizon
from tests.sync_helpers import Phone, state

DAY = 86_400_000


def phone(client, tiny, person: str) -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def server_households(store, grids) -> dict[str, dict]:
    from gridsync.households import HOUSEHOLD_SELECT, household_from_row
    from gridsync.privacy import ALL_PHONES

    rows = store.read(
        lambda db: db.execute(
            f"SELECT {HOUSEHOLD_SELECT} FROM households h "
            f"WHERE grid_id IN ({','.join('?' * len(grids))})",
            grids,
        ).fetchall()
    )
    return {r[0]: msgspec.to_builtins(household_from_row(r, ALL_PHONES)) for r in rows}


def seq_of(store, hid):
    return store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = ?", [hid]).fetchone()[0]
    )


def test_initial_snapshot_pages_are_consistent_while_data_changes(client, tiny, store):
    sec = phone(client, tiny, "sec")
    m1 = phone(client, tiny, "m1")
    first = sec.pull_page(limit=3)
    assert first["has_more"] and not first["reset"] and len(first["changes"]) == 3
    seqs = [c["seq"] for c in first["changes"]]
    assert seqs == sorted(seqs)
    changes = list(first["changes"])
    sec.cursor = first["cursor"]
    # Meanwhile: a household already sent and one not yet sent change, one is created.
    m1.push(
        [
            m1.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=seq_of(store, "hh-g1-1"),
                fields={"phone": "13911112222"},
            ),
            m1.mutation(
                "household.update",
                "hh-g1-4",
                base_seq=seq_of(store, "hh-g1-4"),
                fields={"notes": "changed mid-snapshot"},
            ),
            m1.mutation("household.create", "hh-new", data={"grid_id": "g1", "room": "909"}),
        ]
    )
    changes += sec.pull_all(limit=3)
    replica = state(changes)
    got = {i: d for (t, i), d in replica.items() if t == "household"}
    assert got == server_households(store, ["g1", "g2"])
    assert got["hh-g1-4"]["notes"] == "changed mid-snapshot"
    # The snapshot part never shows a row newer than its pinned bound: each row's final value
    # arrives after all snapshot rows (seq order is kept throughout).
    all_seqs = [c["seq"] for c in changes]
    assert all_seqs == sorted(all_seqs)
    assert {t for (t, _) in replica} >= {"org_unit", "person", "household"}


def test_incremental_pull_only_sends_changes(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    m1.pull_all()
    assert m1.pull_all() == []
    m1.push([m1.visit("hh-g1-1")])
    new = m1.pull_all()
    assert [(c["type"], c["op"]) for c in new] == [("visit", "put")]
    page = m1.pull_page(m1.cursor)
    assert page == {
        "changes": [],
        "cursor": m1.cursor,
        "has_more": False,
        "reset": False,
        "server_hlc": page["server_hlc"],
    }


def test_bad_cursors_reset(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    m1.pull_all()
    good = m1.cursor
    for bad in ("not-a-cursor", "AAAA", good[:-3]):
        page = m1.pull_page(bad)
        assert page["reset"] is True, bad
        assert any(c["type"] == "household" for c in page["changes"])
    # A well-formed cursor with contents this server never issued: reset, not an error.
    real = decode_cursor(good)
    for forged in (
        Cursor(1, real.epoch, real.sv, 5, 0, old_sv=999),
        Cursor(1, real.epoch, 999, 5),
        Cursor(2, real.epoch, real.sv, 5),
        Cursor(1, real.epoch, real.sv, 10**15, 10**15 + 5, rm="zzz"),
    ):
        page = m1.pull_page(encode_cursor(forged))
        assert page["reset"] in (True, False) and "changes" in page
    assert (
        m1.pull_page(encode_cursor(Cursor(1, real.epoch, real.sv, 5, 0, old_sv=999)))["reset"]
        is True
    )
    # Another database epoch (a restored backup): reset.
    store.write(gdb.new_epoch)
    assert m1.pull_page(good)["reset"] is True
    # Older than the tombstone horizon: reset.
    page = m1.pull_page()
    while page["has_more"]:
        page = m1.pull_page(page["cursor"])
    cursor = page["cursor"]
    assert m1.pull_page(cursor)["reset"] is False
    store.write(set_horizon, store.read(gdb.current_seq) + 1)
    assert m1.pull_page(cursor)["reset"] is True


def test_visits_of_current_and_previous_cycle_only(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    recent = m1.visit("hh-g1-1", at=now_iso())
    old = m1.visit("hh-g1-1", at="2025-01-01T09:00:00+08:00")
    m1.push([recent, old])
    visits = {i for (t, i) in state(m1.pull_all()) if t == "visit"}
    assert visits == {recent["id"]}


def test_the_visit_window_follows_the_communitys_own_cycle(client, tiny, store, settings):
    """A community that visits every 45 days keeps 90 days of visits on its phones, not the
    district's 60; the sync status's full-sync estimate counts the same window."""
    from gridsync import coverage

    m1 = phone(client, tiny, "m1")
    day = 86_400_000
    now = int(time.time() * 1000)
    at_70 = m1.visit("hh-g1-1", at=iso_ms(now - 70 * day))
    at_95 = m1.visit("hh-g1-2", at=iso_ms(now - 95 * day))
    assert m1.push([at_70, at_95]).status_code == 200

    def pulled() -> set[str]:
        return {i for (t, i) in state(phone(client, tiny, "m1").pull_all()) if t == "visit"}

    def estimate() -> int:
        return client.get("/api/v1/sync/status", headers=m1.headers()).json()["full_sync_changes"]

    assert at_70["id"] not in pulled()
    before = estimate()
    store.write(
        coverage.set_policy, settings, Actor.cli(), "c1", coverage.PolicyOverride(cycle_days=45)
    )
    assert pulled() >= {at_70["id"]} and at_95["id"] not in pulled()
    assert estimate() == before + 1


def test_restore_reaches_phones_with_a_fresh_server_hlc(client, tiny, store):
    sec, m1 = phone(client, tiny, "sec"), phone(client, tiny, "m1")
    m1.pull_all()
    base = seq_of(store, "hh-g1-1")
    m1.push(
        [
            m1.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=base,
                hlc=format_hlc(1763860009000, 0, "dev-m1"),
                fields={"phone": "winner"},
            )
        ]
    )
    r = sec.push(
        [
            sec.mutation(
                "household.update",
                "hh-g1-1",
                base_seq=base,
                hlc=format_hlc(1763860000000, 0, "dev-sec"),
                fields={"phone": "loser"},
            )
        ]
    ).json()["results"][0]
    cid = r["lost"][0]["conflict_id"]
    status = client.get("/api/v1/sync/status", headers=sec.headers()).json()
    assert status["pending_conflicts"] == 1
    m1.pull_all()
    restored = client.post(
        f"/api/v1/sync/conflicts/{cid}/restore",
        headers=sec.headers(),
        json={"note": "the secretary called them"},
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["status"] == "restored" and restored.json()["resolved_by"] == "sec"
    again = client.post(f"/api/v1/sync/conflicts/{cid}/restore", headers=sec.headers())
    assert again.status_code == 409 and again.json()["code"] == "conflict_closed"
    got = [c for c in m1.pull_all() if c["id"] == "hh-g1-1"]
    assert got[-1]["data"]["phone"] == "****r"  # m1 reads it masked (gridsync/privacy.py)
    assert [c for c in sec.pull_all() if c["id"] == "hh-g1-1"][-1]["data"]["phone"] == "loser"
    # The displaced value is kept in the log too (resolved), and nothing is pending.
    log = client.get("/api/v1/sync/conflicts?status=dismissed", headers=sec.headers()).json()
    assert [(c["value"], c["winner"]) for c in log["items"]] == [("winner", "loser")]
    status = client.get("/api/v1/sync/status", headers=sec.headers()).json()
    assert status["pending_conflicts"] == 0
    audit = store.read(
        lambda db: db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'sync.conflict.restore'"
        ).fetchone()[0]
    )
    assert audit == 1
    # A phone's late edit with an old HLC does not beat the restore.
    stale = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860010000, 0, "dev-m1"),
        fields={"phone": "stale"},
    )
    assert m1.push([stale]).json()["results"][0]["status"] == "merged"


def test_status_and_snapshot_audit(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    r = client.get("/api/v1/sync/status", headers=m1.headers())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["full_sync_changes"] >= 4 + 1  # 4 households, at least the grid
    assert body["full_sync_bytes"] > 0 and body["device_last_seq"] == 0
    assert body["server_hlc"].endswith(":server")
    m1.pull_all()
    audit = store.read(
        lambda db: db.execute(
            "SELECT count(*) FROM audit_log WHERE action = 'sync.snapshot' AND person_id = 'm1'"
        ).fetchone()[0]
    )
    assert audit == 1


# -- byte budgets (SPEC 8) -----------------------------------------------------------------------


def _wire_size(headers: dict[str, str], body: bytes, first_line: str) -> int:
    return (
        len(first_line) + 2 + sum(len(k) + len(v) + 4 for k, v in headers.items()) + 2 + len(body)
    )


def test_empty_incremental_pull_round_trip_under_1kb(client, tiny):
    m1 = phone(client, tiny, "m1")
    m1.pull_all()
    headers = {
        **m1.headers(),
        "Accept-Encoding": "gzip",
        "Host": "gridsync.example.cn",
        "User-Agent": "gridsync-app/1.0",
    }
    r = client.get("/api/v1/sync/pull", headers=headers, params={"cursor": m1.cursor})
    assert r.status_code == 200 and r.json()["changes"] == []
    request = _wire_size(headers, b"", f"GET /api/v1/sync/pull?cursor={m1.cursor} HTTP/1.1")
    raw_body = b"x" * r.num_bytes_downloaded
    response = _wire_size(dict(r.headers), raw_body, "HTTP/1.1 200 OK")
    print(f"empty incremental pull round trip: {request + response} bytes")
    assert request + response < 1024, (request, response)


def test_pushed_visit_under_300_bytes_gzip(client, tiny):
    m1 = phone(client, tiny, "m1")
    notes = ["", "独居老人，身体尚可", "反映楼道灯坏了", "宣传医保政策"]
    batch = [
        m1.visit(
            f"hh-g1-{1 + i % 4}",
            note=random.Random(i).choice(notes),
            kinds=["policy", "safety"],
            geo={"lat": 36.06, "lon": 120.38},
        )
        for i in range(50)
    ]
    body = msgspec.json.encode({"device_id": "dev-m1", "mutations": batch})
    compressed = gzip.compress(body)
    r = m1.client.post(
        "/api/v1/sync/push",
        content=compressed,
        headers=m1.headers(
            **{
                "Content-Type": "application/json",
                "Content-Encoding": "gzip",
                "Accept-Encoding": "gzip",
            }
        ),
    )
    assert r.status_code == 200
    assert {x["status"] for x in r.json()["results"]} == {"applied"}
    print(f"pushed visit, gzip: {len(compressed) / len(batch):.0f} bytes each")
    assert len(compressed) / len(batch) < 300, len(compressed) / len(batch)


def _community(store) -> str:
    """One community: 8 grids, 71 members, 520 households, ~2 months of visits."""
    rng = random.Random(7)
    grids = [f"cg{i}" for i in range(8)]
    units = [
        OrgUnit(id="cd", kind="district", name="区"),
        OrgUnit(id="cs", kind="street", name="街道", parent_id="cd"),
        OrgUnit(id="cc", kind="community", name="出头社区", parent_id="cs"),
    ]
    units += [
        OrgUnit(id=g, kind="grid", name=f"第{i + 1}网格", parent_id="cc")
        for i, g in enumerate(grids)
    ]
    people = [org.NewPerson(id="csec", name="书记", roles=["community_secretary"], scope=["cc"])]
    people += [
        org.NewPerson(id=f"cm{i}", name=f"党员{i}", roles=["member"], scope=[grids[i % 8]])
        for i in range(71)
    ]
    surnames = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"

    def load(db):
        org.add_units(db, units)
        org.add_people(db, people, Actor.cli())
        now = now_iso()
        now_ms = int(time.time() * 1000)
        rows, visits = [], []
        for i in range(520):
            hid = uuid7()
            grid = grids[i % 8]
            tags = rng.sample(
                ["elderly_alone", "disabled", "low_income", "renter"], rng.choice([0, 0, 1, 2])
            )
            rows.append(
                (
                    hid,
                    grid,
                    f"{1 + i // 40}号楼",
                    f"{1 + i % 3}单元",
                    f"{1 + (i % 6)}0{1 + i % 4}",
                    rng.choice(surnames) + "某某",
                    f"13{rng.randrange(10**9):09d}",
                    rng.randint(1, 6),
                    msgspec.json.encode(sorted(tags)).decode(),
                    rng.choice(["", "", "独居，子女在外地", "需要定期探访"]),
                    f"cm{i % 71}",
                    next_seq(db),
                    now,
                    now,
                )
            )
            for _ in range(rng.choice([2, 2, 3, 4])):
                at = now_ms - rng.randrange(60 * DAY)
                visits.append(
                    (
                        uuid7(),
                        hid,
                        grid,
                        f"cm{i % 71}",
                        f"dev-cm{i % 71}",
                        iso_ms(at),
                        at,
                        rng.choice(["door", "phone", "wechat"]),
                        msgspec.json.encode(
                            rng.sample(["policy", "opinion", "hardship", "safety"], 2)
                        ).decode(),
                        rng.choice(["", "一切正常", "反映楼道灯坏了"]),
                        next_seq(db),
                        now,
                    )
                )
        db.conn.executemany(
            "INSERT INTO households (id, grid_id, building, unit, room, head_name, phone, size, "
            "tags, notes, responsible_member_id, seq, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        db.conn.executemany(
            "INSERT INTO visits (id, household_id, grid_id, member_id, device_id, at, at_ms, "
            "channel, kinds, note, seq, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            visits,
        )

    store.write(load)
    return store.write(auth.enroll, "csec", Actor.cli(), device_id="dev-csec").token


def test_first_sync_of_a_520_household_community_under_1mb(client, store):
    token = _community(store)
    p = Phone(client, token, "dev-csec")
    total = 0
    changes = []
    cursor = None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = client.get(
            "/api/v1/sync/pull", params=params, headers={**p.headers(), "Accept-Encoding": "gzip"}
        )
        assert r.status_code == 200
        assert r.headers.get("content-encoding") == "gzip"
        total += r.num_bytes_downloaded
        page = r.json()
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    kinds = {t for t in (c["type"] for c in changes)}
    assert sum(1 for c in changes if c["type"] == "household") == 520
    assert sum(1 for c in changes if c["type"] == "visit") > 1000
    assert kinds >= {"org_unit", "person", "household", "visit"}
    print(f"first sync of the community: {total} bytes gzip, {len(changes)} changes")
    assert total < 1_000_000, total
    status = client.get("/api/v1/sync/status", headers=p.headers()).json()
    core = [c for c in changes if c["type"] in ("org_unit", "person", "household", "visit")]
    assert status["full_sync_changes"] == len(core)
    assert total / 2 <= status["full_sync_bytes"] <= total * 2, (status, total)


def test_restore_a_losing_tag_remove_and_dismiss(client, tiny, store):
    sec, m1 = phone(client, tiny, "sec"), phone(client, tiny, "m1")
    base = seq_of(store, "hh-g2-2")
    sec.push([sec.mutation("household.update", "hh-g2-2", base_seq=base, tags_add=["renter"])])
    res = sec.push(
        [sec.mutation("household.update", "hh-g2-2", base_seq=base, fields={"notes": "n"})]
    ).json()["results"][0]
    assert res["status"] == "applied"
    m2 = phone(client, tiny, "m2")
    lost = m2.push(
        [m2.mutation("household.update", "hh-g2-2", base_seq=base, tags_remove=["renter"])]
    ).json()["results"][0]["lost"]
    assert [(x["field"], x["value"], x["winner"]) for x in lost] == [("tags:renter", False, True)]
    m2.pull_all()
    r = client.post(
        f"/api/v1/sync/conflicts/{lost[0]['conflict_id']}/restore", headers=sec.headers()
    )
    assert r.status_code == 200, r.text
    got = [c["data"]["tags"] for c in m2.pull_all() if c["id"] == "hh-g2-2"]
    assert got == [[]]
    # Dismissing closes a conflict without a change; members may do neither.
    m2.push(
        [
            m2.mutation(
                "household.update",
                "hh-g2-2",
                base_seq=base,
                fields={"notes": "m"},
                hlc=format_hlc(1, 0, "dev-m2"),
            )
        ]
    )
    open_ = client.get("/api/v1/sync/conflicts", headers=sec.headers()).json()["items"]
    assert [c["field"] for c in open_] == ["notes"]
    forbidden = client.post(
        f"/api/v1/sync/conflicts/{open_[0]['id']}/dismiss", headers=m1.headers()
    )
    assert forbidden.status_code == 403
    before = seq_of(store, "hh-g2-2")
    done = client.post(f"/api/v1/sync/conflicts/{open_[0]['id']}/dismiss", headers=sec.headers())
    assert done.status_code == 200 and done.json()["status"] == "dismissed"
    assert seq_of(store, "hh-g2-2") == before
    missing = client.post("/api/v1/sync/conflicts/999999/restore", headers=sec.headers())
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_first_sync_of_the_demo_community_under_1mb(client, store):
    """The same budget on `gridsync demo --scale community` (520 households, 60 days)."""
    demo.build(store, demo.SCALES["community"], seed=1)
    secretary = store.read(
        lambda db: db.execute(
            "SELECT id FROM people WHERE roles LIKE '%community_secretary%' LIMIT 1"
        ).fetchone()[0]
    )
    token = store.write(auth.enroll, secretary, Actor.cli(), device_id="dev-demo-sec").token
    p = Phone(client, token, "dev-demo-sec")
    total, changes, cursor = 0, [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        r = client.get(
            "/api/v1/sync/pull", params=params, headers={**p.headers(), "Accept-Encoding": "gzip"}
        )
        assert r.status_code == 200
        total += r.num_bytes_downloaded
        page = r.json()
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            break
    print(f"first sync of the demo community: {total} bytes gzip, {len(changes)} changes")
    assert sum(1 for c in changes if c["type"] == "household") == 520
    assert sum(1 for c in changes if c["type"] == "visit") > 0
    assert total < 1_000_000, total

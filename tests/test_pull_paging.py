"""Pull paging under the fast paths: the running seq bound across sources, visits read in seq
windows, and the authenticated scope cache (revocation and scope changes stay immediate)."""

from __future__ import annotations

import base64
import random

import msgspec
import pytest

from gridsync import auth, org
from gridsync.api.deps import scope_cache
from gridsync.audit import Actor
from gridsync.clock import iso_ms, uuid7
from gridsync.db import next_seq
from gridsync.households import VISIT_SELECT, visit_from_row
from gridsync.models import OrgUnit
from gridsync.sync import pull
from tests.conftest import bearer

DAY = 86_400_000
NOW = 1_795_000_000_000
CYCLE_DAYS = 30
CLI = Actor.cli()


def add_history(db, rng: random.Random) -> None:
    """Visits interleaved with household edits: g1 dense, g2 sparse, g3 (another community)
    in between, some visits older than the pull window, some voided (a void takes a new seq)."""
    org.add_units(
        db,
        [
            OrgUnit(id="c2", kind="community", name="二社区", parent_id="s1"),
            OrgUnit(id="g3", kind="grid", name="外网格", parent_id="c2"),
        ],
    )
    db.execute(
        "INSERT INTO households (id, grid_id, size, tags, seq, created_at, updated_at) "
        "VALUES ('hh-g3-1', 'g3', 1, '[]', ?, '', '')",
        [next_seq(db)],
    )
    ids = []
    for i in range(900):
        grid = rng.choices(["g1", "g2", "g3"], weights=[12, 1, 6])[0]
        household = "hh-g3-1" if grid == "g3" else f"hh-{grid}-{rng.randint(1, 4)}"
        at_ms = NOW - rng.randint(0, 2 * CYCLE_DAYS * DAY + 20 * DAY)
        vid = uuid7()
        ids.append(vid)
        db.execute(
            "INSERT INTO visits (id, household_id, grid_id, member_id, device_id, at, at_ms, "
            "channel, kinds, note, geo, voided, seq, received_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                vid,
                household,
                grid,
                "m1",
                rng.choice([None, "dev-m1"]),
                iso_ms(at_ms),
                at_ms,
                "door",
                '["policy","safety"]' if i % 3 else "[]",
                f"走访 {i}",
                '{"lat":36.06,"lon":120.38}' if i % 5 == 0 else None,
                0,
                next_seq(db),
                "",
            ],
        )
        if i % 40 == 0:  # a household edit lands between visits
            db.execute(
                "UPDATE households SET seq = ?, notes = ? WHERE id = ?",
                [next_seq(db), f"edit {i}", f"hh-g1-{rng.randint(1, 4)}"],
            )
        if i % 97 == 0 and ids:
            db.execute(
                "UPDATE visits SET voided = 1, seq = ? WHERE id = ?",
                [next_seq(db), rng.choice(ids)],
            )


def page_through(store, person: str, limit: int) -> list[dict]:
    scope = store.read(org.resolve_scope, person)
    changes, cursor = [], None
    for _ in range(10_000):
        result = store.read(pull.pull, scope, cursor, limit, NOW, CYCLE_DAYS)
        page = msgspec.to_builtins(result.response)
        # a page holds at most ``limit`` changes, more only when several share its last seq
        # (a community's org unit and its policy)
        assert len(page["changes"]) <= limit or len({c["seq"] for c in page["changes"]}) == 1
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return changes
    raise AssertionError("pull never finished")


def visits_oracle(store, person: str) -> list[dict]:
    """The visits a snapshot must carry, by one plain query: in scope, in the window, by seq."""
    scope = store.read(org.resolve_scope, person)
    cond, params = scope.grid_filter("v.grid_id")
    rows = store.read(
        lambda db: db.execute(
            f"SELECT {VISIT_SELECT}, v.seq FROM visits v WHERE {cond} AND v.at_ms >= ? "
            "ORDER BY v.seq",
            [*params, NOW - 2 * CYCLE_DAYS * DAY],
        ).fetchall()
    )
    return [
        {
            "type": "visit",
            "id": r[0],
            "seq": r[-1],
            "op": "put",
            "data": msgspec.to_builtins(visit_from_row(r)),
        }
        for r in rows
    ]


@pytest.mark.parametrize("person", ["sec", "m2", "admin"])
def test_paged_snapshot_equals_one_page_and_the_plain_query(store, tiny, person):
    store.write(add_history, random.Random(7))
    whole = page_through(store, person, 500)
    seqs = [c["seq"] for c in whole]
    keys = [(c["type"], c["id"]) for c in whole]
    assert seqs == sorted(seqs) and len(set(keys)) == len(keys)
    assert [c for c in whole if c["type"] == "visit"] == visits_oracle(store, person)
    for limit in (1, 7, 64):
        assert page_through(store, person, limit) == whole, limit


def test_a_sparse_scope_pages_fully(store, tiny):
    """m2's one sparse grid among many visits elsewhere: the window grows until it finds them."""
    store.write(add_history, random.Random(3))
    visits = [c for c in page_through(store, "m2", 5) if c["type"] == "visit"]
    assert visits == visits_oracle(store, "m2") and visits


def me(client, tiny, person: str):
    return client.get("/api/v1/me", headers=bearer(tiny.tokens[person]))


def test_cached_scope_follows_scope_and_org_changes_and_revocation_is_immediate(
    client, store, tiny
):
    assert me(client, tiny, "sec").json()["grid_ids"] == ["g1", "g2"]
    assert me(client, tiny, "sec").json()["grid_ids"] == ["g1", "g2"]
    cached = len(scope_cache(store)._scopes)
    assert cached == 1  # two requests, one resolution
    # a grid added under the community: in scope on the very next request
    store.write(org.add_units, [OrgUnit(id="g9", kind="grid", name="新网格", parent_id="c1")])
    assert me(client, tiny, "sec").json()["grid_ids"] == ["g1", "g2", "g9"]
    # the scope replaced
    store.write(org.set_scope, "sec", ["g2"], CLI)
    assert me(client, tiny, "sec").json()["grid_ids"] == ["g2"]
    # roles changed (admin sees everything)
    store.write(
        org.add_people, [org.NewPerson(id="sec", name="王书记", roles=["admin"], scope=["g2"])], CLI
    )
    body = me(client, tiny, "sec").json()
    assert body["roles"] == ["admin"]
    # revoked: refused at once, though the scope is cached
    store.write(auth.revoke, tiny.devices["sec"], CLI)
    refused = me(client, tiny, "sec")
    assert refused.status_code == 401 and refused.json()["code"] == "device_revoked"
    # an inactive person: refused at once too
    assert me(client, tiny, "m1").status_code == 200
    store.write(lambda db: db.execute("UPDATE people SET active = 0 WHERE id = 'm1'"))
    assert me(client, tiny, "m1").json()["code"] == "person_inactive"


def http_snapshot(client, token: str, accept: str) -> list[dict]:
    decode = msgspec.msgpack.decode if "msgpack" in accept else msgspec.json.decode
    changes, cursor = [], None
    while True:
        params = {"limit": 97, **({"cursor": cursor} if cursor else {})}
        r = client.get(
            "/api/v1/sync/pull",
            params=params,
            headers={**bearer(token), "X-Gridsync-Schema": "1", "Accept": accept},
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith(accept)
        page = decode(r.content)
        changes += page["changes"]
        cursor = page["cursor"]
        if not page["has_more"]:
            return changes


def test_json_and_msgpack_snapshots_through_the_app_carry_the_same_changes(client, store, tiny):
    store.write(add_history, random.Random(11))
    as_json = http_snapshot(client, tiny.tokens["sec"], "application/json")
    as_msgpack = http_snapshot(client, tiny.tokens["sec"], "application/msgpack")
    assert as_json == as_msgpack
    visits = [c for c in as_json if c["type"] == "visit"]
    assert {type(c["data"]["geo"]) for c in visits} == {dict, type(None)}
    assert {c["data"]["device_id"] for c in visits} >= {None, "dev-m1"}


def test_a_snapshot_stops_asking_the_sources_it_has_exhausted(store, tiny, monkeypatch):
    """The cursor remembers the types whose source had nothing left up to ``upto``: later pages
    of the snapshot do not ask them again, and the pages still carry every change."""
    from gridsync.sync.registry import SOURCES

    store.write(add_history, random.Random(5))
    whole = page_through(store, "sec", 500)
    calls = {name: 0 for name in SOURCES}
    for name, source in list(SOURCES.items()):

        def counted(*args, _name=name, _source=source):
            calls[_name] += 1
            return _source(*args)

        monkeypatch.setitem(SOURCES, name, counted)
    scope = store.read(org.resolve_scope, "sec")
    changes, cursor, pages, exhausted = [], None, 0, []
    while True:
        result = store.read(pull.pull, scope, cursor, 7, NOW, CYCLE_DAYS)
        changes += msgspec.to_builtins(result.response.changes)
        cursor, pages = result.response.cursor, pages + 1
        exhausted.append(pull.decode_cursor(cursor).exhausted)
        if not result.response.has_more:
            break
    assert changes == whole
    assert calls["visit"] == pages  # the bulk source has rows until the last page
    for name in ("org_unit", "person", "policy", "whistle"):  # households: edits interleave
        assert calls[name] < pages // 2, (name, calls[name], pages)
    assert "org_unit" in exhausted[-2] and "visit" not in exhausted[-2]
    assert exhausted[-1] == ()  # the incremental cursor after the snapshot forgets them


def test_cursors_leave_out_their_trailing_defaults(store, tiny):
    scope = store.read(org.resolve_scope, "sec")
    cursor = None
    while True:
        page = store.read(pull.pull, scope, cursor, 500, NOW, CYCLE_DAYS).response
        cursor = page.cursor
        if not page.has_more:
            break
    c = pull.decode_cursor(cursor)
    assert c.upto == 0 and c.after > 0
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    assert msgspec.msgpack.decode(raw) == [1, c.epoch, c.sv, c.after]


def test_a_cursor_of_an_older_server_without_exhausted_types_resumes(store, tiny):
    store.write(add_history, random.Random(11))
    whole = page_through(store, "sec", 500)
    scope = store.read(org.resolve_scope, "sec")
    first = store.read(pull.pull, scope, None, 64, NOW, CYCLE_DAYS).response
    c = pull.decode_cursor(first.cursor)
    assert c.upto and c.exhausted  # org units, people... are all on the first 64
    old = msgspec.msgpack.encode(
        [c.v, c.epoch, c.sv, c.after, c.upto, c.old_sv, c.resume, c.rm, c.rm_done]
    )
    cursor = base64.urlsafe_b64encode(old).rstrip(b"=").decode()  # as an older server wrote it
    assert pull.decode_cursor(cursor) == msgspec.structs.replace(c, exhausted=())
    changes = msgspec.to_builtins(first.changes)
    while True:
        page = store.read(pull.pull, scope, cursor, 64, NOW, CYCLE_DAYS).response
        changes += msgspec.to_builtins(page.changes)
        cursor = page.cursor
        if not page.has_more:
            break
    assert changes == whole


def test_visit_rows_decode_their_own_kinds_through_the_shared_cache():
    from gridsync import households

    def row(kinds: str) -> tuple:
        return ("v", "h", "m1", None, "2026-01-01T08:00:00+08:00", "door", kinds, "", None, 0, None)

    values = ['["policy","safety"]', "[]", '["safety"]', '["policy","safety"]', "[]"]
    # Visit.kinds is a tuple (shared by the Visits of one stored value; issue 13)
    assert [households.visit_from_row(row(k)).kinds for k in values] == [
        tuple(msgspec.json.decode(k)) for k in values
    ]
    full = dict.fromkeys(f'["k{i}"]' for i in range(households._KINDS_MAX))
    cache = {k: tuple(msgspec.json.decode(k)) for k in full}
    assert households.visit_from_row(row('["new"]'), cache).kinds == ("new",)
    assert '["new"]' not in cache  # a full cache stays bounded
    assert households.visit_from_row(row('["k7"]'), cache).voided is False

"""The bounds of whistle cases (issue 12, review round 2): a case's history is bounded (comments
refused past it, the actions that move a case never), the push path does not rebuild a case per
action, a phone raises a bounded number of cases an hour, and one phone's clock cannot skew the
report's figures. Real parts: the app through the TestClient, the sweep, the migration's SQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from litestar.testing import TestClient

from gridsync import migrations, whistle
from gridsync.app import create_app
from gridsync.clock import FixedClock, device_time_ms, iso_ms, uuid7
from gridsync.config import Settings
from gridsync.sweep import run_once
from tests.conftest import bearer
from tests.sync_helpers import Phone

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))
T0_MS = int(T0.timestamp() * 1000)
COMMENT_ROOM = whistle.MAX_CASE_NOTE_BYTES - whistle.CASE_NOTE_RESERVE


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def wsettings(db_path) -> Settings:
    return Settings(db=db_path, max_phone_raises_per_hour=5)


@pytest.fixture
def api(store, tiny, wsettings, clock):
    # enrolled a day before T0 (the fixture enrols on the system clock)
    store.write(
        lambda db: db.execute("UPDATE devices SET created_at = ?", [iso_ms(T0_MS - 86_400_000)])
    )
    with TestClient(app=create_app(wsettings, store=store, clock=clock)) as c:
        yield c


def phone(api, tiny, person: str = "m1") -> Phone:
    return Phone(api, tiny.tokens[person], tiny.devices[person], now_ms=T0_MS)


def raise_case(m: Phone, **data) -> str:
    case_id = uuid7()
    r = m.push([m.mutation("whistle.raise", case_id, data={"category": "漏水", **data})])
    assert r.json()["results"][0]["status"] == "applied", r.text
    return case_id


def acts(m: Phone, case_id: str, *actions: tuple[str, str]) -> list[dict]:
    """Push (action, note) pairs on one case; the results."""
    r = m.push(
        [
            m.mutation("whistle.act", case_id, data={"action": action, "note": note})
            for action, note in actions
        ]
    )
    assert r.status_code == 200, r.text
    return r.json()["results"]


def rest_act(api, tiny, case_id: str, who: str, action: str, **extra):
    return api.post(
        f"/api/v1/whistle/cases/{case_id}/actions",
        json={"action": action, **extra},
        headers=bearer(tiny.tokens[who]),
    )


def history(api, tiny, case_id: str) -> list[dict]:
    r = api.get(f"/api/v1/whistle/cases/{case_id}", headers=bearer(tiny.tokens["sec"]))
    assert r.status_code == 200, r.text
    return r.json()["history"]


def codes(results: list[dict]) -> list[str]:
    return [r.get("code") or r["status"] for r in results]


# -- the history's bound ---------------------------------------------------------------------


def test_comments_stop_at_their_count_rejected_on_push_and_409_over_rest(api, tiny):
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1")
    n = whistle.MAX_CASE_COMMENTS
    got = codes(acts(m1, case_id, *[("comment", "")] * (n + 2)))
    assert got == ["applied"] * n + ["case_too_long"] * 2
    r = rest_act(api, tiny, case_id, "sec", "comment", note="再说一句")
    assert r.status_code == 409 and r.json()["code"] == "case_too_long", r.text
    assert sum(e["action"] == "comment" for e in history(api, tiny, case_id)) == n


def test_comments_stop_at_their_share_of_the_note_bytes_counted_in_utf8(api, tiny):
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1")
    note = "水" * 2000  # WhistleAct.note's most characters: 6,000 bytes
    fits = COMMENT_ROOM // 6000
    got = codes(acts(m1, case_id, *[("comment", note)] * (fits + 3)))
    assert got == ["applied"] * fits + ["case_too_long"] * 3
    # a short one still fits the room left
    assert codes(acts(m1, case_id, ("comment", "好"))) == ["applied"]


def test_the_actions_that_move_a_case_are_never_refused_for_its_length(api, tiny):
    """Past the comments' share, moves keep their notes in the room kept for them; past the
    whole budget a move still applies, without its note, and its result says so."""
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1")
    note = "x" * 2000
    comments = codes(acts(m1, case_id, *[("comment", note)] * 30))
    assert comments.count("applied") == COMMENT_ROOM // 2000
    left = whistle.MAX_CASE_NOTE_BYTES - COMMENT_ROOM // 2000 * 2000
    loop = [("accept", note), ("arrive", note), ("resolve", note), ("reopen", note)]
    results = acts(m1, case_id, *(loop * 3))
    assert codes(results) == ["applied"] * 12
    kept = left // 2000
    assert all("ignored" not in r for r in results[:kept])
    assert [r["ignored"] for r in results[kept:]] == [
        [{"field": "note", "code": "case_too_long"}]
    ] * (12 - kept)
    events = history(api, tiny, case_id)
    assert [e["state"] for e in events[-12:]] == ["accepted", "on_site", "resolved", "reopened"] * 3
    assert [len(e["note"]) for e in events[-12:]] == [2000] * kept + [0] * (12 - kept)
    # over REST too: the action applies, its note is left out
    r = rest_act(api, tiny, case_id, "m1", "accept", note="x" * 1600)  # 1,536 bytes left
    assert r.status_code == 200 and r.json()["state"] == "accepted", r.text
    assert r.json()["history"][-1]["note"] == ""


def test_the_sweep_escalates_a_case_at_its_bound(api, tiny, store, wsettings, clock):
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1")
    acts(m1, case_id, *[("comment", "x" * 2000)] * 40)
    clock.advance(minutes=2)  # the grid's accept deadline (1 minute) passed
    assert run_once(store, wsettings, clock).deadlines["escalated"] == 1
    case = api.get(f"/api/v1/whistle/cases/{case_id}", headers=bearer(tiny.tokens["sec"])).json()
    assert case["level"] == "community" and case["history"][-1]["note"] == "missed:accept"


def test_reopen_and_return_the_loops_of_a_case_are_capped(api, tiny):
    admin = phone(api, tiny, "admin")
    case_id = raise_case(admin, grid_id="g1")
    for _ in range(whistle.MAX_CASE_REOPENS):
        for action in ("accept", "resolve", "reopen"):
            assert rest_act(api, tiny, case_id, "admin", action).status_code == 200
    rest_act(api, tiny, case_id, "admin", "accept")
    rest_act(api, tiny, case_id, "admin", "resolve")
    r = rest_act(api, tiny, case_id, "admin", "reopen")
    assert r.status_code == 409 and r.json()["code"] == "case_too_long", r.text
    assert rest_act(api, tiny, case_id, "sec", "close", satisfaction=3).status_code == 200

    other = raise_case(admin, grid_id="g1")
    for _ in range(whistle.MAX_CASE_RETURNS):
        assert rest_act(api, tiny, other, "admin", "escalate").status_code == 200
        assert rest_act(api, tiny, other, "admin", "return").status_code == 200
    rest_act(api, tiny, other, "admin", "escalate")
    r = rest_act(api, tiny, other, "admin", "return")
    assert r.status_code == 409 and r.json()["code"] == "case_too_long", r.text
    assert rest_act(api, tiny, other, "admin", "escalate").json()["level"] == "street"


def test_a_phones_actions_on_a_case_do_not_rebuild_it_only_rest_answers_it(api, tiny, monkeypatch):
    """Rebuilding the whole case after each action made a batch on one case cost the square
    of its history (three pushes of 1,000 comments: 2 s, 6 s, 13 s)."""
    built: list[str] = []
    wire = whistle._wire
    monkeypatch.setattr(
        whistle,
        "_wire",
        lambda db, case, viewer=None: built.append(case.id) or wire(db, case, viewer),
    )
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1")
    built.clear()
    assert codes(acts(m1, case_id, *[("comment", "好")] * 50, ("accept", ""))) == ["applied"] * 51
    assert built == []
    assert rest_act(api, tiny, case_id, "m1", "comment", note="网页").status_code == 200
    assert built == [case_id]


# -- raising: a phone's share --------------------------------------------------------------


def test_a_phone_raises_at_most_its_share_of_cases_an_hour(api, tiny, clock, store):
    m1 = phone(api, tiny)
    ids = [uuid7() for _ in range(8)]
    raised = m1.push(
        [m1.mutation("whistle.raise", i, data={"category": "漏水", "grid_id": "g1"}) for i in ids]
    )
    assert codes(raised.json()["results"]) == ["applied"] * 5 + ["rate_limited"] * 3
    stored = store.read(lambda db: [r[0] for r in db.execute("SELECT id FROM whistle_cases")])
    assert sorted(stored) == sorted(ids[:5])  # nor an alert: it is queued with its case
    # a case raised already, sent again under a new mid, is still duplicate, not refused
    again = m1.push([m1.mutation("whistle.raise", ids[0], data={"category": "漏水"})])
    assert codes(again.json()["results"]) == ["duplicate"]
    # web users are not limited (a hotline desk raises one case per request)
    for _ in range(8):
        web = api.post(
            "/api/v1/whistle/cases",
            json={"category": "热线", "grid_id": "g1"},
            headers=bearer(tiny.tokens["sec"]),
        )
        assert web.status_code == 201, web.text
    clock.advance(minutes=61)
    r = m1.push([m1.mutation("whistle.raise", uuid7(), data={"category": "漏水", "grid_id": "g1"})])
    assert codes(r.json()["results"]) == ["applied"]


# -- the phone's clock in the report --------------------------------------------------------


def report(api, tiny) -> dict:
    return api.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["admin"])).json()


@pytest.mark.parametrize(
    "raised_at, delay",
    [
        ("1970-01-01T08:00:01+08:00", 86_400.0),  # before enrolment: counted from enrolment
        ("2199-12-31T23:00:00+08:00", None),  # ahead of receipt: counted at receipt
        ((T0 - timedelta(hours=3)).isoformat(), 3 * 3600.0),  # offline three hours, as sent
    ],
    ids=["1970", "ahead", "offline-3h"],
)
def test_a_phones_raised_at_counts_between_enrolment_and_receipt(api, tiny, raised_at, delay):
    m1 = phone(api, tiny)
    case_id = raise_case(m1, grid_id="g1", raised_at=raised_at)
    figures = report(api, tiny)
    assert figures["offline_delay_avg_seconds"] == delay
    assert figures["raised_offline"] == (delay is not None)
    case = api.get(f"/api/v1/whistle/cases/{case_id}", headers=bearer(tiny.tokens["sec"])).json()
    assert case["raised_at"] == raised_at  # kept as the phone sent it


# -- migration 0015 ------------------------------------------------------------------------------


def test_migration_0015_counts_what_live_code_counts_and_clamps_old_clocks(
    api, tiny, store, clock, wsettings
):
    """The frozen backfill and the live counters agree on the same cases (comments, notes of
    moves, multi-byte text, JSON's escapes, the sweep's own events); a case raised before the migration with a
    1970 clock is counted from its device's enrolment."""
    m1 = phone(api, tiny)
    one = raise_case(m1, grid_id="g1", raised_at="1970-01-01T08:00:01+08:00")
    # JSON carries it as a \" \\ \t \n: 9 bytes (a note may hold tabs and line breaks, no
    # other control character: the text rule)
    escaped = 'a"\\\t\n'
    acts(
        m1,
        one,
        ("comment", "水管"),
        ("accept", "马上到"),
        ("comment", escaped),
        ("arrive", "x" * 9),
    )
    two = raise_case(m1, grid_id="g1")
    acts(m1, two, *[("comment", "好" * 300)] * 5)
    rest_act(api, tiny, two, "sec", "escalate", note="社区来办")
    clock.advance(minutes=11)  # the community's accept deadline: the sweep escalates, unbudgeted
    assert run_once(store, wsettings, clock, dispatch=False).deadlines["escalated"] == 1

    def counters(db):
        return db.execute(
            "SELECT id, comments, note_bytes, raised_ms FROM whistle_cases ORDER BY id"
        ).fetchall()

    live = store.read(counters)
    assert [(c, b) for _id, c, b, _r in live] == [(2, 6 + 9 + 9 + 9), (5, 5 * 900 + 12)]

    def before_0015(db):
        db.executescript(
            "DROP INDEX whistle_cases_raised_device;"
            "ALTER TABLE whistle_cases DROP COLUMN comments;"
            "ALTER TABLE whistle_cases DROP COLUMN note_bytes;"
        )
        for case_id, raised_at in db.execute("SELECT id, raised_at FROM whistle_cases"):
            db.execute(  # the phone's time as sent, as raised_ms was before
                "UPDATE whistle_cases SET raised_ms = ? WHERE id = ?",
                [device_time_ms(raised_at), case_id],
            )
        migrations.m0015_whistle_case_bounds(db)

    store.write(before_0015)
    assert store.read(counters) == live

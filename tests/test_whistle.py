"""Whistle cases: the state machine over REST and through the sync op handlers, levels and
deadlines with an injected clock, backflow, scope, the pull source and the report."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from typing import get_args

import msgspec
import pytest
from litestar.testing import TestClient

from gridsync.app import create_app
from gridsync.auth import authenticate
from gridsync.clock import FixedClock, iso_ms
from gridsync.errors import GridsyncError
from gridsync.models import WhistleAction
from gridsync.notify import outbox
from gridsync.sweep import run_once
from gridsync.sync import whistle as sync_whistle
from gridsync.sync.ops import Mutation, OpContext
from gridsync.sync.registry import OPS, SOURCES
from gridsync.sync.sources import SourceContext
from gridsync.whistle import TRANSITIONS, whistle_report
from tests.conftest import bearer
from tests.sync_helpers import Phone
from tests.test_notify import REPO, Receiver, quick_settings, set_channels

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))
MIN = 60_000


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def wsettings(db_path):
    return quick_settings(db_path)


@pytest.fixture
def api(store, tiny, wsettings, clock):
    with TestClient(app=create_app(wsettings, store=store, clock=clock)) as c:
        yield c


def new_case(api, tiny, who="m1", **body):
    payload = {
        "category": "漏水",
        "grid_id": "g1",
        "location": "3号楼",
        "description": "水管破裂",
        **body,
    }
    r = api.post("/api/v1/whistle/cases", json=payload, headers=bearer(tiny.tokens[who]))
    assert r.status_code == 201, r.text
    return r.json()


def act(api, tiny, case_id, who, action, **extra):
    return api.post(
        f"/api/v1/whistle/cases/{case_id}/actions",
        json={"action": action, **extra},
        headers=bearer(tiny.tokens[who]),
    )


def test_raise_by_api_has_the_wire_fields_and_grid_deadlines(api, tiny, clock, store):
    case = new_case(api, tiny, household_id="hh-g1-2", id="0193a8f0-0000-7000-8000-000000000001")
    assert set(case) >= {
        "id",
        "household_id",
        "grid_id",
        "location",
        "category",
        "description",
        "raised_by",
        "raised_at",
        "received_at",
        "level",
        "state",
        "deadlines",
        "history",
        "satisfaction",
    }
    assert case["id"] == "0193a8f0-0000-7000-8000-000000000001"
    assert (case["level"], case["state"], case["raised_by"]) == ("grid", "raised", "m1")
    now = clock.now_ms()
    assert case["received_at"] == iso_ms(now)
    assert case["deadlines"]["accept"] == iso_ms(now + 1 * MIN)
    assert case["deadlines"]["arrive"] == iso_ms(now + 10 * MIN)
    assert case["deadlines"]["resolve"] == iso_ms(now + 30 * MIN)
    assert [h["action"] for h in case["history"]] == ["raise"]
    again = api.post(
        "/api/v1/whistle/cases",
        json={"category": "x", "grid_id": "g1", "id": case["id"]},
        headers=bearer(tiny.tokens["m1"]),
    )
    assert again.status_code == 409 and again.json()["code"] == "case_exists"


def test_lifecycle_to_closed_with_satisfaction(api, tiny, clock):
    case = new_case(api, tiny)
    cid = case["id"]
    for action in ("accept", "arrive", "comment", "resolve"):
        clock.advance(seconds=30)
        r = act(api, tiny, cid, "m1", action, note=f"{action} done")
        assert r.status_code == 200, r.text
    r = act(api, tiny, cid, "sec", "close", satisfaction=4)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["state"], body["satisfaction"]) == ("closed", 4)
    assert [h["action"] for h in body["history"]] == [
        "raise",
        "accept",
        "arrive",
        "comment",
        "resolve",
        "close",
    ]
    assert [h["state"] for h in body["history"]][-2:] == ["resolved", "closed"]
    r = act(api, tiny, cid, "m1", "reopen", note="又漏了")
    assert r.json()["state"] == "reopened" and r.json()["satisfaction"] is None


def test_concurrent_accept_first_wins_second_is_told_who(api, tiny):
    cid = new_case(api, tiny)["id"]
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def accept(who):
        barrier.wait()
        results[who] = act(api, tiny, cid, who, "accept")

    threads = [threading.Thread(target=accept, args=(who,)) for who in ("m1", "sec")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status_code for r in results.values())
    assert statuses == [200, 409]
    winner = next(w for w, r in results.items() if r.status_code == 200)
    loser = results["sec" if winner == "m1" else "m1"]
    assert loser.json()["code"] == "already_accepted"
    assert loser.json()["accepted_by"] == winner
    case = api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["admin"])).json()
    assert case["accepted_by"] == winner
    assert [h["action"] for h in case["history"]].count("accept") == 1


@pytest.mark.parametrize(
    "steps, action, extra",
    [
        ([], "arrive", {}),
        ([], "resolve", {}),
        ([], "close", {"satisfaction": 5}),
        ([], "reopen", {}),
        ([], "return", {}),
        (["accept"], "close", {"satisfaction": 5}),
        (["accept", "resolve"], "arrive", {}),
        (["accept", "resolve"], "escalate", {}),
    ],
)
def test_illegal_transitions_are_refused(api, tiny, steps, action, extra):
    cid = new_case(api, tiny)["id"]
    for step in steps:
        assert act(api, tiny, cid, "m1", step).status_code == 200
    r = act(api, tiny, cid, "m1", action, **extra)
    assert r.status_code == 409, r.text
    assert r.json()["code"] == "illegal_transition"
    assert r.json()["message"]


@pytest.mark.parametrize("satisfaction", [0, 6, -1])
def test_satisfaction_out_of_range(api, tiny, satisfaction):
    cid = new_case(api, tiny)["id"]
    act(api, tiny, cid, "m1", "accept")
    act(api, tiny, cid, "m1", "resolve")
    r = act(api, tiny, cid, "sec", "close", satisfaction=satisfaction)
    assert r.status_code == 400
    assert r.json()["code"] == "validation_error"
    missing = act(api, tiny, cid, "sec", "close")
    assert missing.status_code == 400 and missing.json()["code"] == "invalid_satisfaction"


def test_scope_decides_who_sees_and_who_acts(api, tiny):
    cid = new_case(api, tiny)["id"]
    assert (
        api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["m2"])).status_code
        == 404
    )
    assert act(api, tiny, cid, "m2", "accept").status_code == 404
    listed = api.get("/api/v1/whistle/cases", headers=bearer(tiny.tokens["m2"])).json()
    assert listed["total"] == 0
    outside = api.post(
        "/api/v1/whistle/cases",
        json={"category": "x", "grid_id": "g1"},
        headers=bearer(tiny.tokens["m2"]),
    )
    assert outside.status_code == 403 and outside.json()["code"] == "out_of_scope"
    # at the community level a grid member may comment but not accept
    assert act(api, tiny, cid, "m1", "escalate").json()["level"] == "community"
    refused = act(api, tiny, cid, "m1", "accept")
    assert refused.status_code == 403 and refused.json()["code"] == "not_responsible"
    assert act(api, tiny, cid, "m1", "comment", note="还在漏").status_code == 200
    assert act(api, tiny, cid, "sec", "accept").status_code == 200


def test_missed_accept_escalates_to_community_and_alerts_the_secretary(
    store, tiny, wsettings, api, clock
):
    with Receiver() as http:
        set_channels(store, "sec", [http.url("sec")])
        cid = new_case(api, tiny)["id"]
        clock.advance(seconds=50)  # 10 s left of the 1-minute window: "deadline near" to g1
        assert run_once(store, wsettings, clock).deadlines["warned"] == 1
        clock.advance(seconds=11)
        report = run_once(store, wsettings, clock)
        assert report.deadlines["escalated"] == 1
        assert run_once(store, wsettings, clock).deadlines["escalated"] == 0  # once
    case = api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["sec"])).json()
    assert (case["level"], case["unit_id"], case["state"]) == ("community", "c1", "raised")
    assert case["history"][-1]["action"] == "escalate" and case["history"][-1]["by"] is None
    assert case["deadlines"]["accept"] == iso_ms(clock.now_ms() + 10 * MIN)
    alerts = [m for m in http.received if m["title"].startswith("【吹哨】")]
    assert len(alerts) == 1  # (the Monday coverage digest went to the secretary too)
    msg = alerts[0]
    assert msg["path"] == "/sec"
    assert msg["title"] == "【吹哨】案件已上报社区：漏水"
    assert msg["message"].splitlines()[0] == (
        "网格未在时限内受理（应于 11-23 10:01 前），案件自动上报。"
    )
    assert "现由出头社区负责，请在 11-23 10:11 前受理。" in msg["message"]


def test_sweep_now_from_the_cli_escalates(store, tiny, wsettings, api, db_path):
    cid = new_case(api, tiny)["id"]
    later = (T0 + timedelta(minutes=5)).isoformat()
    out = subprocess.run(
        [sys.executable, "-m", "gridsync", "sweep", "--db", db_path, "--now", later, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    body = json.loads(out.stdout)
    assert body["deadlines"]["escalated"] == 1
    shown = subprocess.run(
        [sys.executable, "-m", "gridsync", "cases", "show", cid, "--db", db_path, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(shown.stdout)["level"] == "community"
    bad = subprocess.run(
        [sys.executable, "-m", "gridsync", "sweep", "--db", db_path, "--now", "yesterday"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_department_backflow_is_recorded_and_reported(api, tiny, store, clock):
    cid = new_case(api, tiny)["id"]
    assert act(api, tiny, cid, "m1", "escalate").json()["level"] == "community"
    assert act(api, tiny, cid, "sec", "escalate").json()["level"] == "street"
    to_dept = act(api, tiny, cid, "admin", "escalate", department_id="dept1").json()
    assert (to_dept["level"], to_dept["unit_id"]) == ("department", "dept1")
    assert act(api, tiny, cid, "resp", "accept").status_code == 200
    back = act(api, tiny, cid, "resp", "return", note="不属于本部门职责").json()
    assert (back["level"], back["unit_id"], back["backflow"]) == ("street", "s1", 1)
    assert act(api, tiny, cid, "resp", "accept").status_code == 403  # no longer theirs
    r = api.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["admin"]))
    rows = {(row["level"], row["unit_id"]): row for row in r.json()["rows"]}
    dept = rows[("department", "dept1")]
    assert (dept["cases"], dept["responded"], dept["backflow"]) == (1, 1, 1)
    assert rows[("grid", "g1")]["escalated"] == 1
    assert rows[("all", None)]["backflow"] == 1


def test_report_rates_and_satisfaction(store, tiny, wsettings, api, clock):
    on_time = new_case(api, tiny, who="sec")["id"]
    act(api, tiny, on_time, "m1", "accept")
    act(api, tiny, on_time, "m1", "resolve")
    act(api, tiny, on_time, "sec", "close", satisfaction=5)
    late = new_case(api, tiny)["id"]
    clock.advance(minutes=2)
    run_once(store, wsettings, clock)  # late: escalated to the community
    act(api, tiny, late, "sec", "accept")
    act(api, tiny, late, "sec", "resolve")
    act(api, tiny, late, "admin", "close", satisfaction=3)
    report = store.read(
        lambda db: whistle_report(
            db, authenticate(db, tiny.tokens["admin"]).scope, now_ms=clock.now_ms()
        )
    )
    rows = {(r.level, r.unit_id): r for r in report.rows}
    grid = rows[("grid", "g1")]
    assert (grid.cases, grid.responded, grid.on_time, grid.resolved) == (2, 1, 1, 1)
    assert (grid.response_rate, grid.on_time_rate, grid.resolution_rate) == (0.5, 0.5, 0.5)
    assert (grid.satisfaction, grid.escalated) == (5.0, 1)
    community = rows[("community", "c1")]
    assert (community.on_time_rate, community.satisfaction) == (1.0, 3.0)
    assert rows[("all", None)].satisfaction == 4.0
    m2_view = api.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["m2"])).json()
    assert m2_view["rows"] == [r for r in m2_view["rows"] if r["level"] == "all"]
    assert m2_view["rows"][0]["cases"] == 0
    cli = subprocess.run(
        [sys.executable, "-m", "gridsync", "whistle", "report", "--db", wsettings.db],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert cli.stdout.splitlines()[0].split("\t")[:4] == ["层级", "单位", "案件", "响应率"]
    assert "网格\t第一网格\t2\t50%\t50%\t50%\t5.00\t0" in cli.stdout


# -- through sync: the registered op handlers and the pull source ------------------------------


def _push(store, tiny, settings, person, op, case_id, data, received_ms):
    spec = OPS[op]

    def apply(db):
        ctx = OpContext(
            db=db,
            principal=authenticate(db, tiny.tokens[person]),
            settings=settings,
            clock=FixedClock(received_ms),
            hlc="",
            received_ms=received_ms,
        )
        m = Mutation(mid="m", seq=1, hlc="", op=op, id=case_id)
        return spec.handler(ctx, m, spec.decoder.decode(json.dumps(data)))

    return store.write(apply)


def whistle_changes(db, scope, after_seq, upto_seq, limit):
    """The pull source ``whistle``, given its context as pull builds it (now: T0)."""
    ctx = SourceContext(db, scope, int(T0.timestamp() * 1000))
    return sync_whistle.whistle_changes(ctx, after_seq, upto_seq, limit)


def test_sync_ops_raise_offline_and_act(store, tiny, wsettings, clock):
    received = clock.now_ms()
    offline = (T0 - timedelta(hours=3)).isoformat()  # raised in a basement three hours ago
    # enrolled a day before (the fixture enrols on the system clock, after T0): the report
    # counts a case raised no earlier than its device's enrolment
    store.write(
        lambda db: db.execute(
            "UPDATE devices SET created_at = ?", [(T0 - timedelta(days=1)).isoformat()]
        )
    )
    outcome = _push(
        store,
        tiny,
        wsettings,
        "m1",
        "whistle.raise",
        "c-off",
        {"category": "噪音", "household_id": "hh-g1-3", "raised_at": offline, "future_field": 1},
        received,
    )
    assert outcome.status == "applied"
    resent = _push(
        store,
        tiny,
        wsettings,
        "m1",
        "whistle.raise",
        "c-off",
        {"category": "噪音", "household_id": "hh-g1-3"},
        received + 500,
    )
    assert resent.status == "duplicate"
    with pytest.raises(GridsyncError) as taken:
        _push(
            store,
            tiny,
            wsettings,
            "sec",
            "whistle.raise",
            "c-off",
            {"category": "x", "grid_id": "g1"},
            received + 500,
        )
    assert taken.value.code == "case_exists"
    assert set(OPS) >= {"whistle.raise", "whistle.act"}
    scope = store.read(lambda db: authenticate(db, tiny.tokens["m1"]).scope)
    changes = store.read(whistle_changes, scope, 0, 10**9, 100)
    assert [c.id for c in changes] == ["c-off"]
    case = changes[0].data
    assert case.raised_at == offline and case.received_at == iso_ms(received)
    assert case.deadlines.accept == iso_ms(received + MIN)  # counted from server receipt
    assert case.grid_id == "g1"
    _push(
        store,
        tiny,
        wsettings,
        "m1",
        "whistle.act",
        "c-off",
        {"action": "accept", "at": offline},
        received + 1000,
    )
    with pytest.raises(GridsyncError) as refused:
        _push(
            store,
            tiny,
            wsettings,
            "m1",
            "whistle.act",
            "c-off",
            {"action": "close", "satisfaction": 5},
            received + 2000,
        )
    assert refused.value.code == "illegal_transition"
    with pytest.raises(GridsyncError) as bad:
        _push(
            store,
            tiny,
            wsettings,
            "m1",
            "whistle.act",
            "c-off",
            {"action": "close", "satisfaction": 9},
            received + 2000,
        )
    assert bad.value.code == "invalid_satisfaction"
    after = store.read(whistle_changes, scope, changes[0].seq, 10**9, 100)
    assert [(c.id, c.data.state) for c in after] == [("c-off", "accepted")]
    assert after[0].data.history[-1].device_at == offline
    admin = store.read(lambda db: authenticate(db, tiny.tokens["admin"]).scope)
    report = store.read(lambda db: whistle_report(db, admin, now_ms=received))
    assert (report.cases_raised, report.raised_offline) == (1, 1)
    assert report.offline_delay_avg_seconds == 3 * 3600.0
    m2 = store.read(lambda db: authenticate(db, tiny.tokens["m2"]).scope)
    assert store.read(whistle_changes, m2, 0, 10**9, 100) == []
    resp = store.read(lambda db: authenticate(db, tiny.tokens["resp"]).scope)
    assert store.read(whistle_changes, resp, 0, 10**9, 100) == []
    assert SOURCES["whistle"] is sync_whistle.whistle_changes


def test_the_pull_sends_closed_cases_by_the_requests_clock(store, tiny, wsettings):
    """The whistle source's "now" is the request's clock (one SourceContext per pull), not the
    machine's: under an app whose FixedClock is years away from today, a case closed 31 days
    before that clock is not sent and one closed 29 days before is (SPEC 3.2: 30 days)."""
    clock = FixedClock(datetime(2021, 3, 1, 10, 0, tzinfo=timezone(timedelta(hours=8))))
    with TestClient(app=create_app(wsettings, store=store, clock=clock)) as api:

        def closed_case() -> str:
            cid = new_case(api, tiny)["id"]
            for action in ("accept", "arrive", "resolve"):
                assert act(api, tiny, cid, "m1", action).status_code == 200
            assert act(api, tiny, cid, "sec", "close", satisfaction=4).status_code == 200
            return cid

        older = closed_case()
        clock.advance(minutes=2 * 24 * 60)
        newer = closed_case()
        clock.advance(minutes=29 * 24 * 60)  # older closed 31 days ago, newer 29
        phone = Phone(api, tiny.tokens["sec"], tiny.devices["sec"])
        sent = {c["id"] for c in phone.pull_all() if c["type"] == "whistle"}
    assert newer in sent
    assert older not in sent


def test_closed_alert_goes_to_raiser_and_acceptor(store, tiny, wsettings, api, clock, db_path):
    with Receiver() as http:
        set_channels(store, "m1", [http.url("m1")])
        set_channels(store, "sec", [http.url("sec")])
        cid = new_case(api, tiny, who="sec")["id"]
        act(api, tiny, cid, "m1", "accept")
        act(api, tiny, cid, "m1", "resolve")
        act(api, tiny, cid, "admin", "close", satisfaction=5)  # the 回访 call, by the district
        run_once(store, wsettings, clock)
    closed = [m for m in http.received if m["title"] == "【吹哨】案件已办结：漏水"]
    assert sorted(m["path"] for m in closed) == ["/m1", "/sec"]
    assert "群众满意度 5/5" in closed[0]["message"]
    out = subprocess.run(
        [sys.executable, "-m", "gridsync", "cases", "--db", db_path, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    assert [c["state"] for c in json.loads(out.stdout)["items"]] == ["closed"]


def test_serve_runs_periodic_work_and_stops_cleanly(store, tiny, wsettings, clock):
    """The app's lifespan runs the sweep on a worker thread (here with an injected clock) and
    stops it at shutdown."""
    settings = msgspec.structs.replace(wsettings, sweep_interval_seconds=0.05)
    app = create_app(settings, store=store, clock=clock, run_periodic=True)
    with TestClient(app=app) as c:
        new_case(c, tiny)
        clock.advance(minutes=3)
        worker = app.state.periodic
        assert worker.running
        worker.ran.clear()
        assert worker.ran.wait(timeout=60)  # a round that began before the clock moved
        worker.ran.clear()
        assert worker.ran.wait(timeout=60)  # a round entirely after it
        cases = c.get("/api/v1/whistle/cases", headers=bearer(tiny.tokens["admin"])).json()
        assert cases["items"][0]["level"] == "community"
    assert not app.state.periodic.running


def test_client_mistakes_are_4xx_with_codes(api, tiny):
    h = bearer(tiny.tokens["admin"])
    cid = new_case(api, tiny)["id"]
    cases = [
        (api.get("/api/v1/whistle/report?since=yesterday", headers=h), 400, "validation_error"),
        (
            api.post(f"/api/v1/whistle/cases/{cid}/actions", json={"action": "dance"}, headers=h),
            400,
            "validation_error",
        ),
        (
            api.post(
                f"/api/v1/whistle/cases/{cid}/actions", json={"action": "accept", "x": 1}, headers=h
            ),
            400,
            "validation_error",
        ),
        (
            api.post("/api/v1/whistle/cases/nope/actions", json={"action": "accept"}, headers=h),
            404,
            "case_not_found",
        ),
        (
            api.post("/api/v1/whistle/cases", json={"category": "x"}, headers=h),
            400,
            "validation_error",
        ),
        (
            api.post("/api/v1/whistle/cases", json={"category": "x", "grid_id": "c1"}, headers=h),
            400,
            "validation_error",
        ),
        (
            api.post(
                "/api/v1/whistle/cases",
                json={"category": "x", "household_id": "hh-none"},
                headers=h,
            ),
            404,
            "not_found",
        ),
        (
            api.post(
                "/api/v1/whistle/cases",
                json={"category": "x", "grid_id": "g2", "household_id": "hh-g1-1"},
                headers=h,
            ),
            400,
            "validation_error",
        ),
        (api.get("/api/v1/whistle/cases?state=lost", headers=h), 400, "validation_error"),
        (api.get("/api/v1/whistle/cases", headers={}), 401, "unauthorized"),
    ]
    for response, status, code in cases:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    act(api, tiny, cid, "admin", "escalate")
    act(api, tiny, cid, "admin", "escalate")
    bad_dept = act(api, tiny, cid, "admin", "escalate", department_id="g1")
    assert (bad_dept.status_code, bad_dept.json()["code"]) == (400, "validation_error")
    assert api.get("/schema/openapi.json").status_code == 200


def test_top_level_overdue_alerts_the_district_once(store, tiny, wsettings, api, clock):
    set_channels(store, "admin", ["json://127.0.0.1:9/district"])
    cid = new_case(api, tiny)["id"]
    levels = [act(api, tiny, cid, "admin", "escalate").json()["level"] for _ in range(4)]
    assert levels == ["community", "street", "department", "district"]
    top = act(api, tiny, cid, "admin", "escalate")
    assert (top.status_code, top.json()["code"]) == (409, "illegal_transition")
    clock.advance(minutes=24 * 60 + 1)
    first = run_once(store, wsettings, clock, dispatch=False)
    again = run_once(store, wsettings, clock, dispatch=False)
    assert (first.deadlines["missed_at_top"], again.deadlines["missed_at_top"]) == (1, 0)
    rows = store.read(outbox.list_outbox, kind="whistle_overdue").items
    assert [(r.recipient, r.title) for r in rows] == [("member:admin", "【吹哨】案件已超时：漏水")]
    case = api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["admin"])).json()
    assert case["deadlines"]["missed"] == ["accept"] and case["level"] == "district"


@pytest.mark.parametrize("locale", ["zh-CN", "en"])
def test_every_whistle_template_renders_with_the_context_it_is_given(
    store, tiny, wsettings, api, locale
):
    from gridsync.whistle import _context

    cid = new_case(api, tiny)["id"]
    extras = {
        "whistle_raised": {},
        "whistle_near": {
            "due_local": "11-23 10:01",
            "deadline_name": lambda labels: labels["deadline"]["accept"],
        },
        "whistle_overdue": {
            "due_local": "11-23 10:01",
            "deadline_name": lambda labels: labels["deadline"]["accept"],
        },
        "whistle_escalated": {
            "reason": lambda labels: labels["reason"]["escalate"].format(
                level=labels["level"]["grid"]
            )
        },
        "whistle_returned": {"note": "不归我们管", "from_unit_name": "城管局"},
        "whistle_closed": {},
    }
    for kind, extra in extras.items():
        context = store.read(lambda db, e=extra: _context(db, cid, wsettings, **e))(locale)
        title, body = outbox.render(kind, locale, context)
        assert "漏水" in title and body, (kind, title, body)
        assert cid in body


def test_periodic_checks_wake_just_after_the_next_deadline(api, tiny, store, wsettings, clock):
    """The worker sleeps until just after the earliest open deadline (never longer than its
    interval), so an escalation leaves when the deadline passes, not an interval later."""
    from gridsync.sweep import PeriodicWorker
    from gridsync.whistle import next_due_ms

    settings = msgspec.structs.replace(wsettings, sweep_interval_seconds=300.0)
    now = clock.now_ms()
    assert store.read(next_due_ms, now) is None
    worker = PeriodicWorker(store, settings, clock)
    assert worker._checks() == 300.0  # nothing due: the interval
    case = new_case(api, tiny)
    accept_due = now + settings.whistle_deadlines["grid"].accept_minutes * MIN
    assert store.read(next_due_ms, now) == accept_due
    assert worker._checks() == pytest.approx((accept_due + 1 - now) / 1000)
    assert act(api, tiny, case["id"], "m1", "accept").status_code == 200
    arrive_due = now + settings.whistle_deadlines["grid"].arrive_minutes * MIN
    assert store.read(next_due_ms, now) == arrive_due
    clock.advance(minutes=settings.whistle_deadlines["grid"].arrive_minutes + 1)
    worker._checks()  # the arrive deadline passed: escalated, the new stint's deadlines count
    assert store.read(next_due_ms, clock.now_ms()) > clock.now_ms()


# -- integrity: self-review and 随手办 ----------------------------------------------------------


def test_the_resolver_may_not_close_over_rest_whoever_they_are(api, tiny):
    cid = new_case(api, tiny)["id"]
    for step in ("accept", "arrive", "resolve"):
        assert act(api, tiny, cid, "m1", step).status_code == 200
    r = act(api, tiny, cid, "m1", "close", satisfaction=5)
    assert r.status_code == 409, r.text
    assert (r.json()["code"], r.json()["resolved_by"]) == ("self_review", "m1")
    assert r.json()["message"]
    # the rule is the same for an admin: one who resolved may not score their own work
    other = new_case(api, tiny)["id"]
    act(api, tiny, other, "admin", "accept")
    act(api, tiny, other, "admin", "resolve")
    refused = act(api, tiny, other, "admin", "close", satisfaction=5)
    assert (refused.status_code, refused.json()["code"]) == (409, "self_review")
    # nothing of a refused close is stored; someone else closes with the resident's score
    case = api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["sec"])).json()
    assert (case["state"], case["satisfaction"]) == ("resolved", None)
    assert [h["action"] for h in case["history"]][-1] == "resolve"
    closed = act(api, tiny, cid, "sec", "close", satisfaction=4)
    assert closed.status_code == 200 and closed.json()["satisfaction"] == 4


def test_self_review_is_about_the_latest_resolver(api, tiny):
    cid = new_case(api, tiny)["id"]
    act(api, tiny, cid, "m1", "accept")
    act(api, tiny, cid, "m1", "resolve")
    assert act(api, tiny, cid, "sec", "close", satisfaction=2).status_code == 200
    assert act(api, tiny, cid, "m1", "reopen", note="没修好").status_code == 200
    assert act(api, tiny, cid, "sec", "accept").status_code == 200
    assert act(api, tiny, cid, "sec", "resolve").status_code == 200
    refused = act(api, tiny, cid, "sec", "close", satisfaction=5)
    assert (refused.status_code, refused.json()["code"]) == (409, "self_review")
    # m1 resolved it once, but not last: m1 may close it now
    closed = act(api, tiny, cid, "m1", "close", satisfaction=5)
    assert closed.status_code == 200, closed.text


def test_self_review_on_the_phone_is_one_rejected_mutation(api, tiny, store, clock):
    from gridsync.sync.client import DeviceClient

    def phone(who):
        return DeviceClient(
            api,
            token=tiny.tokens[who],
            device_id=tiny.devices[who],
            person_id=who,
            clock=FixedClock(clock.now_ms()),
            sleep=lambda _s: None,
        )

    m1 = phone("m1")
    cid = "0193a8f0-0000-7000-8000-00000000c0de"
    m1.enqueue("whistle.raise", cid, data={"category": "堵塞", "grid_id": "g1"})
    for action in ("accept", "arrive", "resolve"):
        m1.enqueue("whistle.act", cid, data={"action": action})
    m1.enqueue("whistle.act", cid, data={"action": "close", "satisfaction": 5})
    m1.enqueue("whistle.act", cid, data={"action": "comment", "note": "已处理"})
    report = m1.push()
    assert (report.applied, report.rejected) == (5, 1)
    [refused] = m1.rejected()
    assert (refused["code"], refused["mutation"]["data"]["action"]) == ("self_review", "close")
    case = api.get(f"/api/v1/whistle/cases/{cid}", headers=bearer(tiny.tokens["sec"])).json()
    assert case["state"] == "resolved" and case["history"][-1]["action"] == "comment"
    sec = phone("sec")
    sec.enqueue("whistle.act", cid, data={"action": "close", "satisfaction": 5})
    assert sec.push().applied == 1
    rows = api.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["admin"])).json()["rows"]
    total = next(r for r in rows if r["level"] == "all")
    assert (total["self_handled"], total["cases"], total["satisfaction_n"]) == (1, 0, 0)


def test_report_counts_self_handled_cases_apart(api, tiny, store, wsettings, clock):
    """A hand-built set of seven cases in grid g1, all acted on within their deadlines."""

    def case(raiser, *steps):
        cid = new_case(api, tiny, who=raiser)["id"]
        for who, action, *score in steps:
            extra = {"satisfaction": score[0]} if score else {}
            r = act(api, tiny, cid, who, action, **extra)
            assert r.status_code == 200, (who, action, r.text)
        return cid

    # 随手办: m1 raises and resolves alone (closed by the secretary, still resolved, reopened
    # by someone else and resolved again by m1 alone: a reopen is not a step of handling)
    case("m1", ("m1", "accept"), ("m1", "resolve"), ("sec", "close", 5))
    case("m1", ("m1", "accept"), ("m1", "arrive"), ("m1", "resolve"))
    case("m1", ("m1", "accept"), ("m1", "resolve"), ("sec", "reopen"), ("m1", "accept"),
         ("m1", "resolve"))  # fmt: skip
    # counted: the secretary raised, m1 handled; the secretary accepted, m1 resolved; m1
    # handled, was reopened and the secretary handled it again; one still waiting
    case("sec", ("m1", "accept"), ("m1", "resolve"), ("sec", "close", 4))
    case("m1", ("sec", "accept"), ("m1", "resolve"), ("sec", "close", 2))
    case("m1", ("m1", "accept"), ("m1", "resolve"), ("sec", "close", 5), ("sec", "reopen"),
         ("sec", "accept"), ("sec", "resolve"), ("m1", "close", 3))  # fmt: skip
    case("m1")

    report = api.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["admin"])).json()
    rows = {(r["level"], r["unit_id"]): r for r in report["rows"]}
    for key in (("grid", "g1"), ("grid", None), ("all", None)):
        row = rows[key]
        # stays: 1 + 1 + 2 self-handled; 1 + 1 + 2 + 1 counted
        assert (row["self_handled"], row["cases"]) == (4, 5), key
        assert (row["responded"], row["on_time"], row["resolved"]) == (4, 5, 4), key
        assert (row["response_rate"], row["on_time_rate"], row["resolution_rate"]) == (
            0.8,
            1.0,
            0.8,
        )
        assert (row["satisfaction"], row["satisfaction_n"]) == (3.5, 4), key  # (4+2+5+3)/4
    cli = subprocess.run(
        [sys.executable, "-m", "gridsync", "whistle", "report", "--db", wsettings.db],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = cli.stdout.splitlines()
    assert lines[0].split("\t")[-2:] == ["回流", "随手办"]
    # (the CLI's now is the real clock: the case still waiting is past its deadline there)
    assert "网格\t第一网格\t5\t80%\t80%\t80%\t3.50\t0\t4" in lines
    as_json = subprocess.run(
        [sys.executable, "-m", "gridsync", "whistle", "report", "--db", wsettings.db, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    total = next(r for r in json.loads(as_json.stdout)["rows"] if r["level"] == "all")
    assert (total["self_handled"], total["cases"]) == (4, 5)


def test_every_action_the_wire_accepts_has_one_transition():
    """act() interprets a table: an action the wire types accept without a row in it would be
    a 500, a row no wire type can name is dead."""
    assert set(TRANSITIONS) == set(get_args(WhistleAction))

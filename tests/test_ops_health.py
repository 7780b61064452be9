"""Health, readiness, metrics and logs (README "Operations").

- /healthz and /readyz answer without a token; /readyz goes 503, naming the failing check, when
  the database cannot be written (another process holds SQLite's exclusive lock) and when the
  periodic loops fall behind (an injected clock moves past their schedule).
- /metrics needs an admin's token (or ``metrics_listen``); its counters move with traffic.
- Every response carries a request id (the client's when it is plain, else a new one); the
  access line names it; a 500 logs its traceback with it and returns it in the body.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
from datetime import UTC, datetime

import httpx
import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from gridsync import org
from gridsync.app import create_app
from gridsync.clock import FixedClock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.sync.client import DeviceClient
from tests.conftest import CLI, bearer, build_tiny_org
from tests.servers import ServerProcess

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text ``text`` (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def scrape(client: TestClient, token: str) -> str:
    r = client.get("/metrics", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return r.text


# -- health and readiness --------------------------------------------------------------------


def test_healthz_and_readyz_answer_without_a_token(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert body["checks"] == {"database": "ok", "migrations": "ok"}  # no periodic work here
    assert body["failing"] == []


def test_readyz_goes_unready_while_another_process_locks_the_database(client, db_path):
    assert client.get("/readyz").status_code == 200
    blocker = sqlite3.connect(db_path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # what a stuck migration or a hand-run UPDATE holds
    try:
        r = client.get("/readyz")
        assert r.status_code == 503, r.text
        assert r.json()["failing"] == ["database"]
        assert "no write committed" in r.json()["checks"]["database"]
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    r = client.get("/readyz")
    assert r.status_code == 200, r.text


def test_readyz_goes_unready_when_the_periodic_loops_stall(store, tiny, db_path):
    clock = FixedClock(T0)
    settings = Settings(db=db_path, sweep_interval_seconds=3600, ready_max_lag_seconds=60)
    app = create_app(settings, store=store, clock=clock, run_periodic=True)
    with TestClient(app=app) as c:
        worker = app.state.periodic
        assert worker.ran.wait(30) and worker.delivered.wait(30)  # first rounds done
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        assert r.json()["checks"]["sweep"] == "ok"
        assert r.json()["checks"]["dispatcher"] == "ok"
        # The loops sleep an hour; the clock moves past that plus the allowed lag: behind.
        clock.advance(seconds=3600 + 61)
        r = c.get("/readyz")
        assert r.status_code == 503
        body = r.json()
        assert set(body["failing"]) == {"sweep", "dispatcher"}
        assert "behind schedule" in body["checks"]["sweep"]
        text = scrape(c, tiny.tokens["admin"])
        assert sample(text, "gridsync_periodic_lag_seconds", loop="sweep") == pytest.approx(61)


# -- metrics -----------------------------------------------------------------------------------


def test_metrics_are_for_admins_only(client, tiny):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(tiny.tokens["m1"])).status_code == 403
    assert "gridsync_build_info" in scrape(client, tiny.tokens["admin"])


def test_metrics_move_with_traffic(client, tiny, tmp_path):
    admin = tiny.tokens["admin"]
    before = scrape(client, admin)
    phone = DeviceClient(
        client,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        person_id="m1",
        path=str(tmp_path / "phone.db"),
        clock=FixedClock(T0),
        sleep=lambda _s: None,
    )
    phone.sync()  # the first pull
    n = 7
    for i in range(n):
        phone.log_visit("hh-g1-1", "door", ["policy"], f"走访{i}")
    phone.update_household("hh-g1-2", fields={"notes": "新备注"})
    report = phone.push()
    assert report.applied == n + 1
    phone.close()
    after = scrape(client, admin)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert grew("gridsync_sync_mutations_total", op="visit.create", status="applied") == n
    assert grew("gridsync_sync_mutations_total", op="household.update", status="applied") == 1
    assert grew("gridsync_sync_push_duration_seconds_count") >= 1
    assert grew("gridsync_sync_pull_duration_seconds_count") >= 1
    assert (
        grew("gridsync_http_requests_total", route="/api/v1/sync/push", method="POST", status="200")
        >= 1
    )
    assert grew("gridsync_http_received_bytes_total", route="/api/v1/sync/push") > 200 * n
    assert grew("gridsync_http_sent_bytes_total", route="/api/v1/sync/pull") > 0
    assert grew("gridsync_store_group_commit_size_count") >= 1
    assert sample(after, "gridsync_store_write_queue_length") == 0
    assert sample(after, "gridsync_outbox_pending") >= 0


def test_metrics_count_open_cases_by_level_and_the_outbox_backlog(client, tiny, store, db_path):
    admin = tiny.tokens["admin"]
    worker = org.NewPerson(
        id="m3",
        name="王芳",
        roles=["member"],
        scope=["g1"],
        branch_id="b1",
        channels=["json://127.0.0.1:9/never-sent"],  # no periodic work here: stays queued
    )
    store.write(org.add_people, [worker], CLI)  # someone for the case's alert to reach
    r = client.post(
        "/api/v1/whistle/cases",
        json={"grid_id": "g1", "category": "环境卫生", "description": "垃圾堆放"},
        headers=bearer(tiny.tokens["m1"]),
    )
    assert r.status_code in (200, 201), r.text
    text = scrape(client, admin)
    assert sample(text, "gridsync_whistle_open_cases", level="grid") == 1
    # raising a case queues its alert; nothing delivers it here (no periodic work)
    with sqlite3.connect(db_path) as conn:
        queued = conn.execute("SELECT count(*) FROM outbox WHERE state = 'queued'").fetchone()[0]
    assert queued >= 1
    assert sample(text, "gridsync_outbox_pending") == queued
    assert sample(text, "gridsync_outbox_oldest_pending_age_seconds") >= 0


def test_metrics_listen_serves_them_without_a_token(store, tiny, db_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings(db=db_path, metrics_listen=f"127.0.0.1:{port}")
    with TestClient(app=create_app(settings, store=store)) as c:
        c.get("/healthz")
        r = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert r.status_code == 200
        assert sample(r.text, "gridsync_http_requests_total", route="/healthz") >= 1
    with pytest.raises(httpx.TransportError):  # stopped with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_two_apps_keep_their_own_metrics(store, tiny, db_path):
    one = create_app(Settings(db=db_path), store=store)
    two = create_app(Settings(db=db_path), store=store)
    with TestClient(app=one) as a, TestClient(app=two) as b:
        for _ in range(3):
            a.get("/healthz")
        text_b = scrape(b, tiny.tokens["admin"])
        assert sample(text_b, "gridsync_http_requests_total", route="/healthz") == 0
        text_a = scrape(a, tiny.tokens["admin"])
        assert sample(text_a, "gridsync_http_requests_total", route="/healthz") == 3


# -- request ids and logs ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123.x:y_z", True),
        ("x" * 129, False),  # too long
        ("a b", False),  # unsafe characters
        ("<script>", False),
    ],
)
def test_a_plain_incoming_request_id_is_kept_and_any_other_replaced(client, sent, kept):
    r = client.get("/healthz", headers={"X-Request-ID": sent})
    rid = r.headers["x-request-id"]
    assert (rid == sent) is kept
    assert 1 <= len(rid) <= 128


def test_every_request_gets_an_access_line_with_its_id_and_device(client, tiny, caplog):
    caplog.set_level(logging.INFO, logger="gridsync.access")
    r = client.get("/api/v1/me", headers={**bearer(tiny.tokens["m1"]), "X-Request-ID": "req-42"})
    assert r.status_code == 200
    miss = client.get("/no/such/path")
    assert miss.status_code == 404
    lines = [rec for rec in caplog.records if rec.name == "gridsync.access"]
    me = next(rec for rec in lines if rec.path == "/api/v1/me")
    assert (me.method, me.status, me.device, me.request_id) == ("GET", 200, "dev-m1", "req-42")
    assert me.ms >= 0
    unmatched = next(rec for rec in lines if rec.path == "/no/such/path")
    assert unmatched.status == 404 and unmatched.device == "-"
    assert unmatched.request_id == miss.headers["x-request-id"]


def test_a_500_logs_its_traceback_with_the_request_id_and_returns_the_id(
    client, tiny, caplog, monkeypatch
):
    from gridsync.sync import status

    def broken(*_args, **_kwargs):
        raise RuntimeError("a bug in sync_status")

    monkeypatch.setattr(status, "sync_status", broken)  # a real bug would do the same
    caplog.set_level(logging.ERROR, logger="gridsync.api")
    r = client.get(
        "/api/v1/sync/status",
        headers={**bearer(tiny.tokens["m1"]), "X-Gridsync-Schema": "1", "X-Request-ID": "rq-500"},
    )
    assert r.status_code == 500
    body = r.json()
    assert body["code"] == "internal_error"
    assert body["request_id"] == "rq-500" == r.headers["x-request-id"]
    errors = [rec for rec in caplog.records if rec.name == "gridsync.api"]
    assert len(errors) == 1
    assert "rq-500" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert "a bug in sync_status" in caplog.text  # the traceback is in the log


def test_a_4xx_body_has_no_request_id(client):
    r = client.get("/api/v1/me")
    assert r.status_code == 401
    assert "request_id" not in r.json()
    assert r.headers["x-request-id"]


def test_serve_logs_json_lines_with_the_request_id(db_path, tmp_path):
    with Store(db_path) as store:
        build_tiny_org(store)
    server = ServerProcess(db_path, extra_args=("--log-format", "json")).start()
    try:
        r = httpx.get(server.url + "/readyz", headers={"X-Request-ID": "json-1"}, timeout=10)
        assert r.status_code == 200, r.text
        r = httpx.get(server.url + "/api/v1/me", timeout=10)
        assert r.status_code == 401
    finally:
        server.stop()
    entries = []
    for line in server.output:
        try:
            entries.append(json.loads(line))
        except ValueError:
            continue  # the URL line and anything not ours
    ready = [e for e in entries if e.get("path") == "/readyz"]
    assert ready, "".join(server.output)
    assert ready[0]["request_id"] == "json-1"
    assert ready[0]["status"] == 200 and ready[0]["logger"] == "gridsync.access"
    assert {"ts", "level", "message", "method", "ms", "device"} <= set(ready[0])
    denied = next(e for e in entries if e.get("path") == "/api/v1/me")
    assert denied["status"] == 401 and len(denied["request_id"]) >= 8

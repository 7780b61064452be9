"""Nothing lost (SPEC section 8): a real ``gridsync serve`` process, killed with SIGKILL.

- A push that was acknowledged survives ``kill -9`` and a restart.
- A ``kill -9`` while a 1,000-mutation batch is being applied leaves all of it or none of it
  (the batch is one transaction), and resending the same batch afterwards applies it exactly once.

To kill *during* the batch without sleeping, the test sends the request bytes itself on a socket
and then watches the database file: the server's writer holds SQLite's write lock for as long as
the batch transaction is open, so the first failed ``BEGIN IMMEDIATE`` (with no busy wait) after
the request was sent is the evidence that the batch is being applied right now.
"""

from __future__ import annotations

import socket
import sqlite3
from datetime import UTC, datetime
from urllib.parse import urlparse

import httpx
import msgspec

from gridsync.clock import FixedClock
from gridsync.db import Store
from gridsync.sync.client import DeviceClient
from tests.conftest import build_tiny_org
from tests.servers import ServerProcess

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


def visits_with_ids(db_path: str, ids: list[str]) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(
            "SELECT count(*) FROM visits WHERE id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(ids).decode()],
        ).fetchone()[0]
    finally:
        conn.close()


def prepared_db(db_path: str):
    with Store(db_path) as store:
        return build_tiny_org(store)


def test_an_acknowledged_push_survives_kill_9(db_path, tmp_path):
    tiny = prepared_db(db_path)
    phone_path = str(tmp_path / "phone.db")
    server = ServerProcess(db_path).start()
    try:
        with httpx.Client(base_url=server.url) as http:
            phone = DeviceClient(
                http,
                token=tiny.tokens["m1"],
                device_id=tiny.devices["m1"],
                person_id="m1",
                path=phone_path,
                clock=FixedClock(T0),
                sleep=lambda _s: None,
            )
            phone.sync()
            phone.update_household(
                "hh-g1-1", fields={"phone": "13999999999"}, tags_add=["disabled"]
            )
            ids = [phone.log_visit("hh-g1-1", "door", ["safety"], f"{i}").id for i in range(5)]
            report = phone.push()
            assert report.applied == 6
            phone.close()
        server.kill()
    finally:
        server.kill()

    with ServerProcess(db_path) as again, httpx.Client(base_url=again.url) as http:
        assert visits_with_ids(db_path, ids) == 5
        fresh = DeviceClient(
            http, token=tiny.tokens["m1"], device_id=tiny.devices["m1"], sleep=lambda _s: None
        )
        fresh.pull()
        # m1 is not its responsible member: the number comes masked (gridsync/privacy.py)
        assert fresh.household("hh-g1-1")["phone"] == "139****9999"
        assert "disabled" in fresh.household("hh-g1-1")["tags"]
        assert set(ids) <= set(fresh.visits())
        # The phone's queue file also survived its own "crash": nothing left to send.
        phone = DeviceClient(
            http,
            token=tiny.tokens["m1"],
            device_id=tiny.devices["m1"],
            path=phone_path,
            sleep=lambda _s: None,
        )
        assert phone.pending_count() == 0
        assert phone.push().sent == 0


def _raw_post(url: str, path: str, token: str, body: bytes) -> socket.socket:
    """Send a complete HTTP request and return the socket without reading the answer."""
    parsed = urlparse(url)
    sock = socket.create_connection((parsed.hostname, parsed.port), timeout=60)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nX-Gridsync-Schema: 1\r\n"
        f"X-Gridsync-App: durability-test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def _server_is_writing(db_path: str) -> bool:
    conn = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError:
        return True
    else:
        conn.execute("ROLLBACK")
        return False
    finally:
        conn.close()


def test_kill_9_during_a_large_batch_leaves_all_or_nothing_and_a_resend_applies_it_once(
    db_path, tmp_path
):
    tiny = prepared_db(db_path)
    # The batch is built by the reference client (queued offline: 1,000 visits), so it is
    # exactly what a phone would send; here it goes out in one request of 1,000.
    no_network = httpx.Client(base_url="http://unused.invalid")  # built offline: never used
    offline = DeviceClient(
        no_network,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        person_id="m1",
        path=str(tmp_path / "phone.db"),
        clock=FixedClock(T0),
    )
    for i in range(1000):
        offline.log_visit(
            tiny.households["g1"][i % 4],
            "door",
            ["policy", "safety"],
            f"入户走访第{i}次，了解住户近况，宣传政策" * 3,
        )
    batch = offline.pending()
    ids = [m.id for m in batch]
    body = msgspec.json.encode(
        {"device_id": tiny.devices["m1"], "mutations": [m.wire() for m in batch]}
    )

    server = ServerProcess(db_path).start()
    saw_write_lock = False
    try:
        sock = _raw_post(server.url, "/api/v1/sync/push", tiny.tokens["m1"], body)
        sock.setblocking(False)
        answered = b""
        # Poll for evidence: either the batch transaction holds the write lock (kill now),
        # or the answer starts to arrive (the batch committed first: kill anyway).
        for _ in range(2_000_000):
            if _server_is_writing(db_path):
                saw_write_lock = True
                break
            try:
                answered = sock.recv(1)
            except BlockingIOError:
                continue
            break
        server.kill()
        sock.close()
    finally:
        server.kill()

    count = visits_with_ids(db_path, ids)
    assert count in (0, 1000), f"a partial batch is stored: {count} of 1000"
    assert saw_write_lock or answered, "neither the write nor its answer was observed"

    with ServerProcess(db_path) as again, httpx.Client(base_url=again.url) as http:
        headers = {
            "Authorization": f"Bearer {tiny.tokens['m1']}",
            "X-Gridsync-Schema": "1",
            "X-Gridsync-App": "durability-test",
            "Content-Type": "application/json",
        }
        r = http.post("/api/v1/sync/push", content=body, headers=headers, timeout=120)
        assert r.status_code == 200, r.text
        statuses = {res["status"] for res in r.json()["results"]}
        assert statuses == ({"applied"} if count == 0 else {"duplicate"})
        assert visits_with_ids(db_path, ids) == 1000
        # And the phone's own resend (two batches of 500) is harmless too.
        offline.http = http
        report = offline.push()
        assert (report.duplicate, report.applied) == (1000, 0)
        assert visits_with_ids(db_path, ids) == 1000
    offline.close()
    no_network.close()

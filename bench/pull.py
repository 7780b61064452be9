"""Pull: initial snapshots through the real server against a raw SELECT + msgspec, and bytes on
the wire.

    python -m bench pull [--runs N] [--quick]

Two databases from the demo generator: the demo community (520 households, 60 days of visits),
pulled by its community secretary, and a street of ``STREET_COMMUNITIES`` such communities,
pulled by the street admin. The snapshot is every page of ``GET /api/v1/sync/pull`` (500 changes
a page, JSON, no gzip) from a real ``gridsync serve`` process, timed from the first request to
the last byte, by a lean client (``http.client``, one keep-alive connection) that reads of each
page what it needs to ask for the next (the cursor, ``has_more``; the changes are counted but
stay raw bytes). The same snapshot through httpx with every change decoded into Python objects
(client work the floor has no counterpart of) is reported next to it. The floor, in the same run: a raw ``sqlite3`` SELECT of the same rows (org units,
people, households of the scope's grids, their visits of the pull window) as tuples, encoded
with ``msgspec.json``. Both are counted in records per second. Budget: >= 0.5 of the floor.

Bytes on the wire (SPEC 8, gzip budgets): the community snapshot in JSON, JSON+gzip, msgpack and
msgpack+gzip (bodies); an incremental pull with nothing new (request line and headers + status
line, headers and body, as sent); a visit pushed (request and response bodies per visit, JSON +
gzip, in a batch of 500 and alone).
"""

from __future__ import annotations

import http.client
import sqlite3
import tempfile
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import msgspec

from bench.common import (
    SECRETARY,
    STREET_ADMIN,
    Budget,
    Report,
    build_demo,
    enroll,
    median,
    serve,
)
from gridsync.clock import DAY_MS
from gridsync.sync.client import CHINA, PULL_PATH, SCHEMA_VERSION, DeviceClient

STREET_COMMUNITIES = 8

TOO_SMALL = "120 households a community: a snapshot of a few pages times fixed costs"
COMMUNITY = Budget("pull.community", "community: snapshot / floor", ">=", 0.5, quick=TOO_SMALL)
STREET = Budget("pull.street", "street: snapshot / floor", ">=", 0.5, quick=TOO_SMALL)
SNAPSHOT_KB = Budget(
    "pull.snapshot-kb",
    "community snapshot, JSON+gzip (KB, SPEC 8: < 1 MB)",
    "<=",
    1000,
    quick="the SPEC's figure is for a 520-household community; the quick one has 120",
)
EMPTY_PULL_BYTES = Budget(
    "pull.empty-pull-bytes",
    "empty incremental pull, round trip (bytes, SPEC 8: < 1 KB)",
    "<=",
    1000,
)
VISIT_BYTES = Budget(
    "pull.visit-bytes", "visit pushed in a batch of 500, JSON+gzip (bytes, < 300)", "<=", 300
)
BUDGETS = (COMMUNITY, STREET, SNAPSHOT_KB, EMPTY_PULL_BYTES, VISIT_BYTES)
LABEL_BUDGETS = {"community": COMMUNITY, "street": STREET}
_encode = msgspec.json.Encoder().encode


def headers(token: str, *, msgpack: bool = False, gzip: bool = False) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "X-Gridsync-Schema": SCHEMA_VERSION,
        "Accept": "application/msgpack" if msgpack else "application/json",
        "Accept-Encoding": "gzip" if gzip else "identity",
    }


class Envelope(msgspec.Struct):
    """What a client must read of a page to ask for the next one; each change stays raw."""

    changes: list[msgspec.Raw]
    cursor: str
    has_more: bool


_envelope = {False: msgspec.json.Decoder(Envelope), True: msgspec.msgpack.Decoder(Envelope)}


def snapshot(
    http: httpx.Client, token: str, *, decode_changes: bool = True, **fmt: bool
) -> tuple[int, int, int, str]:
    """All pages of an initial pull: (changes, pages, body bytes as sent, final cursor).

    With ``decode_changes`` off the client reads only each page's envelope (the changes stay
    raw bytes): the snapshot as the server serves it, without the client's decoding."""
    changes = pages = size = 0
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        response = http.get(PULL_PATH, params=params, headers=headers(token, **fmt))
        response.raise_for_status()
        size += response.num_bytes_downloaded
        msgpack = bool(fmt.get("msgpack"))
        if decode_changes:
            page = (
                msgspec.msgpack.decode(response.content)
                if msgpack
                else msgspec.json.decode(response.content)
            )
            n, cursor, more = len(page["changes"]), page["cursor"], page["has_more"]
        else:
            envelope = _envelope[msgpack].decode(response.content)
            n, cursor, more = len(envelope.changes), envelope.cursor, envelope.has_more
        changes += n
        pages += 1
        if not more:
            return changes, pages, size, cursor


def served(url: str, token: str) -> int:
    """All pages of an initial pull over one keep-alive connection of the standard library's
    ``http.client`` (a lighter instrument than httpx), reading of each page only what asking for
    the next needs: the number of changes of the snapshot."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    sent = headers(token)
    changes, cursor = 0, ""
    try:
        while True:
            query = urllib.parse.urlencode({"limit": 500, **({"cursor": cursor} if cursor else {})})
            conn.request("GET", f"{PULL_PATH}?{query}", headers=sent)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200:
                raise RuntimeError(f"pull answered {response.status}: {body[:200]!r}")
            page = _envelope[False].decode(body)
            changes += len(page.changes)
            cursor = page.cursor
            if not page.has_more:
                return changes
    finally:
        conn.close()


def wire_size(response: httpx.Response) -> int:
    """Bytes of a request and its response as HTTP/1.1 sends them (bodies as transferred)."""
    req = response.request
    up = len(f"{req.method} {req.url.raw_path.decode()} HTTP/1.1\r\n") + 2 + len(req.content)
    up += sum(len(k) + len(v) + 4 for k, v in req.headers.raw)
    down = len(f"HTTP/1.1 {response.status_code} {response.reason_phrase}\r\n") + 2
    down += sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    return up + down + response.num_bytes_downloaded


def floor(db: Path, grid_sql: str, window_days: int) -> tuple[int, float]:
    """(rows, seconds) of a raw SELECT of the snapshot's rows plus msgspec JSON encoding."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        start = time.perf_counter()
        grids = [r[0] for r in conn.execute(grid_sql)]
        marks = ", ".join("?" * len(grids))
        since = int(time.time() * 1000) - window_days * DAY_MS
        rows = 0
        for sql, params in [
            ("SELECT * FROM org_units", []),
            ("SELECT * FROM people", []),
            (f"SELECT * FROM households WHERE grid_id IN ({marks})", grids),
            (f"SELECT * FROM visits WHERE grid_id IN ({marks}) AND at_ms >= ?", [*grids, since]),
        ]:
            result = conn.execute(sql, params).fetchall()
            _encode(result)
            rows += len(result)
        return rows, time.perf_counter() - start
    finally:
        conn.close()


def measure(
    report: Report, label: str, db: Path, token: str, grid_sql: str, runs: int, url: str
) -> tuple[float, str]:
    rates, decoded, floors = [], [], []
    with httpx.Client(base_url=url, timeout=60) as http:
        for _ in range(runs):
            start = time.perf_counter()
            changes = served(url, token)
            rates.append(changes / (time.perf_counter() - start))
            rows, seconds = floor(db, grid_sql, 60)
            floors.append(rows / seconds)
            start = time.perf_counter()
            got, pages, _, cursor = snapshot(http, token)
            decoded.append(got / (time.perf_counter() - start))
            assert got == changes, (got, changes)
    report.add(f"{label}: snapshot", f"{changes:,} changes in {pages} pages")
    report.add(f"{label}: snapshot through the server", median(rates), "records/s")
    report.add(
        f"{label}: floor (SELECT + msgspec)", f"{median(floors):,.0f} records/s ({rows:,} rows)"
    )
    report.measure(
        LABEL_BUDGETS[label], median([r / f for r, f in zip(rates, floors, strict=True)])
    )
    report.add(
        f"{label}: same through httpx, decoding every change / floor",
        f"{median([d / f for d, f in zip(decoded, floors, strict=True)]):.2f}",
    )
    return median(rates), cursor


def run(quick: bool = False, runs: int = 5) -> Report:
    communities = 2 if quick else STREET_COMMUNITIES
    report = Report(
        f"pull: initial snapshot of the demo community and of a street of "
        f"{communities} communities, vs SELECT + msgspec; bytes on the wire"
    )
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        community = Path(tmp) / "community.db"
        street = Path(tmp) / "street.db"
        build_demo(community, households=120 if quick else None)
        build_demo(street, communities=communities, households=communities * 60 if quick else None)
        [(_, _, sec_token), (_, dev500, token500), (_, dev1, token1)] = enroll(
            community, [SECRETARY] * 3
        )
        [(_, _, street_token)] = enroll(street, [STREET_ADMIN])

        with serve(community) as server:
            _, cursor = measure(
                report,
                "community",
                community,
                sec_token,
                "SELECT id FROM org_units WHERE kind = 'grid' AND parent_id = 'c001'",
                runs,
                server.url,
            )
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for name, fmt in [
                    ("JSON", {}),
                    ("JSON+gzip", {"gzip": True}),
                    ("msgpack", {"msgpack": True}),
                    ("msgpack+gzip", {"msgpack": True, "gzip": True}),
                ]:
                    _, _, size, _ = snapshot(http, sec_token, **fmt)
                    if name == "JSON+gzip":
                        report.measure(SNAPSHOT_KB, size / 1000)
                    else:
                        report.add(f"community snapshot, {name}", size / 1000, "KB")
                response = http.get(
                    PULL_PATH,
                    params={"limit": 500, "cursor": cursor},
                    headers=headers(sec_token, gzip=True),
                )
                assert response.status_code == 200 and not response.json()["changes"]
                report.measure(EMPTY_PULL_BYTES, float(wire_size(response)))
            report.add(
                "empty incremental pull, response body", f"{response.num_bytes_downloaded} bytes"
            )
            per_visit = push_bytes(server.url, community, dev500, token500, 500)
            single = push_bytes(server.url, community, dev1, token1, 1)
            report.measure(VISIT_BYTES, per_visit)
            report.add("visit pushed alone, JSON+gzip request + response bodies", single, "bytes")
        with serve(street) as server:
            measure(
                report,
                "street",
                street,
                street_token,
                "SELECT id FROM org_units WHERE kind = 'grid'",
                runs,
                server.url,
            )
        report.add("runs", str(runs))
    return report


def push_bytes(url: str, db: Path, device_id: str, token: str, n: int) -> float:
    """Request + response body bytes per visit of a JSON+gzip push of ``n`` visits."""
    conn = sqlite3.connect(db)
    households = [r[0] for r in conn.execute("SELECT id FROM households LIMIT ?", [n])]
    conn.close()
    with DeviceClient.connect(url, token=token, device_id=device_id, gzip=True) as phone:
        now = datetime.now(CHINA).replace(microsecond=0)
        for i in range(n):
            phone.log_visit(
                households[i % len(households)],
                "door",
                ["policy", "safety"],
                "宣传防范电信诈骗",
                at=now - timedelta(minutes=i),
            )
        phone._sync_status()  # the one-time status read before a store's first push
        up, down = phone.bytes_up, phone.bytes_down
        pushed = phone.push()
        assert pushed.applied == n, pushed
        return (phone.bytes_up - up + phone.bytes_down - down) / n

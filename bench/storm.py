"""Morning sync storm, with the whistle deadline latency measured while it runs.

    python -m bench storm [--runs N] [--quick]

A street of ``COMMUNITIES`` demo communities; one phone (reference client) for each of
``PHONES`` members, all synced the evening before (untimed). Offline overnight each phone logs
``VISITS`` visits and ``EDITS`` household edits (the first households of its grid: phones of the
same grid edit the same ones, so merges and conflicts happen). Then every phone, on its own
thread, released together, syncs: push, then pull until nothing more (bounded: 200 threads, each
does one sync and stops). Measured: requests/s over the storm, p50/p99 latency of every HTTP
request (as the phones see it: client-side queueing on the GIL included), errors (any 4xx/5xx
or exception; budget 0), lost or duplicated mutations (checked afterwards in the database: every
visit exactly once, every edit logged exactly once in ``sync_mutations``, each device's
``last_seq`` = its mutations; budget 0), the server's peak memory (VmHWM; budget < 300 MB).

Whistle: the server runs with grid accept deadlines of ``ACCEPT_SECONDS`` (TOML ``--config``) and
an Apprise YAML routing ``community:<id>:secretary`` to ``json://127.0.0.1:PORT/`` of a receiver
running in its own process (it stamps arrival times; the GIL of 200 phone threads would delay it
in this one). From ``ACCEPT_SECONDS`` before the storm to its end, a community secretary raises a grid case
every ``RAISE_EVERY`` seconds through the REST API (the storm is released as the first case
falls due). For each case whose accept deadline passed during
the storm: arrival of its escalation alert at the receiver minus the deadline (the server's
``received_at`` + the accept window). Budget: < 5 s (max).
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import Report, build_demo, enroll, members, serve
from gridsync.clock import parse_ms
from gridsync.sync.client import DeviceClient

ACCEPT_SECONDS = 8.0
RAISE_EVERY = 0.5
ALERT_WAIT_SECONDS = 30.0
CASE_ID = re.compile(r"案件编号：(\S+)")

RECEIVER = textwrap.dedent("""
    import sys, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    out = open(sys.argv[1], "a", buffering=1)
    class H(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            out.write(f"{time.time()!r} {body.decode()}\\n")
            self.send_response(200)
            self.end_headers()
        def log_message(self, *args):
            pass
    server = ThreadingHTTPServer(("127.0.0.1", 0), H)
    print(server.server_address[1], flush=True)
    server.serve_forever()
""")


class Phone:
    def __init__(self, url: str, person: str, device: str, token: str):
        self.client = DeviceClient.connect(
            url,
            token=token,
            device_id=device,
            person_id=person,
            encoding="msgpack",
            gzip=True,
            backoff_seconds=0.05,
        )
        self.latencies: list[float] = []
        self.statuses: list[int] = []
        self.transport_errors: list[str] = []  # retried by the client with the same bytes
        self.error: str | None = None
        request = self.client.http.request

        def timed_request(*args, **kwargs):
            start = time.perf_counter()
            try:
                response = request(*args, **kwargs)
            except httpx.TransportError as exc:
                self.transport_errors.append(repr(exc))
                raise
            finally:
                self.latencies.append(time.perf_counter() - start)
            self.statuses.append(response.status_code)
            return response

        self.client.http.request = timed_request  # type: ignore[method-assign]

    def sync(self, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            report = self.client.sync()
            if report.push.rejected:
                self.error = f"{report.push.rejected} rejected"
        except Exception as exc:  # counted as an error of the storm
            self.error = f"{type(exc).__name__}: {exc}"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def start_receiver(log: Path) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER, str(log)], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())  # type: ignore[union-attr]
    return proc, port


def raise_cases(
    url: str, token: str, grids: list[str], stop: threading.Event, cases: list[tuple[str, int]]
) -> None:
    """A secretary raising a grid case every RAISE_EVERY seconds: (case id, accept due ms)."""
    with httpx.Client(
        base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        n = 0
        while not stop.is_set():
            response = http.post(
                "/api/v1/whistle/cases",
                json={
                    "category": "safety",
                    "grid_id": grids[n % len(grids)],
                    "location": f"{n + 1}号楼",
                    "description": "楼道堆放杂物，堵塞消防通道",
                },
            )
            response.raise_for_status()
            case = response.json()
            cases.append((case["id"], parse_ms(case["deadlines"]["accept"])))
            n += 1
            stop.wait(RAISE_EVERY)


def run(quick: bool = False, runs: int = 1) -> Report:
    communities, phones_n, visits, edits = (1, 12, 10, 2) if quick else (3, 200, 50, 3)
    accept_seconds = 3.0 if quick else ACCEPT_SECONDS
    report = Report(
        f"storm: {phones_n} phones x ({visits} visits + {edits} household edits, "
        f"then pull) at once; whistle deadline latency during the storm"
    )
    rates, p50s, p99s, rss, worst_alerts = [], [], [], [], []
    errors = lost = duplicated = requests_total = 0
    for run_no in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
            work = Path(tmp)
            db = work / "server.db"
            build_demo(db, communities=communities)
            people = members(db)[:phones_n]
            people = (people * (phones_n // len(people) + 1))[:phones_n]
            devices = enroll(db, people)
            conn = sqlite3.connect(db)
            secretary = conn.execute(
                "SELECT id FROM people WHERE roles LIKE '%community_secretary%' ORDER BY id"
            ).fetchone()[0]
            community = conn.execute(
                "SELECT unit_id FROM person_scope WHERE person_id = ?", [secretary]
            ).fetchone()[0]
            grids = [
                r[0]
                for r in conn.execute(
                    "SELECT id FROM org_units WHERE kind = 'grid' AND parent_id = ?", [community]
                )
            ]
            conn.close()
            [(_, _, secretary_token)] = enroll(db, [secretary])
            log = work / "alerts.log"
            receiver, port = start_receiver(log)
            (work / "apprise.yml").write_text(
                f"version: 1\nurls:\n  - json://127.0.0.1:{port}/secretary:\n"
                f"      - tag: community:{community}:secretary\n"
            )
            (work / "gridsync.toml").write_text(
                textwrap.dedent(f"""
                [notify]
                apprise_config = "{work / "apprise.yml"}"
                [whistle_deadlines.grid]
                accept_minutes = {accept_seconds / 60}
                arrive_minutes = 10
                resolve_minutes = 30
            """)
            )
            try:
                with serve(db, "--config", str(work / "gridsync.toml")) as server:
                    phones = [Phone(server.url, *d) for d in devices]
                    evening = threading.Barrier(len(phones))
                    threads = [threading.Thread(target=p.sync, args=(evening,)) for p in phones]
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    expected_visits: set[str] = set()
                    expected_mids: set[str] = set()
                    for p in phones:
                        if p.error:
                            raise RuntimeError(f"evening sync failed: {p.error}")
                        p.latencies.clear()
                        p.statuses.clear()
                        p.transport_errors.clear()
                        mine = sorted(p.client.households())
                        for i in range(visits):
                            q = p.client.log_visit(
                                mine[i % len(mine)], "door", ["policy"], "入户走访"
                            )
                            expected_visits.add(q.id)
                        for i in range(edits):
                            q = p.client.update_household(
                                mine[i % len(mine)],
                                fields={"notes": f"{p.client.device_id} {i}"},
                                tags_add=["renter"] if i % 2 else [],
                            )
                            expected_mids.add(q.mid)
                    morning = threading.Barrier(len(phones) + 1)
                    threads = [threading.Thread(target=p.sync, args=(morning,)) for p in phones]
                    for t in threads:
                        t.start()
                    stop = threading.Event()
                    cases: list[tuple[str, int]] = []
                    raiser = threading.Thread(
                        target=raise_cases, args=(server.url, secretary_token, grids, stop, cases)
                    )
                    raiser.start()
                    while not cases:
                        time.sleep(0.01)
                    # the storm is released as the first case falls due, never before: a
                    # storm shorter than any lead (the quick one takes 0.1 s) would otherwise
                    # end with no deadline passed in it
                    while (wait := (cases[0][1] - time.time() * 1000) / 1000) > 0:
                        time.sleep(wait)
                    morning.wait()
                    start = time.perf_counter()
                    for t in threads:
                        t.join()
                    seconds = time.perf_counter() - start
                    storm_end_ms = time.time() * 1000
                    stop.set()
                    raiser.join()
                    due = {cid: ms for cid, ms in cases if ms <= storm_end_ms}
                    arrived = wait_for_alerts(log, set(due))
                    rss.append(server.peak_rss_mb())
            finally:
                receiver.terminate()
                receiver.wait()
                receiver.stdout.close()  # type: ignore[union-attr]
            latencies = [x for p in phones for x in p.latencies]
            statuses = Counter(s for p in phones for s in p.statuses)
            requests_total = len(latencies)
            transport = Counter(e.split("(")[0] for p in phones for e in p.transport_errors)
            errors += sum(1 for p in phones if p.error) + sum(
                n for s, n in statuses.items() if s >= 400
            )
            rates.append(len(latencies) / seconds)
            p50s.append(percentile(latencies, 0.50) * 1000)
            p99s.append(percentile(latencies, 0.99) * 1000)
            run_lost, run_dup = check_database(
                db, expected_visits, expected_mids, {d[1]: visits + edits for d in devices}
            )
            lost += run_lost
            duplicated += run_dup
            late = [(arrived[cid] - ms) / 1000 for cid, ms in due.items() if cid in arrived]
            missing = len(due) - len(late)
            worst_alerts.append(max(late, default=float("inf")) if not missing else float("inf"))
            for p in phones:
                p.client.close()
            if run_no == runs - 1:
                report.add("storm wall time (last run)", seconds, "s")
                report.add(
                    "requests (last run)",
                    f"{requests_total:,} "
                    f"({', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))})",
                )
                report.add(
                    "transport errors retried by the client (last run)",
                    ", ".join(f"{e}: {n}" for e, n in transport.items()) or "none",
                )
                report.add(
                    "whistle cases whose deadline passed in the storm (last run)",
                    f"{len(due)}, alerts received {len(late)}",
                )
                if late:
                    report.add(
                        "alert latency after the deadline, median (last run)",
                        sorted(late)[len(late) // 2],
                        "s",
                    )
    report.add("requests per second", sorted(rates)[len(rates) // 2], "req/s")
    report.add("latency p50", sorted(p50s)[len(p50s) // 2], "ms")
    report.add("latency p99", sorted(p99s)[len(p99s) // 2], "ms")
    report.budget("errors (all runs)", float(errors), at_most=0)
    report.budget("lost mutations (all runs)", float(lost), at_most=0)
    report.budget("duplicated mutations (all runs)", float(duplicated), at_most=0)
    report.budget("server peak memory, MB (max of runs)", max(rss), at_most=300)
    report.budget(
        "whistle deadline -> alert at the receiver, s (worst of runs)", max(worst_alerts), at_most=5
    )
    report.add("runs", str(runs))
    return report


def wait_for_alerts(log: Path, case_ids: set[str]) -> dict[str, float]:
    """Arrival time (ms) of the first escalation alert of each case, waiting up to
    ALERT_WAIT_SECONDS for all of them."""
    deadline = time.monotonic() + ALERT_WAIT_SECONDS
    while True:
        arrived: dict[str, float] = {}
        text = log.read_text() if log.exists() else ""
        for line in text.splitlines():
            at, body = line.split(" ", 1)
            alert = json.loads(body)
            match = CASE_ID.search(alert.get("message", ""))
            if match and "案件已上报" in alert.get("title", "") and match.group(1) not in arrived:
                arrived[match.group(1)] = float(at) * 1000
        if case_ids <= set(arrived) or time.monotonic() > deadline:
            return arrived
        time.sleep(0.2)


def check_database(
    db: Path, visits: set[str], mids: set[str], per_device: dict[str, int]
) -> tuple[int, int]:
    """(lost, duplicated) mutations of the storm, from the server's database."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("CREATE TEMP TABLE want (id TEXT PRIMARY KEY)")
        conn.executemany("INSERT INTO want VALUES (?)", [(v,) for v in visits])
        found = conn.execute(
            "SELECT COUNT(*), COUNT(DISTINCT v.id) FROM visits v JOIN want w ON w.id = v.id"
        ).fetchone()
        storm_devices = list(per_device)
        marks = ", ".join("?" * len(storm_devices))
        by_devices = conn.execute(
            f"SELECT COUNT(*) FROM visits WHERE device_id IN ({marks}) AND received_at IS NOT NULL",
            storm_devices,
        ).fetchone()[0]
        conn.execute("DELETE FROM want")
        conn.executemany("INSERT INTO want VALUES (?)", [(m,) for m in mids])
        logged = conn.execute(
            "SELECT COUNT(*) FROM sync_mutations s JOIN want w "
            "ON w.id = s.mid WHERE s.status IN ('applied', 'merged')"
        ).fetchone()[0]
        last_seq = dict(
            conn.execute(
                f"SELECT id, last_seq FROM devices WHERE id IN ({marks})", storm_devices
            ).fetchall()
        )
    finally:
        conn.close()
    lost = (len(visits) - found[1]) + (len(mids) - logged)
    lost += sum(max(0, n - last_seq.get(d, 0)) for d, n in per_device.items())
    duplicated = (found[0] - found[1]) + max(0, by_devices - len(visits))
    duplicated += sum(max(0, last_seq.get(d, 0) - n) for d, n in per_device.items())
    return lost, duplicated

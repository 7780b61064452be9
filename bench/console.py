"""The console's 覆盖 page for a whole district against the REST call for the same scope.

    python -m bench console [--runs 5] [--quick]

Data: the district demo of ``bench/coverage.py`` (``$GRIDSYNC_BENCH_DISTRICT_DB``, default
/tmp/gridsync-district.db, built once if missing); ``--quick`` builds a tiny district into a
temporary file instead (too small for the ratio to mean anything: SKIP).

A real ``gridsync serve`` process on the database; the district admin signs in to the console
with a one-time link (its session cookie) and holds a device token for the API. Each run times,
back to back, ``GET /api/v1/coverage`` (the roll-up of the admin's scope, msgspec JSON) and
``GET /console/coverage`` (the page: the same roll-up, the first page of violations with their
counts, the SVG chart, the grid tiles, rendered by Jinja), after one warm-up call of each; the
figures are medians. Budget: the page takes at most 2x the API call (issue 16).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Budget, Report, median, serve
from bench.coverage import AS_OF, DISTRICT_DB, TINY, _build_district
from gridsync import auth, demo, signin
from gridsync.audit import Actor
from gridsync.db import Store

PAGE = Budget(
    "console.coverage-page",
    "district 覆盖 page / GET /api/v1/coverage (same scope)",
    "<=",
    2.0,
    quick="a district of 1,500 households: both calls take a few milliseconds",
)
BUDGETS = (PAGE,)
ADMIN = "admin"  # the demo's district admin


def _credentials(db: Path) -> tuple[str, str]:
    """A device token and a one-time console link for the demo's district admin."""
    with Store(db) as store:
        token = store.write(auth.enroll, ADMIN, Actor.cli(), label="bench console").token
        link, _ = store.write(
            signin.create_link, ADMIN, Actor.cli(), now_ms=int(time.time() * 1000)
        )
    return token, link


def _timed(http: httpx.Client, path: str, **kwargs: object) -> tuple[float, int]:
    start = time.perf_counter()
    r = http.get(path, **kwargs)  # type: ignore[arg-type]
    seconds = time.perf_counter() - start
    if r.status_code != 200:
        raise RuntimeError(f"GET {path}: {r.status_code} {r.text[:300]}")
    return seconds, len(r.content)


def measure(db: Path, report: Report, runs: int) -> None:
    token, link = _credentials(db)
    with serve(db) as server, httpx.Client(base_url=server.url, timeout=600) as http:
        r = http.post(f"/console/login/{link}", follow_redirects=False)
        if r.status_code != 303:
            raise RuntimeError(f"console sign-in: {r.status_code} {r.text[:300]}")
        api_headers = {"Authorization": f"Bearer {token}"}
        _timed(http, "/api/v1/coverage", headers=api_headers)  # warm-up
        _timed(http, "/console/coverage")
        api: list[float] = []
        page: list[float] = []
        for _ in range(runs):
            seconds, api_bytes = _timed(http, "/api/v1/coverage", headers=api_headers)
            api.append(seconds)
            seconds, page_bytes = _timed(http, "/console/coverage")
            page.append(seconds)
        gz = http.get("/console/coverage", headers={"Accept-Encoding": "gzip"})
    report.add("GET /api/v1/coverage (district admin)", median(api), "s")
    report.add("GET /console/coverage (district admin)", median(page), "s")
    report.add("page bytes (HTML, uncompressed)", f"{page_bytes:,}")
    report.add("page bytes on the wire (gzip)", f"{int(gz.headers.get('content-length', 0)):,}")
    report.add("API bytes (JSON)", f"{api_bytes:,}")
    report.measure(PAGE, median(page) / median(api))


def run(quick: bool, runs: int) -> Report:
    report = Report("console 覆盖 page vs the REST roll-up, district scope")
    if quick:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tiny.db"
            with Store(path, synchronous="NORMAL") as store:
                demo.build(store, TINY, seed=1, as_of=AS_OF)
            measure(path, report, runs)
        return report
    if not DISTRICT_DB.exists():
        report.add("district demo build", _build_district(DISTRICT_DB), "s")
    measure(DISTRICT_DB, report, runs)
    return report


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["console", *sys.argv[1:]]))

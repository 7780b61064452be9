"""Coverage at district scale: the roll-up and the violations list against one GROUP BY.

    python -m bench coverage [--runs 5] [--quick]

Data: ``gridsync demo --scale district`` (137 communities, 940 grids, ~300,000 households,
~2 million visits), built once into ``$GRIDSYNC_BENCH_DISTRICT_DB`` (default
/tmp/gridsync-district.db) and reused; the build time is measured when the bench builds it and
kept next to the database (``<db>.build.json``) for later runs to report. ``--quick`` builds a
tiny district with the same generator (``demo.Scale``) into a temporary file instead.

Everything runs on one warm read connection (``Store.read``) after one warm-up call; each of the
``runs`` samples times the floor right before the subject (the machine is shared: ratios of
adjacent timings hold up, absolute times move 2x), and the figures are the medians:

- floor: the overdue households per grid, one hand-written ``GROUP BY grid_id`` (the faster of
  the planner's own plan and the covering partial index ``households_coverage``);
- full roll-up: every level member -> branch -> grid -> community -> street -> district
  (``levels`` = all: ~38,000 rows, ~36,000 of them members), as the API returns it when every
  level is asked for (budget: <= 2x the floor); also with its msgspec JSON encoding (the API's
  cost on top);
- roll-up, branch..district: the unit levels only (what the API returns for a district by
  default), members counted in every row (budget: <= 2x the floor);
- violations: the first page (100) with the counts of every kind (budget: <= 2x the floor);
- dashboard: roll-up branch..district + violations, the two calls a district dashboard makes
  (reported);
- lower bounds of the full roll-up (``_member_row_bounds``): parts that any exact full roll-up
  must do, each against the floor, so that "out of reach" is measured on every run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

import msgspec

from bench.common import REPO, Budget, Report, median
from gridsync import coverage, demo
from gridsync.clock import DAY_MS
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.models import COVERAGE_LEVELS
from gridsync.org import Scope

ADMIN = Scope("bench", True, frozenset(), frozenset(), 0)
DISTRICT_DB = Path(os.environ.get("GRIDSYNC_BENCH_DISTRICT_DB", "/tmp/gridsync-district.db"))
AS_OF = date(2026, 11, 23)
TINY = demo.Scale(
    "bench-tiny-district",
    streets=2,
    communities=4,
    grids=12,
    households=1_500,
    members=200,
    days=40,
)

TOO_SMALL = "a district of 1,500 households: the floor takes a fraction of a millisecond"
FULL_ROLLUP = Budget(
    "coverage.full-rollup",
    "full roll-up (all levels incl. members) / floor",
    "<=",
    2.0,
    quick=TOO_SMALL,
)
ROLLUP = Budget(
    "coverage.rollup", "roll-up branch..district (unit levels) / floor", "<=", 2.0, quick=TOO_SMALL
)
VIOLATIONS = Budget(
    "coverage.violations", "violations (first page + counts) / floor", "<=", 2.0, quick=TOO_SMALL
)
BUDGETS = (FULL_ROLLUP, ROLLUP, VIOLATIONS)

FLOOR_SQL = """SELECT grid_id, count(*) FROM households {hint}
               WHERE status = 'active' AND responsible_member_id IS NOT NULL
                 AND coalesce(last_visit_ms, 0) < ? GROUP BY grid_id"""


def _build_district(path: Path) -> float:
    """``gridsync demo --scale district`` as a real process; returns its wall time."""
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "gridsync",
            "demo",
            "--scale",
            "district",
            "--db",
            str(path),
            "--as-of",
            AS_OF.isoformat(),
            "--json",
        ],
        check=True,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    seconds = time.perf_counter() - start
    Path(f"{path}.build.json").write_text(
        json.dumps({"seconds": round(seconds, 1), "at": time.strftime("%Y-%m-%d %H:%M")})
    )
    return seconds


def _as_of_ms(store: Store) -> int:
    """Midnight (China) of the demo's as-of day: the end of its visit history."""
    raw = store.read(
        lambda db: db.execute(
            "SELECT detail FROM audit_log WHERE action = 'demo.build' ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
    )
    day = date.fromisoformat(json.loads(raw[0])["as_of"]) if raw else AS_OF
    return int(datetime(day.year, day.month, day.day, tzinfo=demo.CHINA).timestamp() * 1000)


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(store: Store, report: Report, runs: int) -> None:
    """Each sample times the floor right before the subject, so a ratio compares two timings
    taken under the same load; the median of the per-sample ratios is the figure."""
    settings = Settings()
    now_ms = _as_of_ms(store)
    cycle_start = now_ms - settings.coverage.cycle_days * DAY_MS

    def floor_with(hint: str):
        return lambda db: db.execute(FLOOR_SQL.format(hint=hint), [cycle_start]).fetchall()

    def units(db):
        return coverage.rollup(db, settings, ADMIN, None, now_ms=now_ms)

    def every_level(db):
        return coverage.rollup(
            db, settings, ADMIN, None, now_ms=now_ms, levels=list(COVERAGE_LEVELS)
        )

    def page(db):
        return coverage.violations(db, settings, ADMIN, None, now_ms=now_ms, limit=100)

    def dashboard(db):
        return units(db), page(db)

    def every_level_json(db):
        return msgspec.json.encode(every_level(db))

    planner, covering = floor_with(""), floor_with("INDEXED BY households_coverage")
    subjects = {
        "floor, planner's plan": planner,
        "floor, INDEXED BY households_coverage": covering,
        "full roll-up, member..district": every_level,
        "full roll-up + JSON encoding": every_level_json,
        "roll-up, branch..district": units,
        "violations, first page + counts": page,
        "dashboard: roll-up branch..district + violations": dashboard,
    }
    # the faster floor form is the floor (the covering index on every run so far)
    best = min(
        (planner, covering), key=lambda f: min(_seconds(lambda: store.read(f)) for _ in range(3))
    )
    seconds: dict[str, list[float]] = {name: [] for name in subjects}
    ratios: dict[str, list[float]] = {name: [] for name in subjects}
    for name, fn in subjects.items():
        store.read(fn)  # warm the page cache and the statement cache
        for _ in range(runs):
            base = _seconds(lambda: store.read(best))
            took = _seconds(lambda fn=fn: store.read(fn))  # type: ignore[misc]
            seconds[name].append(took)
            ratios[name].append(took / base)
    rolled, first = store.read(dashboard)
    members = store.read(every_level)
    counts = store.read(
        lambda db: db.execute(
            "SELECT (SELECT count(*) FROM households), (SELECT count(*) FROM visits), "
            "(SELECT count(*) FROM org_units WHERE kind = 'grid')"
        ).fetchone()
    )
    report.add("households / visits / grids", f"{counts[0]:,} / {counts[1]:,} / {counts[2]:,}")
    report.add(
        "roll-up rows (units / with members)", f"{len(rolled.rows):,} / {len(members.rows):,}"
    )
    report.add("violations (total)", f"{first.total:,} {first.counts}")
    for name in subjects:
        report.add(name, median(seconds[name]) * 1000, f"ms ({median(ratios[name]):.2f}x floor)")
    report.measure(FULL_ROLLUP, median(ratios["full roll-up, member..district"]))
    bounds = _member_row_bounds(store, best, members.rows, now_ms, runs)
    for name, ratio in bounds.items():
        report.add(f"  lower bound: {name}", f"{ratio:.2f}x floor")
    report.add(
        "  lower bound, recounted per request (cheaper pass + rows)",
        f"{min(bounds[SQL_PASS], bounds[MEMORY_PASS]) + bounds[ROWS]:.2f}x floor",
    )
    report.measure(ROLLUP, median(ratios["roll-up, branch..district"]))
    report.measure(VIOLATIONS, median(ratios["violations, first page + counts"]))
    report.add(
        "dashboard (roll-up branch..district + violations) / floor",
        f"{median(ratios['dashboard: roll-up branch..district + violations']):.3f}",
    )


SQL_PASS = "SQL count(*) per (grid, member)"
MEMORY_PASS = "member figures from households held in memory"
ROWS = "the rows built from ready tuples"


def _member_row_bounds(store: Store, floor, rows: list, now_ms: int, runs: int) -> dict[str, float]:
    """What a full roll-up that counts per request must at least do, each timed against the
    floor: a member row's contacted/overdue counts depend on "now", so each request passes over
    every assigned household (in SQL, or over a copy held in memory), and it builds one row per
    member. Each part is a strict subset of the real work, so their ratios are lower bounds of
    its ratio. (Only a design that keeps the counts current between requests, expiring each
    household as its cycle runs out, escapes the pass: see bench/README.md, section 3.)"""

    def sql_pass(db):
        return db.execute(
            "SELECT grid_id, responsible_member_id, count(*) FROM households "
            "INDEXED BY households_coverage WHERE status = 'active' "
            "GROUP BY grid_id, responsible_member_id"
        ).fetchall()

    default = coverage.default_policy(Settings())
    priority_tags = set(default.priority_tags)
    cycle_start = now_ms - default.cycle_days * DAY_MS
    prio_start = now_ms - default.priority_cycle_days * DAY_MS
    held = [
        (member, last or 0, bool(priority_tags.intersection(json.loads(tags or "[]"))))
        for member, last, tags in store.read(
            lambda db: db.execute(
                "SELECT responsible_member_id, last_visit_ms, tags FROM households "
                "WHERE status = 'active' AND responsible_member_id IS NOT NULL"
            ).fetchall()
        )
    ]

    def memory_pass():
        """A member row's household figures (assigned, contacted, priority, priority
        overdue), as a server holding every household's (member, last visit, priority) in
        memory would count them: no SQL, no names, no kinds, no units."""
        figures: dict[str, list[int]] = {}
        get = figures.get
        for member, last, priority in held:
            acc = get(member)
            if acc is None:
                acc = figures[member] = [0, 0, 0, 0]
            acc[0] += 1
            if last >= cycle_start:
                acc[1] += 1
            if priority:
                acc[2] += 1
                if last < prio_start:
                    acc[3] += 1
        return figures

    ready = [msgspec.structs.astuple(r) for r in rows]

    def build_rows():
        return [coverage.CoverageRow(*t) for t in ready]

    subjects = {SQL_PASS: lambda: store.read(sql_pass), MEMORY_PASS: memory_pass, ROWS: build_rows}
    out: dict[str, float] = {}
    for name, fn in subjects.items():
        fn()
        ratios = []
        for _ in range(runs):
            base = _seconds(lambda: store.read(floor))
            ratios.append(_seconds(fn) / base)
        out[name] = median(ratios)
    return out


def run(quick: bool, runs: int) -> Report:
    report = Report("coverage at district scale (full roll-up, violations vs one GROUP BY)")
    if quick:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Store(Path(tmp) / "tiny.db", synchronous="NORMAL") as store,
        ):
            start = time.perf_counter()
            demo.build(store, TINY, seed=1, as_of=AS_OF)
            report.add("tiny district demo build", time.perf_counter() - start, "s")
            measure(store, report, runs)
        return report
    if DISTRICT_DB.exists():
        sidecar = Path(f"{DISTRICT_DB}.build.json")
        built = json.loads(sidecar.read_text()) if sidecar.exists() else None
        report.add(
            "district demo build",
            f"{built['seconds']} s (at {built['at']}; reused)"
            if built
            else f"reused {DISTRICT_DB}, build time unknown",
        )
    else:
        report.add("district demo build", _build_district(DISTRICT_DB), "s")
    with Store(DISTRICT_DB) as store:
        measure(store, report, runs)
    return report


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["coverage", *sys.argv[1:]]))

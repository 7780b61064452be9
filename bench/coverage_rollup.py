"""Coverage roll-up at district scale, against one hand-written GROUP BY.

    python -m bench.coverage_rollup [--households 300000] [--visits 2000000] [--db PATH]

Builds (once, then reuses) a synthetic district: 137 communities, 940 grids and branches,
about one member per 6.5 households, visits spread over 180 days with ``last_visit_ms`` kept on
households as the visit writers keep it. Then times, on one warm read connection (median of 5):

- baseline: the overdue households per grid, one ``GROUP BY grid_id`` query;
- the full roll-up (every level, member to district, with service kinds);
- the full roll-up plus the first page of violations (with all counts).

The target (issue 4) is roll-up + violations within 2x the baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import time
from pathlib import Path

from gridsync import coverage
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.org import Scope

DAY_MS = 86_400_000
NOW_MS = 1_795_000_000_000  # 2026-11-18
KINDS = ["policy", "opinion", "hardship", "safety", "dispute", "environment"]
ADMIN = Scope("bench", True, frozenset(), frozenset(), 0)


def build(path: Path, households: int, visits: int) -> None:
    Store(path).close()  # schema and migrations
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    seq = 0

    def next_seq() -> int:
        nonlocal seq
        seq += 1
        return seq

    units = [("d1", "district", "区", None, None, next_seq())]
    grids = []
    for s in range(10):
        units.append((f"s{s}", "street", f"街道{s}", "d1", None, next_seq()))
    for c in range(137):
        units.append((f"c{c}", "community", f"社区{c}", f"s{c % 10}", None, next_seq()))
    for g in range(940):
        grid = f"g{g:04d}"
        grids.append(grid)
        units.append((grid, "grid", f"网格{g}", f"c{g % 137}", None, next_seq()))
        units.append((f"b{g:04d}", "branch", f"党支部{g}", f"c{g % 137}", grid, next_seq()))
    conn.executemany("INSERT INTO org_units (id, kind, name, parent_id, grid_id, seq) "
                     "VALUES (?,?,?,?,?,?)", units)
    n_members = households * 2 // 13
    members = []
    people = []
    for m in range(n_members):
        grid = grids[m % len(grids)]
        pid = f"p{m:06d}"
        members.append((pid, grid))
        people.append((pid, f"党员{m}", f"138{m:08d}", '["member"]', "b" + grid[1:],
                       next_seq(), "2026-01-01"))
    conn.executemany("INSERT INTO people (id, name, phone, roles, branch_id, seq, created_at) "
                     "VALUES (?,?,?,?,?,?,?)", people)
    by_grid: dict[str, list[str]] = {}
    for pid, grid in members:
        by_grid.setdefault(grid, []).append(pid)
    rows = []
    hh_grid = []
    for h in range(households):
        grid = grids[h % len(grids)]
        member = rng.choice(by_grid[grid]) if rng.random() < 0.95 else None
        tags = '["elderly_alone"]' if rng.random() < 0.08 else "[]"
        rows.append((f"h{h:07d}", grid, f"{rng.randint(1, 30)}号楼", "1单元",
                     str(rng.randint(101, 1804)), f"户主{h}", f"137{h:08d}", tags, member,
                     next_seq(), "2026-01-01", "2026-01-01"))
        hh_grid.append((f"h{h:07d}", grid, member))
    conn.executemany(
        "INSERT INTO households (id, grid_id, building, unit, room, head_name, phone, tags, "
        "responsible_member_id, seq, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        rows)
    last: dict[str, int] = {}
    times = sorted(NOW_MS - rng.randint(0, 180 * DAY_MS) for _ in range(visits))
    vrows = []
    for i, at_ms in enumerate(times):
        hid, grid, member = hh_grid[rng.randrange(households)]
        member = member or rng.choice(by_grid[grid])
        kinds = json.dumps(rng.sample(KINDS, rng.randint(0, 2)))
        vrows.append((f"v{i:08d}", hid, grid, member, at_ms, at_ms, "door", kinds, next_seq()))
        last[hid] = at_ms
        if len(vrows) == 100_000:
            conn.executemany("INSERT INTO visits (id, household_id, grid_id, member_id, at, at_ms,"
                             " channel, kinds, seq, received_at) VALUES (?,?,?,?,?,?,?,?,?,'x')",
                             vrows)
            vrows.clear()
    conn.executemany("INSERT INTO visits (id, household_id, grid_id, member_id, at, at_ms, "
                     "channel, kinds, seq, received_at) VALUES (?,?,?,?,?,?,?,?,?,'x')", vrows)
    conn.executemany("UPDATE households SET last_visit_ms = ? WHERE id = ?",
                     [(v, k) for k, v in last.items()])
    conn.execute("UPDATE meta SET value = ? WHERE key = 'change_seq'", [str(seq)])
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.close()


def median_seconds(fn, runs: int = 5) -> float:
    fn()  # warm the cache
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--households", type=int, default=300_000)
    ap.add_argument("--visits", type=int, default=2_000_000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    path = Path(args.db or f"/tmp/gridsync-bench-coverage-{args.households}-{args.visits}.db")
    if not path.exists():
        t0 = time.perf_counter()
        build(path, args.households, args.visits)
        print(f"built {path} in {time.perf_counter() - t0:.1f}s")
    settings = Settings()
    with Store(path) as store:
        cycle_start = NOW_MS - 30 * DAY_MS
        baseline_sql = ("SELECT grid_id, count(*) FROM households {hint} WHERE status = 'active' "
                        "AND coalesce(last_visit_ms, 0) < ? GROUP BY grid_id")

        def baseline(db, hint=""):  # noqa: ANN001, ANN202
            return db.execute(baseline_sql.format(hint=hint), [cycle_start]).fetchall()

        def units(db):  # noqa: ANN001, ANN202
            return coverage.rollup(db, settings, ADMIN, None, now_ms=NOW_MS)

        def everything(db):  # noqa: ANN001, ANN202
            return coverage.rollup(db, settings, ADMIN, None, now_ms=NOW_MS,
                                   levels=list(coverage.LEVELS))

        def page(db):  # noqa: ANN001, ANN202
            return coverage.violations(db, settings, ADMIN, None, now_ms=NOW_MS, limit=100)

        def both(db):  # noqa: ANN001, ANN202
            t = coverage.tally(db, settings, ADMIN, None, NOW_MS)
            coverage.rows_of(t)
            return coverage.violations(db, settings, ADMIN, None, now_ms=NOW_MS, limit=100,
                                       tallied=t)

        timings = {
            "baseline, the planner's own plan": median_seconds(lambda: store.read(baseline)),
            "baseline, INDEXED BY households_coverage": median_seconds(
                lambda: store.read(baseline, "INDEXED BY households_coverage")),
            "roll-up, default levels (no member rows)": median_seconds(lambda: store.read(units)),
            "roll-up, every level incl. members": median_seconds(
                lambda: store.read(everything)),
            "violations, first page with counts": median_seconds(lambda: store.read(page)),
            "roll-up + violations page, one tally": median_seconds(lambda: store.read(both)),
        }
        report = store.read(everything)
        first = store.read(page)
    print(f"rows in full roll-up: {len(report.rows)}; violations: {first.total} {first.counts}")
    best = min(list(timings.values())[:2])
    for name, seconds in timings.items():
        print(f"{name:45s} {seconds * 1000:8.1f} ms  {seconds / best:5.2f}x")


if __name__ == "__main__":
    main()

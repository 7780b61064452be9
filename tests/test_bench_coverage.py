"""The coverage benchmark runs end to end on a tiny district (no timing assertions)."""

from __future__ import annotations

from bench import coverage as bench_coverage


def test_coverage_bench_runs_on_a_tiny_district():
    report = bench_coverage.run(quick=True, runs=1)
    rows = dict(report.rows)
    assert rows["households / visits / grids"].startswith("1,500 / ")
    assert "full roll-up (all levels incl. members) / floor" in rows
    assert "violations (first page + counts) / floor" in rows
    # the roll-up had every unit level and member rows; the violations page had counts
    units, with_members = (
        int(n.replace(",", "")) for n in rows["roll-up rows (units / with members)"].split(" / ")
    )
    # every member planned but the demo's one who moved away (inactive, gridsync/demo.py)
    assert with_members - units == bench_coverage.TINY.members - 1
    assert "'overdue'" in rows["violations (total)"]

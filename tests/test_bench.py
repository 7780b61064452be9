"""Each of the sync benchmarks once at tiny sizes, so that none can rot. No timing assertions:
the figures come from ``python -m bench`` (bench/README.md)."""

from __future__ import annotations

from bench import ingest, pull, storm


def values(report) -> dict[str, str]:
    return dict(report.rows)


def test_ingest_quick():
    rows = values(ingest.run(quick=True, runs=1))
    assert "visits / floor (500-row tx)" in rows
    assert "household updates / floor (500-row tx)" in rows
    # half of the household updates lost to another device's unseen edit: a conflict each
    assert rows["of which merged with a conflict (last run)"] == "30 of 60"


def test_pull_quick():
    report = pull.run(quick=True, runs=1)
    rows = values(report)
    for name in (
        "community: snapshot / floor",
        "street: snapshot / floor",
        "community snapshot, JSON+gzip (KB, SPEC 8: < 1 MB)",
        "empty incremental pull, round trip (bytes, SPEC 8: < 1 KB)",
        "visit pushed in a batch of 500, JSON+gzip (bytes, < 300)",
    ):
        assert name in rows
    changes = int(rows["community: snapshot"].split()[0].replace(",", ""))
    assert changes > 120  # households + visits + org + people


def test_storm_quick():
    rows = values(storm.run(quick=True, runs=1))
    for name in (
        "errors (all runs)",
        "lost mutations (all runs)",
        "duplicated mutations (all runs)",
    ):
        assert rows[name].startswith("0.000 (budget <= 0: met)"), (name, rows[name])
    assert "(budget <= 300: met)" in rows["server peak memory, MB (max of runs)"]
    due, received = rows["whistle cases whose deadline passed in the storm (last run)"].split(
        ", alerts received "
    )
    assert int(due) >= 1 and int(received) == int(due)

"""Each sync benchmark once at tiny sizes through ``python -m bench --quick``, so that none can
rot and the gate's verdicts and exit codes stay true. No timing assertions: a ``--quick`` run
skips every budget on a timing or a size that tiny data cannot tell (SKIP lines), and the storm
runs on a FixedClock (bench/storm.py, ``FixedTime``); the figures come from the full runs
(bench/README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench import coverage as bench_coverage
from bench.__main__ import BENCHMARKS, all_budgets, main
from bench.common import Budget, judge

VERDICT = re.compile(r"^  (PASS|MISS|SKIP|ERROR) +(\S+)  (.*)$")


def run_bench(capsys, *argv: str) -> tuple[int, dict[str, str], dict[str, str], str]:
    """Exit code, the report's rows (name -> value), the verdicts (budget id -> verdict) and
    the whole output of ``python -m bench ARGV``."""
    code = main(list(argv))
    out = capsys.readouterr().out
    rows: dict[str, str] = {}
    verdicts: dict[str, str] = {}
    for line in out.splitlines():
        if match := VERDICT.match(line):
            verdicts[match.group(2)] = match.group(1)
        elif line.startswith("  "):
            name, _, value = line.strip().partition("  ")
            rows[name] = value.strip()
    return code, rows, verdicts, out


def test_ingest_quick(capsys):
    code, rows, verdicts, _ = run_bench(capsys, "ingest", "--quick")
    assert "visits pushed, reference client -> server" in rows
    assert "household updates pushed (field merge)" in rows
    # half of the household updates lost to another device's unseen edit: a conflict each
    assert rows["of which merged with a conflict (last run)"] == "30 of 60"
    # both budgets are ratios of timings: a quick run cannot tell, and says so
    assert verdicts == {"ingest.visits": "SKIP", "ingest.updates": "SKIP"}
    assert code == 0


def test_pull_quick_with_a_budget_forced_to_fail(capsys):
    code, rows, verdicts, out = run_bench(
        capsys, "pull", "--quick", "--budget", "pull.visit-bytes=1"
    )
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
    assert verdicts == {
        "pull.community": "SKIP",
        "pull.street": "SKIP",
        "pull.snapshot-kb": "SKIP",
        "pull.empty-pull-bytes": "PASS",
        "pull.visit-bytes": "MISS",  # no visit fits in 1 byte: the gate must say so
    }
    assert "(budget <= 1, set by --budget)" in out
    assert out.rstrip().endswith("budgets: 1 PASS, 1 MISS, 3 SKIP")
    assert code == 1


def test_console_quick(capsys):
    """The 覆盖 page and the API call it is held to, signed in as a person does (a link)."""
    code, rows, verdicts, _ = run_bench(capsys, "console", "--quick")
    assert "GET /console/coverage (district admin)" in rows
    assert int(rows["page bytes (HTML, uncompressed)"].replace(",", "")) > 5_000
    gzipped = int(rows["page bytes on the wire (gzip)"].replace(",", ""))
    assert 0 < gzipped < 100_000  # the page weight
    assert verdicts == {"console.coverage-page": "SKIP"}
    assert code == 0


def test_storm_quick_on_a_fixed_clock(capsys):
    code, rows, verdicts, _ = run_bench(capsys, "storm", "--quick")
    assert verdicts == {
        "storm.errors": "PASS",
        "storm.lost": "PASS",
        "storm.duplicated": "PASS",
        "storm.unalerted": "PASS",
        "storm.early-alerts": "PASS",
        "storm.repeated-alerts": "PASS",
        "storm.memory-mb": "SKIP",
        "storm.alert-seconds": "SKIP",
    }
    assert code == 0
    raised, due, alerted = (
        int(n)
        for n in rows["whistle cases raised / due in the storm / alerted (last run)"].split(" / ")
    )
    # some deadlines passed in the storm and some had not: an early alert would have been seen
    assert 1 <= due < raised
    assert alerted == due
    assert rows["errors (all runs)"] == "0.000"


def test_coverage_quick_judges_nothing_it_cannot_tell(capsys):
    code, rows, verdicts, _ = run_bench(capsys, "coverage", "--quick")
    assert rows["households / visits / grids"].startswith("1,500 / ")
    assert verdicts == {b.id: "SKIP" for b in bench_coverage.BUDGETS}
    assert code == 0


def test_coldstart_quick_serves_the_pass_and_measures_both_sides(capsys):
    code, rows, verdicts, _ = run_bench(capsys, "coldstart", "--quick")
    assert verdicts == {"coldstart.first-coverage": "SKIP", "coldstart.push-max": "SKIP"}
    assert int(rows["pushes idle"].split(",")[0]) == 20
    assert int(rows["pushes during the pass"].split(",")[0]) >= 1  # at least one, mid-pass
    assert float(rows["gridsync sweep, the same pass (first run)"].split()[0]) > 0
    assert code == 0


def test_export_quick_writes_ours_and_the_floor(capsys):
    code, rows, verdicts, _ = run_bench(capsys, "export", "--quick")
    assert verdicts == {"export.xlsx": "SKIP"}
    assert rows["rows / violations"].split(" / ")[0] != "0"
    assert float(rows["XLSX export / XlsxWriter constant-memory floor"]) > 0
    assert code == 0


def test_a_benchmark_that_fails_exits_2(capsys, monkeypatch, tmp_path):
    junk = tmp_path / "district.db"
    junk.write_bytes(b"not a database" * 100)
    monkeypatch.setattr(bench_coverage, "DISTRICT_DB", junk)
    code, _, verdicts, out = run_bench(capsys, "coverage", "--runs", "1")
    assert verdicts == {b.id: "ERROR" for b in bench_coverage.BUDGETS}
    assert "## coverage: failed" in out
    assert code == 2


@pytest.mark.parametrize(
    "argv",
    [
        ["pull", "--budget", "pull.nosuch=1"],
        ["pull", "--budget", "pull.visit-bytes"],
        ["pull", "--budget", "pull.visit-bytes=many"],
        ["nosuch"],
    ],
)
def test_bad_arguments_exit_2_before_running_anything(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "## " not in capsys.readouterr().out


def test_judge_flags_a_budget_not_measured_and_a_figure_without_a_budget():
    kept = Budget("x.kept", "kept", "<=", 1)
    quick_only = Budget("x.slow", "slow", ">=", 1, quick="tiny")
    verdicts = judge((kept, quick_only), {"x.stray": 3.0}, quick=True)
    assert [(v.budget.id, v.verdict) for v in verdicts] == [
        ("x.kept", "ERROR"),
        ("x.slow", "SKIP"),
        ("x.stray", "ERROR"),
    ]
    at_bound = judge((kept, quick_only), {"x.kept": 1.0, "x.slow": 1.0}, quick=False)
    assert [v.verdict for v in at_bound] == ["PASS", "PASS"]
    over = judge((kept,), {"x.kept": 1.5}, quick=False, overrides={"x.kept": 2})
    assert [v.verdict for v in over] == ["PASS"]


def test_every_budget_is_in_the_readme_table():
    """bench/README.md's "Budgets at a glance" names each budget by the id the gate prints."""
    readme = (Path(__file__).resolve().parent.parent / "bench" / "README.md").read_text()
    table = readme.split("## Budgets at a glance", 1)[1].split("\n## ", 1)[0]
    budgets = all_budgets()
    assert {b.split(".")[0] for b in budgets} == set(BENCHMARKS)
    for budget_id in budgets:
        assert f"`{budget_id}`" in table, budget_id

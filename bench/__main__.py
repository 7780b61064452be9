"""``python -m bench [NAME ...] [--quick] [--runs N] [--budget ID=VALUE ...]``: run benchmarks,
print their reports and a verdict per budget; the exit code says whether every budget held.

Each benchmark module has ``run(quick: bool, runs: int) -> bench.common.Report`` and ``BUDGETS``
(the bounds of bench/README.md, "Budgets at a glance"). After each report one line per budget:
``PASS``, ``MISS``, ``SKIP`` (a ``--quick`` run cannot tell: tiny sizes, or a fixed clock) or
``ERROR`` (the benchmark failed or did not measure it). Exit code: 0 when no budget is missed,
1 when any is, 2 on an error (which wins over a miss). ``--budget ID=VALUE`` replaces a bound
for this run (shown in its line): to see the gate fail, or to hold a figure that is out of reach
of its budget to today's level so that a regression still shows.

``--quick`` uses tiny sizes (the test suite runs every benchmark that way once, so none can rot);
real figures come from the default sizes and go into bench/README.md with the command that made
them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from bench.common import ERROR, MISS, PASS, SKIP, Budget, Verdict, judge

BENCHMARKS = {
    "ingest": "bench.ingest",  # visits and merged household updates through HTTP vs executemany
    "pull": "bench.pull",  # initial snapshots vs raw SELECT + msgspec; bytes on the wire
    "coverage": "bench.coverage",  # district roll-up + violations vs one GROUP BY
    "storm": "bench.storm",  # 200 phones at once, with the whistle deadline latency
    "coldstart": "bench.coldstart",  # the first periodic pass after serve starts (issue 15)
    "export": "bench.export",  # the district XLSX export vs XlsxWriter constant-memory
    "console": "bench.console",  # the district 覆盖 page vs GET /api/v1/coverage, same scope
}


def all_budgets() -> dict[str, Budget]:
    out: dict[str, Budget] = {}
    for module in BENCHMARKS.values():
        for budget in importlib.import_module(module).BUDGETS:
            out[budget.id] = budget
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one run (smoke test)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure; the median counts")
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="replace the bound of one budget for this run (repeatable), e.g. ingest.visits=0.3",
    )
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    known = all_budgets()
    overrides: dict[str, float] = {}
    for item in args.budget:
        budget_id, sep, value = item.partition("=")
        if not sep or budget_id not in known:
            parser.error(f"--budget {item!r}: expected ID=VALUE, ID one of {', '.join(known)}")
        try:
            overrides[budget_id] = float(value)
        except ValueError:
            parser.error(f"--budget {item!r}: {value!r} is not a number")
    runs = 1 if args.quick else args.runs
    print(
        f"# gridsync benchmarks ({time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{'quick' if args.quick else f'median of {runs} runs'})"
    )
    verdicts: list[Verdict] = []
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        try:
            report = module.run(quick=args.quick, runs=runs)
        except Exception:  # the harness or the server broke: every budget of it is unknown
            traceback.print_exc()
            print(f"\n## {name}: failed (traceback on stderr)")
            found = [Verdict(b, ERROR, f"benchmark {name} failed") for b in module.BUDGETS]
        else:
            report.print()
            found = judge(module.BUDGETS, report.measured, quick=args.quick, overrides=overrides)
        print()
        for verdict in found:
            print(f"  {verdict.line()}")
        verdicts += found
    counts = {v: sum(1 for x in verdicts if x.verdict == v) for v in (PASS, MISS, SKIP, ERROR)}
    print("\nbudgets: " + ", ".join(f"{n} {v}" for v, n in counts.items() if n))
    if counts[ERROR]:
        return 2
    return 1 if counts[MISS] else 0


if __name__ == "__main__":
    sys.exit(main())

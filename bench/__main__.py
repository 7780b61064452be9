"""``python -m bench [NAME ...] [--quick] [--runs N]``: run benchmarks and print their reports.

Each benchmark module has ``run(quick: bool, runs: int) -> bench.common.Report``. ``--quick``
uses tiny sizes (the test suite runs every benchmark that way once, so none can rot); real
figures come from the default sizes and go into bench/README.md with the command that made them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

BENCHMARKS = {
    "ingest": "bench.ingest",  # visits and merged household updates through HTTP vs executemany
    "pull": "bench.pull",  # initial snapshots vs raw SELECT + msgspec; bytes on the wire
    "coverage": "bench.coverage",  # district roll-up + violations vs one GROUP BY
    "storm": "bench.storm",  # 200 phones at once, with the whistle deadline latency
}


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
    args = parser.parse_args(argv)
    names = args.names or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    runs = 1 if args.quick else args.runs
    ok = True
    print(
        f"# gridsync benchmarks ({time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{'quick' if args.quick else f'median of {runs} runs'})"
    )
    for name in names:
        module = importlib.import_module(BENCHMARKS[name])
        report = module.run(quick=args.quick, runs=runs)
        report.print()
        ok &= report.ok
    print("\nall budgets met" if ok else "\nsome budgets MISSED (see above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

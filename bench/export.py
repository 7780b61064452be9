"""The district XLSX export against the floor of writing the same rows with XlsxWriter.

    python -m bench export [--runs 5] [--quick]

Data: the district demo of ``bench/coverage.py`` (``$GRIDSYNC_BENCH_DISTRICT_DB``, built once
and reused; ``--quick``: the tiny district in a temporary file). The export's data
(``exports.export_data``: the roll-up of every level, member rows included, and every
violation: 38,028 + ~16,500 rows at district scale) is read once, as an admin; then each run
times, side by side:

- ours: ``exports.render(data, "xlsx")``, what the API and ``gridsync export coverage`` write:
  cell values from the rows, typed cells (text never a formula, the quote prefix, percent and
  date-time formats), column widths, frozen header, bytes of the zip;
- floor: XlsxWriter in constant-memory mode writing the same cell values, prepared beforehand
  (lists of lists, not timed), with ``write_row`` and no formats, into the same kind of buffer.

Budget: ours / floor <= 2 (issue 15; openpyxl's write-only mode measured 2.3x, see
bench/README.md). Also printed: the export's data read, the file size.
"""

from __future__ import annotations

import io
import sys
import tempfile
import time
from pathlib import Path

import xlsxwriter

from bench.common import Budget, Report, median
from bench.coverage import AS_OF, DISTRICT_DB, TINY, _as_of_ms, _build_district
from gridsync import demo, exports
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.org import Scope

ADMIN = Scope("bench", True, frozenset(), frozenset(), 0)
XLSX = Budget(
    "export.xlsx",
    "XLSX export / XlsxWriter constant-memory floor",
    "<=",
    2.0,
    quick="a tiny district: a few thousand cells, the zip's fixed cost dominates",
)
BUDGETS = (XLSX,)


def _floor_rows(data: exports.ExportData) -> list[tuple[str, list[list]]]:
    """The same sheets and cell values as the export, ready to write (not timed)."""
    sheets = []
    for level in exports.SHEET_ORDER:
        columns = exports._columns(level)
        rows = [exports._header(columns, "zh")]
        rows += [
            [exports._row_value(data, r, key, "zh") for key, *_ in columns]
            for r in data.rows
            if r.level == level
        ]
        sheets.append((exports.label(exports.LEVEL_LABELS, "zh", level), rows))
    vrows = [exports._header(exports.VIOLATION_COLUMNS, "zh")]
    vrows += [
        [exports._violation_value(v, key, "zh") for key, *_ in exports.VIOLATION_COLUMNS]
        for v in data.violations
    ]
    sheets.append((exports.VIOLATIONS_SHEET["zh"], vrows))
    return sheets


def _floor(sheets: list[tuple[str, list[list]]]) -> bytes:
    buf = io.BytesIO()
    wb = xlsxwriter.Workbook(buf, {"constant_memory": True, "strings_to_formulas": False})
    for title, rows in sheets:
        ws = wb.add_worksheet(title)
        for i, row in enumerate(rows):
            ws.write_row(i, 0, row)
    wb.close()
    return buf.getvalue()


def measure(store: Store, report: Report, runs: int) -> None:
    settings = Settings()
    now_ms = _as_of_ms(store)
    start = time.perf_counter()
    data = store.read(exports.export_data, settings, ADMIN, None, now_ms=now_ms)
    report.add("export data read (roll-up + violations)", time.perf_counter() - start, "s")
    report.add("rows / violations", f"{len(data.rows):,} / {len(data.violations):,}")
    sheets = _floor_rows(data)
    ours_s, floor_s, ratios = [], [], []
    size = 0
    for _ in range(runs):
        t = time.perf_counter()
        floor_bytes = _floor(sheets)
        floor_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        body = exports.render(data, "xlsx")
        ours_s.append(time.perf_counter() - t)
        ratios.append(ours_s[-1] / floor_s[-1])
        size = len(body)
    report.add("XLSX export (ours)", median(ours_s), "s")
    report.add("XlsxWriter constant-memory floor", median(floor_s), "s")
    report.add("XLSX size, ours / floor", f"{size / 1e6:.1f} / {len(floor_bytes) / 1e6:.1f} MB")
    report.add("ratios of each run", ", ".join(f"{r:.2f}" for r in ratios))
    report.measure(XLSX, median(ratios))


def run(quick: bool, runs: int) -> Report:
    report = Report("XLSX export at district scale vs XlsxWriter constant-memory")
    if quick:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Store(Path(tmp) / "tiny.db", synchronous="NORMAL") as store,
        ):
            demo.build(store, TINY, seed=1, as_of=AS_OF)
            measure(store, report, runs)
        return report
    if not DISTRICT_DB.exists():
        report.add("district demo build", _build_district(DISTRICT_DB), "s")
    with Store(DISTRICT_DB) as store:
        measure(store, report, runs)
    return report


if __name__ == "__main__":
    from bench.__main__ import main

    sys.exit(main(["export", *sys.argv[1:]]))

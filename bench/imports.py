"""District-scale imports of org units and people (issue 18), run on purpose:

    python -m bench.imports [--people 36000] [--grids 940] [--format csv|xlsx]

Writes a register of the seeds' district (1 district, 6 streets, 137 communities, ``--grids``
grids each with its party branch: about 2,000 units) and ``--people`` party members (each a
``member`` of one grid and its branch, with a mobile number; one in ten also a grid worker),
then times, on a fresh database: the units import, a dry run of the people file, the people
import, and a re-import of the same file (which writes nothing). Each through what
``gridsync import units|people`` runs (read the file, check every row, write in one
transaction). Figures go into README "Demo data and import".
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path


def _units(grids: int) -> list[list[str]]:
    rows = [["d1", "区", "市南区", "", ""]]
    rows += [[f"s{i}", "街道", f"第{i}街道", "d1", ""] for i in range(1, 7)]
    communities = 137
    rows += [
        [f"c{i}", "社区", f"第{i}社区", f"s{i % 6 + 1}", ""] for i in range(1, communities + 1)
    ]
    for g in range(1, grids + 1):
        community = f"c{g % communities + 1}"
        rows.append([f"g{g}", "网格", f"第{g}网格", community, ""])
        rows.append([f"b{g}", "支部", f"第{g}网格党支部", community, f"g{g}"])
    return rows


def _people(n: int, grids: int) -> list[list[str]]:
    rows = []
    for i in range(1, n + 1):
        g = i % grids + 1
        roles = "党员、网格员" if i % 10 == 0 else "党员"
        rows.append([f"p{i:05d}", f"党员{i}", roles, f"g{g}", f"b{g}", f"139{i:08d}", ""])
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]], fmt: str) -> Path:
    if fmt == "csv":
        with path.open("w", newline="", encoding="utf-8-sig") as f:
            csv.writer(f).writerows([header, *rows])
        return path
    import openpyxl

    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    for row in [header, *rows]:
        sheet.append(row)
    book.save(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.imports", description=__doc__)
    parser.add_argument("--people", type=int, default=36_000)
    parser.add_argument("--grids", type=int, default=940)
    parser.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    args = parser.parse_args()

    from gridsync import importer, org_import
    from gridsync.audit import Actor
    from gridsync.db import Store

    with tempfile.TemporaryDirectory() as tmp:
        units = _write(
            Path(tmp) / f"units.{args.format}",
            ["编号", "类型", "名称", "上级", "对应网格"],
            _units(args.grids),
            args.format,
        )
        people = _write(
            Path(tmp) / f"people.{args.format}",
            ["编号", "姓名", "角色", "范围", "支部", "电话", "渠道"],
            _people(args.people, args.grids),
            args.format,
        )
        with Store(str(Path(tmp) / "bench.db")) as store:

            def step(label: str, kind: str, path: Path, dry: bool = False) -> None:
                started = time.perf_counter()
                sheet = importer.read_file(path, register=org_import.REGISTERS[kind])
                read = time.perf_counter() - started
                if dry:
                    result = store.read(org_import.preview, kind, sheet)
                else:
                    result = store.write(org_import.import_sheet, kind, sheet, Actor.cli())
                total = time.perf_counter() - started
                print(
                    f"{label:<22} {result.rows:>7} rows  read {read:6.2f} s  total {total:6.2f} s"
                    f"  ({result.rows / total:,.0f} rows/s; new {result.new}, changed "
                    f"{result.changed}, unchanged {result.unchanged}, errors {len(result.errors)})"
                )

            step("units", "units", units)
            step("people (dry run)", "people", people, dry=True)
            step("people", "people", people)
            step("people (re-import)", "people", people)


if __name__ == "__main__":
    main()

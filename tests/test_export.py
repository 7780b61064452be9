"""Coverage exports: XLSX opened with openpyxl, CSV, JSON, masking by role, audit, the CLI."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

import gridsync
from gridsync import audit, coverage, exports
from tests.conftest import bearer

ROOT = Path(gridsync.__file__).resolve().parent.parent
ZH_SHEETS = ["区", "街道", "社区", "网格", "党支部", "成员", "问题清单"]


def _xlsx(client, token, **params):
    r = client.get(
        "/api/v1/exports/coverage", params={"format": "xlsx", **params}, headers=bearer(token)
    )
    assert r.status_code == 200, r.text
    return r, openpyxl.load_workbook(io.BytesIO(r.content))


def _sheet_rows(ws):
    rows = list(ws.iter_rows(values_only=True))
    return rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}


def test_xlsx_sheets_headers_values_frozen_panes(cov_client, comm):
    r, wb = _xlsx(cov_client, comm.tokens["admin"])
    assert r.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert r.headers["content-disposition"] == 'attachment; filename="coverage-all-20261120.xlsx"'
    assert wb.sheetnames == ZH_SHEETS
    header, grids = _sheet_rows(wb["网格"])
    assert header[:6] == ("编号", "名称", "上级", "户数", "已落实联系党员户数", "未落实户数")
    g1 = grids["g1"]
    assert (
        g1["名称"],
        g1["上级"],
        g1["户数"],
        g1["已走访"],
        g1["逾期未走访户数"],
        g1["重点户逾期数"],
        g1["联系户超限党员数"],
    ) == ("第一网格", "出头社区", 7, 4, 2, 1, 1)
    assert g1["走访率"] == pytest.approx(0.5714)
    # h7 (unassigned) was visited: contacted by someone, by no responsible member
    assert g1["责任党员走访"] == 3 and g1["责任党员走访率"] == pytest.approx(0.4286)
    assert g1["已覆盖服务类别"] == "政策宣传、收集意见建议、安全隐患排查、环境卫生"
    _, districts = _sheet_rows(wb["区"])
    assert districts["d1"]["户数"] == 12 and districts["d1"]["党员数"] == 5
    _, members = _sheet_rows(wb["成员"])
    assert set(members) == {"m1", "m2", "m3", "m4", "m5"}
    assert members["m1"]["电话"] == "13811110001"  # admin sees full numbers
    _, branches = _sheet_rows(wb["党支部"])
    assert branches["b2"]["联系户不足党员数"] == 1
    vrows = list(wb["问题清单"].iter_rows(values_only=True))
    assert vrows[0][:3] == ("问题类型", "对象", "编号")
    assert len(vrows) - 1 == 11
    assert vrows[1][:3] == ("未落实联系党员", "户", "h6")
    for name in wb.sheetnames:
        assert wb[name].freeze_panes == "A2", name
    ws = wb["党支部"]
    name_col = [c.value for c in ws[1]].index("名称") + 1
    width = ws.column_dimensions[openpyxl.utils.get_column_letter(name_col)].width
    assert width >= exports.display_width("第一网格党支部") == 14
    assert (
        ws.cell(row=2, column=[c.value for c in ws[1]].index("走访率") + 1).number_format == "0.0%"
    )


def test_xlsx_english_and_masking_by_role(cov_client, comm):
    _, wb = _xlsx(cov_client, comm.tokens["bs1"], lang="en")
    # every level has its sheet, empty above the caller's scope
    assert wb.sheetnames == [
        "district",
        "street",
        "community",
        "grid",
        "branch",
        "member",
        "violations",
    ]
    assert wb["district"].max_row == 1
    header, members = _sheet_rows(wb["member"])
    assert "households" in header and "phone" in header
    assert set(members) == {"m1", "m2"}  # a branch secretary's scope
    assert members["m1"]["phone"] == "138****0001"
    vrows = list(wb["violations"].iter_rows(values_only=True))
    phones = [dict(zip(vrows[0], row))["phone"] for row in vrows[1:]]
    assert phones and all("****" in p for p in phones if p)


def test_csv_and_json_exports(cov_client, comm):
    h = bearer(comm.tokens["sec1"])
    r = cov_client.get(
        "/api/v1/exports/coverage", params={"format": "csv", "scope": "c1"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    assert 'filename="coverage-c1-20261120.csv"' in r.headers["content-disposition"]
    text = r.content.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[:3] == ["层级", "编号", "名称"]
    by = {(row["层级"], row["编号"]): row for row in rows}
    assert ("街道", "s1") not in by  # above the scope asked for
    assert by[("社区", "c1")]["户数"] == "10" and by[("社区", "c1")]["落实率"] == "0.7"
    assert by[("成员", "m4")]["走访率"] == ""  # no households: no rate
    r = cov_client.get(
        "/api/v1/exports/coverage",
        params={"format": "json", "scope": "c1", "lang": "en"},
        headers=h,
    )
    assert r.headers["content-type"].startswith("application/json")
    doc = r.json()
    assert [row["unit_id"] for row in doc["levels"]["grid"]] == ["g1", "g2"]
    assert doc["member_phones"]["m1"] == "13811110001"  # community secretary: full numbers
    # every kind the community has (its visits are all by the responsible members: none is
    # contacted by others only; tests/test_honest_figures.py exports that kind)
    assert {v["kind"] for v in doc["violations"]} == set(coverage.VIOLATION_KINDS) - {
        "contacted_by_others_only"
    }


def test_every_export_is_audited(store, cov_client, comm):
    for fmt in ("csv", "xlsx", "json"):
        cov_client.get(
            "/api/v1/exports/coverage", params={"format": fmt}, headers=bearer(comm.tokens["bs1"])
        )
    entries = store.read(audit.entries, action="export.coverage")
    assert [e["detail"]["format"] for e in entries] == ["json", "xlsx", "csv"]
    assert {e["person_id"] for e in entries} == {"bs1"}
    assert entries[0]["detail"]["phones"] == "by_role"  # masked unless the rule allows


def test_export_refusals(cov_client, comm):
    bad = cov_client.get(
        "/api/v1/exports/coverage", params={"format": "pdf"}, headers=bearer(comm.tokens["admin"])
    )
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    member = cov_client.get("/api/v1/exports/coverage", headers=bearer(comm.tokens["m1"]))
    assert member.status_code == 403


def test_cli_export_with_progress(db_path, store, comm, tmp_path):
    """The bar is drawn on a terminal only: a pipe gets the result alone (not even its label)."""
    from tests.test_cold_start import _gridsync

    out = tmp_path / "coverage.xlsx"
    argv = ["export", "coverage", "--format", "xlsx", "--scope", "c1"]
    argv += ["--now", "2026-11-20T12:00:00Z", "--db", db_path]
    stdout, stderr = _gridsync(*argv, "-o", str(tmp_path / "piped.xlsx"), tty=False)
    assert "导出" not in stderr and "piped.xlsx" in stdout
    stdout, stderr = _gridsync(*argv, "-o", str(out), tty=True)
    assert "导出" in stderr and "100%" in stderr  # the progress bar goes to the terminal
    assert str(out) in stdout
    wb = openpyxl.load_workbook(out)
    assert wb.sheetnames == ZH_SHEETS
    _, grids = _sheet_rows(wb["网格"])
    assert grids["g1"]["逾期未走访户数"] == 2
    _, members = _sheet_rows(wb["成员"])
    assert members["m1"]["电话"] == "138****0001"  # the CLI masks unless --show-phones
    entry = store.read(audit.entries, action="export.coverage")[0]
    assert (entry["device_id"], entry["target"], entry["detail"]["format"]) == ("cli", "c1", "xlsx")


def test_cli_report_table_and_json(db_path, comm):
    def cli(*args):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "gridsync",
                "coverage",
                *args,
                "--db",
                db_path,
                "--now",
                "2026-11-20T12:00:00Z",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    table = cli("--scope", "g1")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["层级", "编号", "名称", "户数"]
    g1 = next(line for line in lines if " g1 " in line)
    assert g1.split()[:6] == ["网格", "g1", "第一网格", "7", "5", "2"]
    english = cli("--scope", "g1", "--lang", "en")
    assert english.stdout.splitlines()[0].split()[:3] == ["level", "id", "name"]
    doc = json.loads(cli("--json").stdout)
    levels = {r["level"] for r in doc["rows"]}
    assert levels == {"district", "street", "community", "grid", "branch"}  # district-wide
    doc = json.loads(cli("--json", "--level", "member", "--level", "district").stdout)
    assert {(r["level"], r["unit_id"]) for r in doc["rows"]} == {
        ("district", "d1"),
        *(("member", m) for m in ("m1", "m2", "m3", "m4", "m5")),
    }
    bad = cli("--scope", "nowhere")
    assert bad.returncode == 1 and "not_found" in bad.stderr and "Traceback" not in bad.stderr


def test_xlsx_keeps_phone_typed_text_as_text(store, cov_client, comm):
    """Names and addresses come from phones: a control character must not break the export
    (it was a 500) and a leading "=" must stay text, not become a formula in the admin's Excel."""

    def edit(db):
        db.execute(
            "UPDATE households SET head_name = ?, building = ? WHERE id = 'h6'",
            ['=HYPERLINK("http://evil.example","点我")', "3号\x00楼\x1b"],
        )

    store.write(edit)
    _r, wb = _xlsx(cov_client, comm.tokens["admin"])
    rows = list(wb["问题清单"].iter_rows(values_only=True))
    h6 = next(dict(zip(rows[0], row)) for row in rows[1:] if row[2] == "h6")
    assert h6["户主/党员"] == '=HYPERLINK("http://evil.example","点我")'
    cells = [c for row in wb["问题清单"].iter_rows() for c in row if c.value == h6["户主/党员"]]
    assert cells and all(c.data_type == "s" for c in cells)
    assert h6["地址"].startswith("3号楼")


# -- formula injection (OWASP): names typed by people must not run in Excel -------------------


@pytest.mark.parametrize(
    "value, written",
    [
        ('=HYPERLINK("http://evil.example","点我")', '\'=HYPERLINK("http://evil.example","点我")'),
        ("+1+2", "'+1+2"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
        ("\t=1+1", "'\t=1+1"),
        ("\r=1+1", "'\r=1+1"),
        ("-", "'-"),
        ("+86 138 0000 0000", "'+86 138 0000 0000"),  # Excel would compute 86-odd: not a number
        ("-3\n", "'-3\n"),  # a plain number is the whole cell, not a line of it
        ("+8613800000000", "+8613800000000"),  # a phone number is a number, not a formula
        ("-3", "-3"),
        ("-1.5", "-1.5"),
        ("3-1", "3-1"),
        ("第一网格", "第一网格"),
        (" =1+1", " =1+1"),  # a leading space makes it text in Excel
        ("", ""),
        (-3, -3),
        (0.25, 0.25),
        (None, None),
    ],
)
def test_inert_is_the_one_rule_for_csv_cells(value, written):
    assert exports.inert(value) == written


DANGEROUS = {
    "g1": '=HYPERLINK("http://evil.example","点我")',
    "b1": "@SUM(1+1)",
    "c2": "-2+3",
    "g3": "\tcmd|' /C calc'!A0",
}
PLAIN_NUMBER_NAME = ("g2", "+8613800000000")


def _rename_everything(store):
    """Names a spreadsheet would run. Written in SQL: the text rule (models.core) now refuses a
    name holding a tab or a carriage return on every way in, but rows stored before it (or by
    another program) may hold them, and the export must stay inert for those too."""
    names = {**DANGEROUS, PLAIN_NUMBER_NAME[0]: PLAIN_NUMBER_NAME[1]}

    def rename(db):
        for unit_id, name in names.items():
            db.execute("UPDATE org_units SET name = ? WHERE id = ?", [name, unit_id])
        db.execute("UPDATE people SET name = ? WHERE id = 'm1'", ["\r=1+1"])

    store.write(rename)


def test_csv_export_writes_formula_like_names_inert(store, cov_client, comm):
    _rename_everything(store)
    r = cov_client.get(
        "/api/v1/exports/coverage", params={"format": "csv"}, headers=bearer(comm.tokens["admin"])
    )
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    by_id = {row["编号"]: row for row in rows}
    for unit_id, name in DANGEROUS.items():
        assert by_id[unit_id]["名称"] == "'" + name, unit_id
    assert by_id["m1"]["名称"] == "'\r=1+1"
    assert by_id["m1"]["上级"] == "'@SUM(1+1)"  # the parent column goes through the same rule
    assert by_id["g2"]["名称"] == "+8613800000000"  # a plain number stays as it is
    assert by_id["g1"]["户数"] == "7"  # numbers are numbers
    for row in rows:  # no cell of the file starts a formula
        for value in row.values():
            assert not exports.formula_like(value), (row["编号"], value)


def test_xlsx_export_stores_formula_like_names_as_quoted_text(store, cov_client, comm):
    _rename_everything(store)
    _r, wb = _xlsx(cov_client, comm.tokens["admin"])
    seen = quoted = crlf = 0
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                if isinstance(cell.value, str):
                    assert cell.data_type == "s", (ws.title, cell.coordinate, cell.value)
                    if exports.formula_like(cell.value):
                        assert cell.quotePrefix, (ws.title, cell.coordinate, cell.value)
                        seen += 1
                    quoted += cell.quotePrefix
                    crlf += cell.value == "\n=1+1"  # m1's name: XML reads "\r" back as "\n"
    assert seen >= len(DANGEROUS) and crlf and quoted == seen + crlf
    header = [c.value for c in wb["网格"][1]]
    g1_row = next(row for row in wb["网格"].iter_rows(min_row=2) if row[0].value == "g1")
    g1_name = g1_row[header.index("名称")]
    assert (g1_name.value, g1_name.data_type, g1_name.quotePrefix) == (DANGEROUS["g1"], "s", True)
    g2_row = next(row for row in wb["网格"].iter_rows(min_row=2) if row[0].value == "g2")
    g2_name = g2_row[header.index("名称")]
    assert (g2_name.value, g2_name.quotePrefix) == ("+8613800000000", False)  # as typed
    households = g1_row[header.index("户数")]
    assert (households.value, households.data_type) == (7, "n")

"""gridsync import households: headers in Chinese or English, CSV and XLSX, every bad row
reported and nothing written, and a second import of the same file changes nothing."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import date

import openpyxl
import pytest
from click.testing import CliRunner

from gridsync import demo, importer
from gridsync.cli import cli
from gridsync.db import Store

ZH = [
    "外部编号",
    "网格",
    "楼栋",
    "单元",
    "房号",
    "户主姓名",
    "联系电话",
    "人口数",
    "标签",
    "备注",
    "状态",
    "负责党员",
]
EN = [
    "external_id",
    "grid_id",
    "building",
    "unit",
    "room",
    "head_name",
    "phone",
    "size",
    "tags",
    "notes",
    "status",
    "responsible_member_id",
]
GOOD = [
    [
        "R-001",
        "c001-g01",
        "21号楼",
        "1单元",
        "101",
        "王秀英",
        "13800001111",
        "1",
        "独居老人；低保",
        "子女在外地",
        "在住",
        "c001-g01-m01",
    ],
    [
        "R-002",
        "c001-g01",
        "21号楼",
        "1单元",
        "102",
        "李建国",
        "138-0000-2222",
        "3",
        "renter",
        "",
        "",
        "",
    ],
    [
        "R-003",
        "c001-g02",
        "22号楼",
        "2单元",
        "301",
        "张伟",
        "",
        "",
        "残疾、出租|自定义标签",
        "",
        "迁出",
        "",
    ],
]

IMPORT_LOG_COUNT = "SELECT count(*) FROM assignment_log WHERE reason LIKE 'import %'"


@pytest.fixture
def demo_db(tmp_path) -> str:
    path = str(tmp_path / "demo.db")
    with Store(path) as store:
        demo.build(store, demo.SCALES["community"], seed=1, as_of=date(2026, 11, 23))
    return path


def write_csv(path, header, rows, encoding="utf-8-sig") -> str:
    with open(path, "w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def write_xlsx(path, header, rows) -> str:
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    book.save(path)
    return str(path)


def invoke(db_path, file, *args):
    return CliRunner().invoke(cli, ["import", "households", str(file), "--db", db_path, *args])


def households(db_path) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute("SELECT * FROM households ORDER BY id").fetchall()
    finally:
        conn.close()


def q(db_path, sql, *params) -> list[tuple]:
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def test_bad_file_writes_nothing_and_reports_every_bad_row(demo_db, tmp_path):
    rows = [
        GOOD[0],  # row 2: ok
        ["R-010", "c001-g99", "", "", "", "甲", "", "2", "", "", "", ""],  # 3 unknown grid
        ["R-011", "c001", "", "", "", "乙", "", "2", "", "", "", ""],  # 4 not a grid
        [
            "R-012",
            "c001-g01",
            "",
            "",
            "",
            "丙",
            "12ab",
            "0",
            "",
            "",
            "搬走",
            "",
        ],  # 5 phone,size,status
        ["", "c001-g01", "", "", "", "丁", "", "", "", "", "", ""],  # 6 no external id
        ["R-001", "c001-g01", "", "", "", "戊", "", "", "", "", "", ""],  # 7 duplicate
        ["R-013", "c001-g01", "", "", "", "", "", "", "", "", "", ""],  # 8 no head name
        ["R-014", "c001-g01", "", "", "", "己", "", "", "", "", "", "nobody"],  # 9 no such person
        ["R-015", "c001-g01", "", "", "", "庚", "", "", "", "", "", "c001-sec"],  # 10 not a member
        [
            "R-016",
            "c001-g01",
            "",
            "",
            "",
            "辛",
            "",
            "",
            "",
            "",
            "",
            "c001-g02-m01",
        ],  # 11 other grid
        ["R-017", "c001-g01", "", "", "", "壬", "", "2.5", "x" * 40, "", "", ""],  # 12 size, tag
        GOOD[1],  # row 13: ok
        ["R-018", "c001-g01", "", "", "", "癸", "", "9" * 20, "", "", "", ""],  # 14 size (int64)
        ["R-019", "c001-g01", "", "", "", "子", "", "²", "", "", "", ""],  # 15 size (not 0-9)
    ]
    file = write_csv(tmp_path / "bad.csv", ZH, rows)
    before = households(demo_db)
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert not report["written"]
    found = {(e["row"], e["code"]) for e in report["errors"]}
    assert found == {
        (3, "unknown_grid"),
        (4, "not_a_grid"),
        (5, "bad_phone"),
        (5, "bad_size"),
        (5, "bad_status"),
        (6, "missing_field"),
        (7, "duplicate_external_id"),
        (8, "missing_field"),
        (9, "unknown_member"),
        (10, "not_a_member"),
        (11, "member_out_of_grid"),
        (12, "bad_size"),
        (12, "bad_tag"),
        (14, "bad_size"),
        (15, "bad_size"),
    }
    assert all(e["message"].startswith(f"第{e['row']}行") for e in report["errors"])
    assert households(demo_db) == before
    assert q(demo_db, "SELECT count(*) FROM audit_log WHERE action = 'households.import'") == [(0,)]
    # the human report: one line per problem with its row number, a clean error, no traceback
    text = invoke(demo_db, file)
    assert text.exit_code == 1 and "Traceback" not in text.output
    assert "第7行 外部编号: 外部编号“R-001”与第2行重复 (duplicate_external_id)" in text.output
    assert "12 行有错误，未写入任何数据" in text.output
    assert households(demo_db) == before


def test_good_csv_with_chinese_headers_imports_and_reimport_changes_nothing(demo_db, tmp_path):
    file = write_csv(
        tmp_path / "good.csv", [*ZH, "序号"], [[*r, str(i)] for i, r in enumerate(GOOD)]
    )
    first = invoke(demo_db, file, "--json")
    assert first.exit_code == 0, first.output
    report = json.loads(first.stdout)
    assert (report["new"], report["changed"], report["unchanged"]) == (3, 0, 0)
    assert report["ignored_columns"] == ["序号"]
    rows = {
        r[0]: r
        for r in q(
            demo_db,
            "SELECT external_id, id, grid_id, size, tags, status, "
            "responsible_member_id, phone, room FROM households "
            "WHERE external_id LIKE 'R-%'",
        )
    }
    assert rows["R-001"][1] == importer.household_id_for("R-001")
    assert rows["R-001"][2:7] == (
        "c001-g01",
        1,
        '["elderly_alone","low_income"]',
        "active",
        "c001-g01-m01",
    )
    assert rows["R-002"][3:8] == (3, '["renter"]', "active", None, "138-0000-2222")
    assert rows["R-003"][3:5] == (1, '["disabled","renter","自定义标签"]')
    assert rows["R-003"][5] == "moved_out" and rows["R-003"][8] == "301"
    once = households(demo_db)

    second = invoke(demo_db, file, "--json")
    assert second.exit_code == 0, second.output
    report = json.loads(second.stdout)
    assert (report["new"], report["changed"], report["unchanged"]) == (0, 0, 3)
    assert households(demo_db) == once  # seq and updated_at included
    audits = q(
        demo_db,
        "SELECT target, detail FROM audit_log WHERE action='households.import' "
        "AND device_id = 'cli' ORDER BY id",
    )
    assert [t for t, _ in audits] == ["good.csv", "good.csv"]
    assert json.loads(audits[1][1]) == {
        "rows": 3,
        "new": 0,
        "changed": 0,
        "unchanged": 3,
        "assigned": 0,
    }


def test_a_changed_row_takes_a_new_seq_and_the_others_stay(demo_db, tmp_path):
    assert invoke(demo_db, write_csv(tmp_path / "a.csv", ZH, GOOD)).exit_code == 0
    before = {
        r[0]: r
        for r in q(
            demo_db,
            "SELECT external_id, seq, updated_at, field_hlc "
            "FROM households WHERE external_id LIKE 'R-%'",
        )
    }
    edited = [list(r) for r in GOOD]
    edited[1][6] = "13911112222"
    result = invoke(demo_db, write_csv(tmp_path / "b.csv", ZH, edited), "--json")
    assert json.loads(result.stdout)["changed"] == 1
    after = {
        r[0]: r
        for r in q(
            demo_db,
            "SELECT external_id, seq, updated_at, field_hlc "
            "FROM households WHERE external_id LIKE 'R-%'",
        )
    }
    assert after["R-001"] == before["R-001"] and after["R-003"] == before["R-003"]
    top = q(demo_db, "SELECT max(seq) FROM households")[0][0]
    assert after["R-002"][1] == top > before["R-002"][1]
    stamps = json.loads(after["R-002"][3])  # the merge's shape: [hlc, seq, device, person]
    stamped = {k for k, v in stamps.items() if k != "tags" and v[0]}
    assert stamped == {"phone"}  # the server edit's HLC; the other fields pinned at their seq
    assert stamps["phone"][1:] == [after["R-002"][1], "cli", None]


def test_xlsx_with_chinese_headers_and_numeric_cells(demo_db, tmp_path):
    rows = [
        [*GOOD[0][:6], 13800001111, 1, *GOOD[0][8:]],
        [*GOOD[1][:4], 102, GOOD[1][5], None, 3.0, *GOOD[1][8:]],
    ]
    file = write_xlsx(tmp_path / "住户名册.xlsx", ZH, rows)
    result = invoke(demo_db, file)
    assert result.exit_code == 0, result.output
    assert "2 new, 0 changed, 0 unchanged" in result.stdout
    got = q(
        demo_db,
        "SELECT phone, size, room FROM households WHERE external_id IN "
        "('R-001', 'R-002') ORDER BY external_id",
    )
    assert got == [("13800001111", 1, "101"), ("", 3, "102")]
    once = households(demo_db)
    assert "0 new, 0 changed, 2 unchanged" in invoke(demo_db, file).stdout
    assert households(demo_db) == once


def test_xlsx_bad_rows_are_numbered_as_the_sheet_shows(demo_db, tmp_path):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(ZH)
    sheet.append(GOOD[0])
    sheet.cell(row=5, column=1, value="R-050")  # rows 3 and 4 left empty
    sheet.cell(row=5, column=2, value="nowhere")
    sheet.cell(row=5, column=6, value="某人")
    book.save(tmp_path / "gaps.xlsx")
    result = invoke(demo_db, tmp_path / "gaps.xlsx", "--json")
    assert result.exit_code == 1
    assert [(e["row"], e["code"]) for e in json.loads(result.stdout)["errors"]] == [
        (5, "unknown_grid")
    ]


def test_english_headers_and_gb18030_csv(demo_db, tmp_path):
    english = write_csv(tmp_path / "en.csv", EN, GOOD[:2], encoding="utf-8")
    result = invoke(demo_db, english, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["new"] == 2
    chinese_excel = write_csv(tmp_path / "gbk.csv", ZH, GOOD, encoding="gb18030")
    result = invoke(demo_db, chinese_excel, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["new"], report["unchanged"]) == (1, 2)
    assert q(demo_db, "SELECT head_name FROM households WHERE external_id = 'R-003'") == [("张伟",)]


def test_dry_run_previews_and_writes_nothing(demo_db, tmp_path):
    file = write_csv(tmp_path / "good.csv", ZH, GOOD)
    before = households(demo_db)
    audit_before = q(demo_db, "SELECT count(*) FROM audit_log")
    result = invoke(demo_db, file, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would import 3 new, 0 changed, 0 unchanged" in result.stdout
    assert households(demo_db) == before
    assert q(demo_db, "SELECT count(*) FROM audit_log") == audit_before
    bad = write_csv(
        tmp_path / "bad.csv", ZH, [["R-9", "g-x", "", "", "", "某", "", "", "", "", "", ""]]
    )
    result = invoke(demo_db, bad, "--dry-run", "--json")
    assert result.exit_code == 1 and json.loads(result.stdout)["errors"][0]["row"] == 2
    assert households(demo_db) == before


def test_a_partial_file_updates_only_its_columns(demo_db, tmp_path):
    """A demo household (external id demo-...) updated from a two-column sheet."""
    (before,) = q(demo_db, "SELECT * FROM households WHERE external_id = 'demo-c001-g01-0001'")
    file = write_csv(
        tmp_path / "phones.csv", ["编号", "手机"], [["demo-c001-g01-0001", "13700000000"]]
    )
    result = invoke(demo_db, file, "--json")
    assert json.loads(result.stdout)["changed"] == 1
    (after,) = q(demo_db, "SELECT * FROM households WHERE external_id = 'demo-c001-g01-0001'")
    columns = [c[1] for c in q(demo_db, "PRAGMA table_info(households)")]
    changed = {c for c, a, b in zip(columns, before, after) if a != b}
    assert changed == {"phone", "seq", "updated_at", "field_hlc"}
    assert dict(zip(columns, after))["phone"] == "13700000000"


@pytest.mark.parametrize(
    ("name", "content", "code"),
    [
        ("h.txt", "外部编号\nA\n", "bad_file_type"),
        ("h.csv", "网格,户主姓名\ng,x\n", "missing_column"),
        ("h.csv", "外部编号,网格,grid_id\nA,g,g\n", "duplicate_column"),
        ("h.csv", "", "no_header"),
        ("h.xlsx", "not a zip", "bad_file"),
    ],
)
def test_file_level_problems_are_clean_errors(demo_db, tmp_path, name, content, code):
    (tmp_path / name).write_text(content, encoding="utf-8")
    before = households(demo_db)
    result = invoke(demo_db, tmp_path / name)
    assert result.exit_code == 1
    assert code in result.output and "Traceback" not in result.output
    assert households(demo_db) == before


def test_import_help_lists_the_headers():
    result = CliRunner().invoke(cli, ["import", "households", "--help"])
    assert result.exit_code == 0
    assert "外部编号/external_id" in result.output and "--dry-run" in result.output


# -- assignments: the import assigns as `coverage assign` does --------------------------------


def load_of(db_path, member) -> int:
    return q(
        db_path,
        "SELECT count(*) FROM households WHERE status = 'active' AND responsible_member_id = ?",
        member,
    )[0][0]


def others_of_grid(db_path, grid, members, n) -> list[str]:
    """n active households of the grid that none of ``members`` is responsible for."""
    return [
        r[0]
        for r in q(
            db_path,
            "SELECT external_id FROM households WHERE grid_id = ? AND "
            "status = 'active' AND coalesce(responsible_member_id, '') "
            "NOT IN (?, ?) ORDER BY id LIMIT ?",
            grid,
            *members,
            n,
        )
    ]


def test_import_past_a_members_cap_is_refused_unless_overridden_and_logged(demo_db, tmp_path):
    member = "c001-g01-m01"
    load = load_of(demo_db, member)
    room = 12 - load  # the demo's district cap
    new = [
        [f"R-{i:03d}", "c001-g01", "", "", "", f"户{i}", "", "", "", "", "", member]
        for i in range(room + 2)
    ]
    file = write_csv(tmp_path / "cap.csv", ZH, new)
    before = households(demo_db)
    refused = invoke(demo_db, file, "--json")
    assert refused.exit_code == 1
    report = json.loads(refused.stdout)
    assert {(e["row"], e["code"]) for e in report["errors"]} == {  # the two beyond the cap
        (room + 2, "over_cap"),
        (room + 3, "over_cap"),
    }
    assert f"导入后将负责 {12 + 2} 户，超过上限 12 户" in report["errors"][0]["message"]
    assert households(demo_db) == before
    # (the demo's own lines: its member who moved away; the import's carry "import FILE")
    assert q(demo_db, IMPORT_LOG_COUNT) == [(0,)]

    done = invoke(demo_db, file, "--json", "--override-cap")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert (report["new"], report["assigned"], report["over_cap"]) == (room + 2, room + 2, 2)
    assert load_of(demo_db, member) == 14
    log = q(
        demo_db,
        "SELECT household_id, previous_member_id, member_id, override_cap, "
        "load_after, cap, reason, device_id FROM assignment_log "
        "WHERE reason LIKE 'import %' ORDER BY id",
    )
    assert [r[4] for r in log] == list(range(load + 1, 15))
    assert [r[3] for r in log] == [0] * room + [1, 1]
    assert {r[1:3] for r in log} == {(None, member)}
    assert {r[5:] for r in log} == {(12, "import cap.csv", "cli")}
    assert log[0][0] == importer.household_id_for("R-000")
    audit = json.loads(
        q(demo_db, "SELECT detail FROM audit_log WHERE action = 'households.import'")[0][0]
    )
    assert (audit["assigned"], audit["override_cap"]) == (room + 2, 2)
    # the same file again: nothing changes, nothing more is logged
    again = json.loads(invoke(demo_db, file, "--json").stdout)
    assert (again["unchanged"], again["assigned"]) == (room + 2, 0)
    assert q(demo_db, IMPORT_LOG_COUNT) == [(room + 2,)]


def test_a_file_that_moves_households_counts_the_loads_after_the_import(demo_db, tmp_path):
    full, other = "c001-g01-m01", "c001-g01-m02"
    fill = others_of_grid(demo_db, "c001-g01", (full, other), 12 - load_of(demo_db, full))
    assert (
        invoke(
            demo_db,
            write_csv(tmp_path / "fill.csv", ["外部编号", "负责党员"], [[e, full] for e in fill]),
            "--override-cap",
        ).exit_code
        == 0
    )
    assert load_of(demo_db, full) == 12
    theirs = q(
        demo_db,
        "SELECT external_id FROM households WHERE responsible_member_id = ? "
        "AND status = 'active' ORDER BY id LIMIT 1",
        full,
    )[0][0]
    # one household leaves the full member (moved to another), one joins: still 12, accepted
    swap = write_csv(
        tmp_path / "swap.csv",
        ["外部编号", "网格", "户主姓名", "负责党员"],
        [["R-NEW", "c001-g01", "新户", full], [theirs, "c001-g01", "", other]],
    )
    report = json.loads(invoke(demo_db, swap, "--json").stdout)
    # an existing household cannot lose its head's name; without that row, R-NEW is one too many
    assert [(e["row"], e["code"], e["column"]) for e in report["errors"]] == [
        (2, "over_cap", "responsible_member_id"),
        (3, "missing_field", "head_name"),
    ]
    head = q(demo_db, "SELECT head_name FROM households WHERE external_id = ?", theirs)[0][0]
    swap = write_csv(
        tmp_path / "swap.csv",
        ["外部编号", "网格", "户主姓名", "负责党员"],
        [["R-NEW", "c001-g01", "新户", full], [theirs, "c001-g01", head, other]],
    )
    result = invoke(demo_db, swap, "--json")
    assert result.exit_code == 0, result.output
    assert load_of(demo_db, full) == 12
    moved = q(
        demo_db,
        "SELECT previous_member_id, member_id, override_cap FROM assignment_log "
        "WHERE reason = 'import swap.csv' ORDER BY id",
    )
    assert moved == [(None, full, 0), (full, other, 0)]
    # a household moving out frees a place too
    leave = write_csv(tmp_path / "leave.csv", ["外部编号", "状态"], [[theirs, "迁出"]])
    assert invoke(demo_db, leave).exit_code == 0


def test_an_inactive_member_is_refused(demo_db, tmp_path):
    conn = sqlite3.connect(demo_db)
    with conn:
        conn.execute("UPDATE people SET active = 0 WHERE id = 'c001-g01-m02'")
    conn.close()
    file = write_csv(
        tmp_path / "inactive.csv",
        ["外部编号", "网格", "户主姓名", "负责党员"],
        [["R-1", "c001-g01", "甲", "c001-g01-m02"]],
    )
    report = json.loads(invoke(demo_db, file, "--json").stdout)
    assert [(e["row"], e["code"]) for e in report["errors"]] == [(2, "member_inactive")]

"""Imports of org units and people (issue 18): real CSV and XLSX files on disk read through the
household import's reader, the CLI and the admin API over the real app; every bad row
numbered, nothing written on error, a re-import changes nothing."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import openpyxl
from click.testing import CliRunner

from gridsync.cli import cli
from tests.conftest import bearer

UNITS_HEADER = ["编号", "类型", "名称", "上级", "对应网格"]
# children before their parents, on purpose: the import writes parents first
UNITS_ROWS = [
    ["g31", "网格", "第三十一网格", "c3", ""],
    ["b31", "支部", "第三十一网格党支部", "c3", "g31"],
    ["c3", "社区", "新社区", "s1", ""],
    ["g32", "grid", "第三十二网格", "c3", ""],
]
PEOPLE_HEADER = ["id", "name", "roles", "scope", "branch_id", "phone", "channels"]
PEOPLE_ROWS = [
    ["p1", "周党员", "党员", "g31", "b31", "13900001111", ""],
    ["p2", "吴网格员", "grid_worker、member", "g31;g32", "b31", "", "json://127.0.0.1:9/x"],
    ["p3", "郑书记", "社区书记", "c3", "", "0532-88881234", ""],
]


def write_csv(path, header, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8-sig") as f:
        csv.writer(f).writerows([header, *rows])
    return str(path)


def write_xlsx(path, header, rows) -> str:
    book = openpyxl.Workbook()
    sheet = book.active
    for row in [header, *rows]:
        sheet.append(row)
    book.save(path)
    return str(path)


def run(db_path, *args):
    return CliRunner().invoke(cli, [*args, "--db", db_path])


def q(db_path, sql, *params):
    conn = sqlite3.connect(db_path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def units_then_people(db_path, tmp_path):
    units = write_csv(tmp_path / "units.csv", UNITS_HEADER, UNITS_ROWS)
    result = run(db_path, "import", "units", units)
    assert result.exit_code == 0, result.output
    people = write_xlsx(tmp_path / "people.xlsx", PEOPLE_HEADER, PEOPLE_ROWS)
    result = run(db_path, "import", "people", people)
    assert result.exit_code == 0, result.output
    return units, people


def test_units_in_any_order_and_people_import_and_reimport_changes_nothing(
    db_path, store, tiny, tmp_path
):
    units, people = units_then_people(db_path, tmp_path)
    assert q(
        db_path,
        "SELECT id, kind, parent_id, grid_id FROM org_units WHERE id LIKE '%3%' ORDER BY id",
    ) == [
        ("b31", "branch", "c3", "g31"),
        ("c3", "community", "s1", None),
        ("g31", "grid", "c3", None),
        ("g32", "grid", "c3", None),
    ]
    rows = q(
        db_path,
        "SELECT id, name, roles, branch_id, phone, channels FROM people "
        "WHERE id LIKE 'p%' ORDER BY id",
    )
    assert rows == [
        ("p1", "周党员", '["member"]', "b31", "13900001111", "[]"),
        ("p2", "吴网格员", '["grid_worker","member"]', "b31", "", '["json://127.0.0.1:9/x"]'),
        ("p3", "郑书记", '["community_secretary"]', None, "0532-88881234", "[]"),
    ]
    assert q(db_path, "SELECT unit_id FROM person_scope WHERE person_id = 'p2' ORDER BY 1") == [
        ("g31",),
        ("g32",),
    ]
    before = q(db_path, "SELECT id, seq, scope_version FROM people ORDER BY id")
    units_before = q(db_path, "SELECT id, seq FROM org_units ORDER BY id")
    again = run(db_path, "import", "people", people, "--json")
    assert again.exit_code == 0, again.output
    doc = json.loads(again.output.splitlines()[-1])
    assert (doc["new"], doc["changed"], doc["unchanged"], doc["written"]) == (0, 0, 3, True)
    again = run(db_path, "import", "units", units)
    assert "0 new, 0 changed, 4 unchanged" in again.output
    assert q(db_path, "SELECT id, seq, scope_version FROM people ORDER BY id") == before
    assert q(db_path, "SELECT id, seq FROM org_units ORDER BY id") == units_before
    actions = [r[0] for r in q(db_path, "SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("people.import") == 2 and actions.count("units.import") == 2
    # a changed row is written, the others are not
    changed = [*PEOPLE_ROWS]
    changed[0] = ["p1", "周党员", "党员", "g31 g32", "b31", "13900001111", ""]
    result = run(db_path, "import", "people", write_csv(tmp_path / "p.csv", PEOPLE_HEADER, changed))
    assert "0 new, 1 changed, 2 unchanged" in result.output
    after = dict((r[0], r[1:]) for r in q(db_path, "SELECT id, seq, scope_version FROM people"))
    assert after["p1"][1] == dict((r[0], r[1:]) for r in before)["p1"][1] + 1
    assert after["p2"] == dict((r[0], r[1:]) for r in before)["p2"]


def test_every_bad_row_is_numbered_and_nothing_is_written(db_path, store, tiny, tmp_path):
    units_then_people(db_path, tmp_path)
    people_before = q(db_path, "SELECT * FROM people ORDER BY id")
    bad = [
        ["p4", "新人", "", "g31", "", "", ""],  # 2: a new person needs roles
        ["p5", "甲", "member", "nowhere", "", "", ""],  # 3: no such unit
        ["p6", "乙", "chief", "g31", "", "", ""],  # 4: no such role
        ["p7", "丙", "grid_worker", "c3", "", "", ""],  # 5: a grid worker names grids
        ["p8", "丁", "member", "g31", "g31", "", ""],  # 6: g31 is no branch
        ["p9", "戊", "member", "g31", "", "", "notaurl"],  # 7: Apprise cannot parse it
        ["p5", "己", "member", "g31", "", "", ""],  # 8: p5 twice
        ["p10", "x" * 101, "member", "g31", "", "", ""],  # 9: name too long
        ["p11", "庚", "member", "g31", "", "", ""],  # a good row: not written either
    ]
    path = write_csv(tmp_path / "bad.csv", PEOPLE_HEADER, bad)
    result = run(db_path, "import", "people", path, "--json")
    assert result.exit_code == 1
    doc = json.loads(result.output.splitlines()[-1])
    assert doc["written"] is False
    got = [(e["row"], e["column"], e["code"]) for e in doc["errors"]]
    assert got == [
        (2, "roles", "missing_field"),
        (3, "scope", "validation_error"),
        (4, "roles", "validation_error"),
        (5, "scope", "grid_worker_scope"),
        (6, "branch_id", "validation_error"),
        (7, "channels", "invalid_channel"),
        (8, "id", "duplicate_id"),
        (9, "name", "validation_error"),
    ]
    assert all(e["message"].startswith(f"第{e['row']}行 ") for e in doc["errors"])
    assert q(db_path, "SELECT * FROM people ORDER BY id") == people_before
    units = [
        ["g1", "branch", "第一网格", "c1", ""],  # 2: a grid stays a grid
        ["g40", "grid", "第四十网格", "s1", ""],  # 3: a grid's parent is a community
        ["g41", "村", "x", "c1", ""],  # 4: unknown kind
        ["g42", "grid", "y", "c99", ""],  # 5: no such parent
    ]
    result = run(db_path, "import", "units", write_csv(tmp_path / "u.csv", UNITS_HEADER, units))
    assert result.exit_code == 1
    lines = result.output
    for row, code in ((2, "kind_change"), (3, "validation_error"), (5, "validation_error")):
        assert f"第{row}行" in lines and code in lines
    assert "第4行 类型" in lines
    assert q(db_path, "SELECT count(*) FROM org_units WHERE id LIKE 'g4%'") == [(0,)]


def test_dry_run_and_file_problems(db_path, store, tiny, tmp_path):
    path = write_csv(tmp_path / "units.csv", UNITS_HEADER, UNITS_ROWS)
    result = run(db_path, "import", "units", path, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would import 4 new" in result.output
    assert q(db_path, "SELECT count(*) FROM org_units WHERE id = 'c3'") == [(0,)]
    missing = write_csv(tmp_path / "nokey.csv", ["姓名", "角色"], [["甲", "member"]])
    result = run(db_path, "import", "people", missing)
    assert result.exit_code == 1 and "missing_column" in result.output and "编号" in result.output
    unknown = write_csv(tmp_path / "unk.csv", ["编号", "名称", "颜色"], [["x", "y", "red"]])
    result = run(db_path, "import", "units", unknown, "--json")
    assert json.loads(result.output)["code"] == "unknown_column"
    help_text = CliRunner().invoke(cli, ["import", "people", "--help"]).output
    for header in (
        "编号/id",
        "姓名/name",
        "角色/roles",
        "范围/scope",
        "支部/branch_id",
        "电话/phone",
        "渠道/channels",
    ):
        assert header in help_text


def test_admin_api_imports_with_dry_run_and_refuses_others(db_path, client, tiny, tmp_path):
    body = io.StringIO()
    csv.writer(body).writerows([UNITS_HEADER, *UNITS_ROWS])
    data = body.getvalue().encode("utf-8")
    admin = bearer(tiny.tokens["admin"])
    r = client.post("/api/v1/imports/units?dry_run=true", content=data, headers=admin)
    assert r.status_code == 200, r.text
    assert (r.json()["new"], r.json()["written"], r.json()["dry_run"]) == (4, False, True)
    assert q(db_path, "SELECT count(*) FROM org_units WHERE id = 'c3'") == [(0,)]
    r = client.post("/api/v1/imports/units", content=data, headers=admin)
    assert r.status_code == 200 and r.json()["written"] is True
    assert q(db_path, "SELECT count(*) FROM org_units WHERE id IN ('c3','g31','g32','b31')") == [
        (4,)
    ]
    book = io.BytesIO()
    wb = openpyxl.Workbook()
    for row in [PEOPLE_HEADER, *PEOPLE_ROWS, ["p4", "", "member", "g31", "", "", ""]]:
        wb.active.append(row)
    wb.save(book)
    xlsx = {"Content-Type": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}
    r = client.post("/api/v1/imports/people", content=book.getvalue(), headers={**admin, **xlsx})
    assert r.status_code == 400, r.text
    assert r.json()["code"] == "import_rejected"
    assert [(e["row"], e["column"]) for e in r.json()["errors"]] == [(5, "name")]
    assert q(db_path, "SELECT count(*) FROM people WHERE id LIKE 'p%'") == [(0,)]
    r = client.post("/api/v1/imports/units", content=data, headers=bearer(tiny.tokens["sec"]))
    assert r.status_code == 403
    r = client.post("/api/v1/imports/units", content=b"\xff\xfe\x00garbage", headers=admin)
    assert r.status_code == 400 and r.json()["code"] in ("bad_encoding", "no_header")

"""gridsync import households against files that are cut short, written by scripts, broken or
hostile: each is a coded error (of the file, or of the rows it concerns), nothing is written,
the exit code is 1, and never a traceback. Test files are made with openpyxl and the zipfile
module, then edited where a real file would differ (a cached formula value, a DTD, a lying zip
directory)."""

from __future__ import annotations

import json
import re
import struct
import zipfile
from datetime import date, datetime

import openpyxl
import pytest

from gridsync import demo, importer
from gridsync.db import Store
from tests.test_import import GOOD, ZH, households, invoke, q, write_csv, write_xlsx

SHEET = "xl/worksheets/sheet1.xml"


@pytest.fixture
def demo_db(tmp_path) -> str:
    path = str(tmp_path / "demo.db")
    with Store(path) as store:
        demo.build(store, demo.SCALES["community"], seed=1, as_of=date(2026, 11, 23))
    return path


def report_of(result) -> dict:
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def edit_part(path, part: str, edit) -> str:
    """Rewrite one part of a zip (an XLSX) through ``edit(text) -> text``."""
    with zipfile.ZipFile(path) as z:
        items = [(i, z.read(i.filename)) for i in z.infolist()]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in items:
            if info.filename == part:
                data = edit(data.decode()).encode()
            z.writestr(info.filename, data)
    return str(path)


def row_of(demo_db, external_id) -> tuple:
    return q(
        demo_db,
        "SELECT tags, notes, responsible_member_id, head_name, seq FROM households "
        "WHERE external_id = ?",
        external_id,
    )[0]


# -- 1. CSV rows with more or fewer cells than the header --------------------------------------


def test_a_csv_row_shorter_or_longer_than_the_header_is_an_error_of_that_row(demo_db, tmp_path):
    assert invoke(demo_db, write_csv(tmp_path / "good.csv", ZH, GOOD)).exit_code == 0
    kept = row_of(demo_db, "R-001")
    assert kept[:3] == ('["elderly_alone","low_income"]', "子女在外地", "c001-g01-m01")
    lines = [
        ",".join(ZH),
        ",".join(GOOD[0][:8]),  # row 2: an existing household, cut after 人口数
        ",".join(GOOD[1]),  # row 3: fine
        ",".join([*GOOD[2], "多出来的"]),  # row 4: one cell too many
        "",  # row 5: a blank line, skipped as before
        "R-020,c001-g01,21号楼,1单元,201,欧阳",  # row 6: a new household, the file cut short
    ]
    file = tmp_path / "cut.csv"
    file.write_text("\n".join(lines), encoding="utf-8")
    before = households(demo_db)
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    report = report_of(result)
    assert not report["written"] and report["rows"] == 4
    assert [(e["row"], e["code"], e["column"]) for e in report["errors"]] == [
        (2, "row_width", None),
        (4, "row_width", None),
        (6, "row_width", None),
    ]
    assert "第2行: 有 8 个单元格，而表头有 12 列" in report["errors"][0]["message"]
    assert "有 13 个单元格" in report["errors"][1]["message"]
    assert households(demo_db) == before  # tags, notes and member of R-001 kept, no R-020
    text = invoke(demo_db, file)
    assert text.exit_code == 1 and "Traceback" not in text.output
    assert re.search(r"第6行: 有 6 个单元格，而表头有 12 列.*\(row_width\)", text.output)
    assert households(demo_db) == before


def test_blank_lines_and_rows_of_empty_cells_are_skipped(demo_db, tmp_path):
    lines = [",".join(ZH), ",".join(GOOD[0]), "", ",,,", "," * 11, ",".join(GOOD[1]), "", ""]
    file = tmp_path / "blank.csv"
    file.write_text("\r\n".join(lines), encoding="utf-8")
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 0, result.output
    assert (report_of(result)["rows"], report_of(result)["new"]) == (2, 2)


# -- 2. XLSX formulas ----------------------------------------------------------------------------


def formula_book(tmp_path, name="f.xlsx") -> str:
    rows = [
        ["R-030", "c001-g01", "", "", "", "甲", "", "=1+1", "", "", "", ""],
        ["R-031", "c001-g01", "", "", "", "乙", "", "2", "", '=""', "", ""],
    ]
    return write_xlsx(tmp_path / name, ZH, rows)


def test_a_formula_without_a_cached_value_is_an_error_of_its_row(demo_db, tmp_path):
    file = formula_book(tmp_path)
    assert '<c r="H2"><f>1+1</f><v /></c>' in zipfile.ZipFile(file).read(SHEET).decode()
    before = households(demo_db)
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    errors = report_of(result)["errors"]
    # openpyxl writes no value for =\"\" either (and no text type): both refused
    assert [(e["row"], e["column"], e["code"]) for e in errors] == [
        (2, "size", "formula_without_value"),
        (3, "notes", "formula_without_value"),
    ]
    assert errors[0]["message"].startswith("第2行 人口数: 公式没有计算结果")
    assert households(demo_db) == before


def test_a_formula_with_a_cached_value_takes_the_value(demo_db, tmp_path):
    """As Excel saves it: ``<v>`` holds the result; a text result is typed ``t="str"`` and an
    empty one has an empty ``<v>``."""
    file = edit_part(
        formula_book(tmp_path),
        SHEET,
        lambda x: x.replace(
            '<c r="H2"><f>1+1</f><v /></c>', '<c r="H2"><f>1+1</f><v>2</v></c>'
        ).replace('<c r="J3"><f>""</f><v /></c>', '<c r="J3" t="str"><f>""</f><v></v></c>'),
    )
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 0, result.output
    got = q(
        demo_db,
        "SELECT external_id, size, notes FROM households WHERE external_id LIKE 'R-03%' ORDER BY 1",
    )
    assert got == [("R-030", 2, ""), ("R-031", 2, "")]


def test_error_values_and_dates_in_cells_are_errors_of_their_rows(demo_db, tmp_path):
    rows = [
        ["R-040", "c001-g01", "", "", datetime(2026, 3, 1), "甲", "", "1", "", "", "", ""],
        ["R-041", "c001-g01", "", "", "101", "乙", "", "=1/0", "", "", "", ""],
    ]
    file = edit_part(  # a cached error value, as Excel saves =1/0
        write_xlsx(tmp_path / "e.xlsx", ZH, rows),
        SHEET,
        lambda x: x.replace(
            '<c r="H3"><f>1/0</f><v /></c>', '<c r="H3" t="e"><f>1/0</f><v>#DIV/0!</v></c>'
        ),
    )
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    assert [(e["row"], e["column"], e["code"]) for e in report_of(result)["errors"]] == [
        (2, "room", "date_cell"),
        (3, "size", "cell_error"),
    ]


# -- 4. broken and hostile XLSX ------------------------------------------------------------------

LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    '<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">'
    '<!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">'
    '<!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">'
    '<!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">'
    '<!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">'
    '<!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">]>'
)


def with_laughs(text: str) -> str:
    """The XML declaration replaced by a DTD whose entities expand to 10^9 "lol"s, used in a
    cell (the sheet) or in a sheet's name (the workbook)."""
    body = re.sub(r"^<\?xml[^>]*\?>", "", text)
    body = body.replace("<t>R-001</t>", "<t>&lol9;</t>").replace('name="Sheet"', 'name="&lol9;"')
    return LAUGHS + body


def good_book(tmp_path, name="good.xlsx") -> str:
    return write_xlsx(tmp_path / name, ZH, GOOD)


@pytest.mark.parametrize(
    ("case", "make"),
    [
        ("not a zip", lambda p: (p.write_bytes(b"PK\x03\x04 not really a zip"), str(p))[1]),
        (
            "zip without a workbook",
            lambda p: (zipfile.ZipFile(p, "w").writestr("a.txt", "x"), str(p))[1],
        ),
        (
            "sheet XML cut short",
            lambda p: edit_part(good_book(p.parent, p.name), SHEET, lambda x: x[: len(x) // 2]),
        ),
        (
            "sheet XML not XML",
            lambda p: edit_part(
                good_book(p.parent, p.name),
                SHEET,
                lambda x: x.replace("<sheetData>", "<sheetData><<"),
            ),
        ),
        (
            "billion laughs in the sheet",
            lambda p: edit_part(good_book(p.parent, p.name), SHEET, with_laughs),
        ),
        (
            "billion laughs in the workbook",
            lambda p: edit_part(good_book(p.parent, p.name), "xl/workbook.xml", with_laughs),
        ),
        (
            "shared string out of range",
            lambda p: edit_part(
                good_book(p.parent, p.name),
                SHEET,
                lambda x: x.replace(
                    '<c r="A2" t="inlineStr"><is><t>R-001</t></is></c>',
                    '<c r="A2" t="s"><v>99</v></c>',
                ),
            ),
        ),
    ],
)
def test_a_broken_or_hostile_xlsx_is_a_coded_bad_file(demo_db, tmp_path, case, make):
    file = make(tmp_path / "bad.xlsx")
    before = households(demo_db)
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1, case
    assert report_of(result)["code"] == "bad_file", case
    text = invoke(demo_db, file)
    assert text.exit_code == 1 and "Traceback" not in text.output
    lines = text.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: bad_file: bad.xlsx: "), lines
    assert households(demo_db) == before


def test_a_decompression_bomb_is_refused_before_it_is_inflated(demo_db, tmp_path):
    """A real bomb (a few KB that inflate to 4 MiB) against small limits, and through the CLI
    a zip whose directory declares a 4 GiB sheet (the declared size is what zipfile enforces:
    a part inflating past it fails its CRC)."""
    file = good_book(tmp_path, "bomb.xlsx")
    with zipfile.ZipFile(file, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/media/image1.png", b"\0" * (4 * 1024 * 1024))
    assert (tmp_path / "bomb.xlsx").stat().st_size < 64 * 1024
    limits = importer.Limits(max_unpacked_bytes=1024 * 1024)
    with pytest.raises(importer.Invalid) as refused:
        importer.read_file(file, limits)
    assert refused.value.code == "unpacked_too_large"
    assert "超过上限 1 MiB" in refused.value.message

    lying = good_book(tmp_path, "lying.xlsx")
    raw = bytearray((tmp_path / "lying.xlsx").read_bytes())
    entry = raw.find(b"PK\x01\x02")
    while entry != -1:  # every central directory entry of the sheet: uncompressed size 4 GiB
        name_len = struct.unpack_from("<H", raw, entry + 28)[0]
        if raw[entry + 46 : entry + 46 + name_len] == SHEET.encode():
            struct.pack_into("<I", raw, entry + 24, 0xFFFFFFF0)
        entry = raw.find(b"PK\x01\x02", entry + 4)
    (tmp_path / "lying.xlsx").write_bytes(bytes(raw))
    assert zipfile.ZipFile(lying).getinfo(SHEET).file_size == 0xFFFFFFF0
    result = invoke(demo_db, lying, "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == "unpacked_too_large"


def test_file_size_and_row_count_are_bounded_before_the_work(tmp_path):
    rows = [[f"R-{i}", "c001-g01", "", "", "", f"户{i}", "", "", "", "", "", ""] for i in range(4)]
    csv_file = write_csv(tmp_path / "rows.csv", ZH, rows)
    xlsx_file = write_xlsx(tmp_path / "rows.xlsx", ZH, rows)
    for file in (csv_file, xlsx_file):
        assert len(importer.read_file(file, importer.Limits(max_rows=4)).rows) == 4
        with pytest.raises(importer.Invalid) as refused:
            importer.read_file(file, importer.Limits(max_rows=3))
        assert refused.value.code == "too_many_rows"
    with pytest.raises(importer.Invalid) as refused:
        importer.read_file(csv_file, importer.Limits(max_file_bytes=100))
    assert refused.value.code == "file_too_large"
    # a sheet that claims a far row (a hostile row number) is refused, not padded to it
    far = edit_part(
        write_xlsx(tmp_path / "far.xlsx", ZH, rows[:1]),
        SHEET,
        lambda x: x.replace('<row r="2">', '<row r="900000000">').replace(
            'r="A2"', 'r="A900000000"'
        ),
    )
    with pytest.raises(importer.Invalid) as refused:
        importer.read_file(far)
    assert refused.value.code == "too_many_rows"


def test_cells_beyond_the_field_bounds_are_errors_of_their_rows(demo_db, tmp_path):
    def row(ext, **cells):
        base = dict(zip(ZH, [ext, "c001-g01", "", "", "", "某人", "", "", "", "", "", ""]))
        base.update(cells)
        return list(base.values())

    rows = [
        row("R-050", 户主姓名="王" * 201),
        row("R-051", 备注="记" * 4001),
        row("R-052", 备注="记" * 4000),  # at the bound: fine
        row("E" * 65),
        row("R-053", 标签="；".join(f"t{i}" for i in range(33))),
        row("R-054", 户主姓名="张\x00三"),
        row("R-055", 联系电话="1" * 5000),
    ]
    result = invoke(demo_db, write_csv(tmp_path / "long.csv", ZH, rows), "--json")
    assert result.exit_code == 1
    assert [(e["row"], e["column"], e["code"]) for e in report_of(result)["errors"]] == [
        (2, "head_name", "too_long"),
        (3, "notes", "too_long"),
        (5, "external_id", "too_long"),
        (6, "tags", "too_many_tags"),
        (7, "head_name", "bad_text"),
        (8, "phone", "too_long"),
    ]
    # a cell beyond what the csv module reads at all: a clean error of the file
    huge = tmp_path / "huge.csv"
    huge.write_text(",".join(ZH) + '\nR-1,c001-g01,,,,某人,,,,"' + "x" * 200_000 + '",,\n')
    result = invoke(demo_db, huge, "--json")
    assert result.exit_code == 1 and report_of(result)["code"] == "bad_file"
    assert "第2行" in report_of(result)["message"]


# -- other ways a file could lose data silently ---------------------------------------------------


def test_an_unknown_header_is_refused_unless_ignored_on_purpose(demo_db, tmp_path):
    header = ["外部编号", "网格", "户主姓名", "电话号码", "家庭住址"]
    rows = [["R-060", "c001-g01", "甲", "13800001111", "21号楼101"]]
    file = write_csv(tmp_path / "unknown.csv", header, rows)
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    report = report_of(result)
    assert report["code"] == "unknown_column" and "“家庭住址”" in report["message"]
    assert "电话号码" not in report["message"]  # an accepted header for the phone now
    assert q(demo_db, "SELECT count(*) FROM households WHERE external_id = 'R-060'") == [(0,)]
    result = invoke(demo_db, file, "--json", "--ignore-unknown-columns")
    assert result.exit_code == 0, result.output
    assert report_of(result)["ignored_columns"] == ["家庭住址"]
    assert q(demo_db, "SELECT phone FROM households WHERE external_id = 'R-060'") == [
        ("13800001111",)
    ]


def test_data_under_a_column_without_a_header_is_refused(demo_db, tmp_path):
    file = tmp_path / "noheader.csv"
    file.write_text("外部编号,网格,户主姓名,\nR-061,c001-g01,甲,独居老人\n", encoding="utf-8")
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == "unknown_column"
    assert "第4列（没有表头）" in report_of(result)["message"]
    ignoring = invoke(demo_db, file, "--json", "--ignore-unknown-columns")
    assert ignoring.exit_code == 0, ignoring.output
    assert report_of(ignoring)["ignored_columns"] == ["第4列（没有表头）"]
    assert q(demo_db, "SELECT tags FROM households WHERE external_id = 'R-061'") == [("[]",)]
    book = openpyxl.Workbook()
    book.active.append(["外部编号", "网格", "户主姓名"])
    book.active.append(["R-062", "c001-g01", "甲", None, "独居老人"])
    book.save(tmp_path / "noheader.xlsx")
    result = invoke(demo_db, tmp_path / "noheader.xlsx", "--json")
    assert result.exit_code == 1 and "第5列（没有表头）" in report_of(result)["message"]


def test_a_duplicated_header_is_a_coded_error_in_json_too(demo_db, tmp_path):
    file = write_csv(tmp_path / "dup.csv", ["外部编号", "电话", "手机"], [["R-1", "1", "2"]])
    result = invoke(demo_db, file, "--json")
    assert result.exit_code == 1
    assert report_of(result) == {
        "code": "duplicate_column",
        "message": "dup.csv: 列“联系电话”(phone) 出现了不止一次",
        "written": False,
    }


def test_a_bad_byte_is_refused_in_gb18030_and_in_utf8(demo_db, tmp_path):
    text = "\r\n".join([",".join(ZH), *(",".join(r) for r in GOOD)]) + "\r\n"
    gb = text.encode("gb18030")
    cut = gb.index("李建国".encode("gb18030"))
    (tmp_path / "gb.csv").write_bytes(gb[:cut] + b"\xff" + gb[cut + 1 :])
    result = invoke(demo_db, tmp_path / "gb.csv", "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == "bad_encoding"
    assert "第3行" in report_of(result)["message"]
    # UTF-8 with one byte lost in a name: once read as GB18030 (other characters, no error)
    utf8 = text.encode("utf-8")
    cut = utf8.index("张伟".encode())
    (tmp_path / "u8.csv").write_bytes(utf8[:cut] + utf8[cut + 1 :])
    before = households(demo_db)
    result = invoke(demo_db, tmp_path / "u8.csv", "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == "bad_encoding"
    assert "第4行" in report_of(result)["message"] and "UTF-8" in report_of(result)["message"]
    assert households(demo_db) == before
    # UTF-8 with one byte of a name corrupted, where every run of Chinese has an even length:
    # GB18030 decodes it without an error, so it was imported as other characters (exit 0)
    text = "external_id,grid_id,head_name,notes\r\nR-1,c001-g01,张伟,独居\r\nR-2,c001-g01,李娜,低保\r\n"
    raw = bytearray(text.encode())
    raw[raw.index("李娜".encode()) + 1] = 0xC0
    (tmp_path / "even.csv").write_bytes(bytes(raw))
    assert bytes(raw).decode("gb18030")  # the trap: a valid GB18030 reading exists
    result = invoke(demo_db, tmp_path / "even.csv", "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == "bad_encoding" and "第3行" in report_of(result)["message"]
    assert households(demo_db) == before
    # a whole GB18030 file still imports
    (tmp_path / "gb-ok.csv").write_bytes(gb)
    assert invoke(demo_db, tmp_path / "gb-ok.csv").exit_code == 0


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", "no_header"),
        (b"\xef\xbb\xbf", "no_header"),
        (b"\r\n\r\n", "no_header"),
        (",".join(ZH).encode() + b"\r\n", "no_rows"),
        (",".join(ZH).encode() + b"\r\n,,,\r\n\r\n", "no_rows"),
    ],
)
def test_an_empty_file_or_one_with_only_a_header_is_a_coded_error(demo_db, tmp_path, content, code):
    (tmp_path / "e.csv").write_bytes(content)
    result = invoke(demo_db, tmp_path / "e.csv", "--json")
    assert result.exit_code == 1
    assert report_of(result)["code"] == code


def test_openpyxl_parses_through_defusedxml():
    """openpyxl picks defusedxml up when it is installed (a dependency for this reason)."""
    import openpyxl.xml

    assert openpyxl.xml.DEFUSEDXML is True

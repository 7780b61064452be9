"""Household import from the spreadsheets communities already keep (CSV or XLSX).

The contract:

- Column headers may be Chinese or English (:data:`HEADERS`). A column with an unknown header,
  or with data and no header, is refused unless the caller chose to ignore such columns (they
  are then listed); a row-number column (序号) is ignored. Row 1 is the header, so row numbers
  are the ones a spreadsheet user sees.
- A file is read whole or refused (:func:`read_file`, :class:`Limits`): a row that cannot be
  read whole (a CSV row wider or narrower than the header, a formula without a cached value)
  is an error of that row; a file that is broken, hostile or beyond the bounds is a coded
  error of the file. Nothing is guessed: a cell is never taken as empty because it could not
  be read.
- ``external_id`` (外部编号) is the household's stable id in the community's own register. A new
  household's id is derived from it (``hh-`` + a hash), and rows are upserted by it, so importing
  the same file twice changes nothing: an unchanged row keeps its ``seq`` and ``updated_at``, a
  changed row takes a new ``seq`` (phones pull it) and is written by the sync merge's own
  writer (:func:`gridsync.sync.merge.overwrite`, ``save``), so ``field_hlc`` has the one shape
  the merge reads and a phone's later edit merges with the import like with any other edit.
- Columns absent from the file are left as they are on existing households (a file with only
  外部编号 and 联系电话 updates phones); an empty cell in a present column sets the field's empty
  value (``size`` 1, ``status`` active, no responsible member).
- Every row is validated and every bad row is reported with its number and reason. If any row is
  bad nothing is written. The whole import is one transaction, recorded in the audit log.
- A ``负责党员`` column assigns households as :func:`gridsync.coverage.assign` does: the member
  must be a party member serving the grid, and a member's load after the import may not exceed
  the cap of the household's community policy unless the import is run with ``override_cap``.
  The file is the register, so a different member in it moves the household. Every assignment
  an import makes is logged in ``assignment_log`` (reason ``import <file>``), overrides flagged.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

import msgspec
import sqlite_utils
from openpyxl.utils.cell import coordinate_to_tuple

from gridsync import audit, coverage
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import next_seq
from gridsync.errors import Invalid
from gridsync.households import HOUSEHOLD_COLUMNS
from gridsync.models import MAX_TAG_LENGTH, MAX_TAGS, HouseholdFields, RowError, field_types
from gridsync.models.core import SHORT_TEXT_PATTERN
from gridsync.sync import merge
from gridsync.sync.hlc import ServerClock
from gridsync.sync.merge import Stamp

# field -> (Chinese label, accepted headers). Headers match after trimming, case-insensitively,
# ignoring spaces, underscores and hyphens.
HEADERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "external_id": (
        "外部编号",
        ("外部编号", "住户编号", "户编号", "编号", "external_id", "external id"),
    ),
    "grid_id": ("网格", ("网格", "网格编号", "网格id", "grid", "grid_id")),
    "building": ("楼栋", ("楼栋", "楼号", "楼栋号", "building")),
    "unit": ("单元", ("单元", "单元号", "unit")),
    "room": ("房号", ("房号", "房间号", "门牌号", "室", "room")),
    "head_name": ("户主姓名", ("户主姓名", "户主", "姓名", "head_name", "head", "name")),
    "phone": (
        "联系电话",
        (
            "联系电话",
            "电话",
            "电话号码",
            "联系方式",
            "手机",
            "手机号",
            "手机号码",
            "phone",
            "mobile",
        ),
    ),
    "size": ("人口数", ("人口数", "家庭人口", "人数", "户人数", "size", "household_size")),
    "tags": ("标签", ("标签", "类别", "tags", "tag")),
    "notes": ("备注", ("备注", "说明", "notes", "note")),
    "status": ("状态", ("状态", "status")),
    "responsible_member_id": (
        "负责党员",
        (
            "负责党员",
            "联系党员",
            "责任党员",
            "负责党员编号",
            "responsible_member_id",
            "responsible_member",
            "member_id",
        ),
    ),
}
REQUIRED_FOR_NEW = ("grid_id", "head_name")
TAG_SEPARATORS = re.compile(r"[；;,，、|]")
TAG_ALIASES = {
    "独居老人": "elderly_alone",
    "独居": "elderly_alone",
    "空巢老人": "elderly_alone",
    "残疾": "disabled",
    "残疾人": "disabled",
    "残障": "disabled",
    "低保": "low_income",
    "低保户": "low_income",
    "低收入": "low_income",
    "租户": "renter",
    "租住": "renter",
    "租房": "renter",
    "出租": "renter",
}
STATUS_ALIASES = {
    "": "active",
    "active": "active",
    "在住": "active",
    "正常": "active",
    "居住": "active",
    "moved_out": "moved_out",
    "迁出": "moved_out",
    "已迁出": "moved_out",
    "搬离": "moved_out",
    "archived": "archived",
    "归档": "archived",
    "已归档": "archived",
}
PHONE = re.compile(r"\+?[0-9][0-9 ()\-]{4,18}[0-9]")
MAX_SIZE = 9999  # as a phone may send (models.HouseholdCreate.size)


def _max_lengths() -> dict[str, int]:
    """The longest text of each field: what a phone may write (``HouseholdFields``, the owner
    of these bounds), and an id's 64 for the two ids the phone never sends."""
    bounds = {"external_id": 64, "responsible_member_id": 64}
    for name, t in field_types(HouseholdFields):
        if isinstance(t, msgspec.inspect.StrType) and t.max_length is not None:
            bounds[name] = t.max_length
    return bounds


def _text_rules() -> dict[str, re.Pattern[str]]:
    """The text rule of each field (models.core: one line without control characters, or lines
    for a long text): the pattern a phone's ``HouseholdFields`` carries, so that a file cannot
    store what a phone may not send; one line for every other column."""
    rules = {}
    for name, t in field_types(HouseholdFields):
        if isinstance(t, msgspec.inspect.StrType) and t.pattern is not None:
            rules[name] = re.compile(t.pattern)
    return rules


MAX_LENGTH = _max_lengths()
TEXT_RULE = _text_rules()
ONE_LINE = re.compile(SHORT_TEXT_PATTERN)
FIELDS = tuple(HEADERS)  # column order of the households row this module writes


def _normal_header(text: str) -> str:
    return re.sub(r"[\s_\-]", "", text.strip().lstrip("\ufeff")).lower()


@dataclass(frozen=True)
class Register:
    """The columns of one kind of register the reading below understands: field -> (Chinese
    label, accepted headers), and the key column every file of it must have. Households are
    :data:`HOUSEHOLDS`; people and org units are in ``gridsync/org_import.py``. Reading a file,
    mapping its headers, numbering its rows and refusing a bad file are the same for all."""

    fields: dict[str, tuple[str, tuple[str, ...]]]
    key: str
    # Fields whose cells may be Excel dates and times (read as ISO 8601 text, without an
    # offset: the hotline's 受理时间); anywhere else a date cell is an error of its row (Excel
    # turned the text into a date).
    times: frozenset[str] = frozenset()

    @property
    def index(self) -> dict[str, str]:
        """Normalised header -> field."""
        return {_normal_header(h): f for f, (_, hs) in self.fields.items() for h in hs}

    def label(self, name: str) -> str:
        return self.fields[name][0]


HOUSEHOLDS = Register(HEADERS, key="external_id")


def household_id_for(external_id: str) -> str:
    """The id of a household first imported with this external id (stable across imports)."""
    return "hh-" + hashlib.sha256(external_id.encode()).hexdigest()[:24]


# -- reading ----------------------------------------------------------------------------------

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Bounds of one import file, each checked before the work it bounds: the file's size
    before it is read, the XLSX's unpacked size (as its zip directory declares it; a part that
    inflates past its declared size fails its CRC) before any XML is parsed, and the rows as
    they are read. A district register (the demo district has 300,000 households) fits."""

    max_file_bytes: int = 200 * MIB
    max_rows: int = 500_000
    max_unpacked_bytes: int = 512 * MIB


LIMITS = Limits()


def cell_error(
    errors: list[RowError],
    number: int,
    column: str,
    code: str,
    message: str,
    register: Register = HOUSEHOLDS,
) -> None:
    """Note the error of one field of a row: its message names the row and the column's label."""
    errors.append(
        RowError(
            row=number,
            column=column,
            code=code,
            message=f"第{number}行 {register.label(column)}: {message}",
        )
    )


@dataclass
class Sheet:
    """A parsed file: the fields its columns map to, its data rows as cell texts, and the rows
    that could not be read (``errors``: their cells are not in ``rows``)."""

    source: str
    columns: dict[int, str]  # column index -> field
    ignored: list[str]  # headers that map to no field
    rows: list[tuple[int, dict[str, str]]]  # (spreadsheet row number, field -> text)
    errors: list[RowError] = field(default_factory=list)


@dataclass(frozen=True)
class _BadCell:
    """A cell whose value cannot be taken as text (a problem of its row, not of the file)."""

    code: str
    reason: str
    value: Any = None  # a date cell's date: a column that takes times reads it (Register.times)


_NO_CACHED_VALUE = _BadCell(
    "formula_without_value",
    "公式没有计算结果（文件由程序写出、未经 Excel 计算；请在 Excel 中打开并保存，或粘贴为数值）",
)
# Headers of row-number columns that spreadsheets carry: ignored without complaint.
ROW_NUMBER_HEADERS = frozenset({"序号", "行号", "no", "no.", "#"})


def _cell_text(value: Any) -> str:
    if value is None or isinstance(value, _BadCell):
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _too_large(name: str, what: str, size: int, limit: int, code: str) -> Invalid:
    return Invalid(f"{name}: {what} {size / MIB:.1f} MiB，超过上限 {limit / MIB:g} MiB", code=code)


def _too_many_rows(name: str, limits: Limits) -> Invalid:
    return Invalid(
        f"{name}: 数据行超过上限 {limits.max_rows} 行（请按街道或社区分成几个文件导入）",
        code="too_many_rows",
    )


_ASCII = bytes(range(128))


def _high_bytes(data: bytes) -> int:
    return len(data.translate(None, _ASCII))


def _decode_csv(raw: bytes, name: str) -> str:
    """UTF-8 (with or without Excel's BOM), else GB18030. A file that is UTF-8 but for a bad
    byte is refused rather than read as GB18030, which can decode it to other characters
    without an error: it is taken for UTF-8 when, read as UTF-8, more than half of its non-ASCII
    bytes form valid characters (of GB18030 text read as UTF-8, 1-40% do in our samples; random
    registers of 2 to 100 rows with Chinese headers: none of 10,000 went past half)."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        utf8_error = exc
    guess = raw.decode("utf-8", errors="replace")
    valid = _high_bytes(guess.encode("utf-8")) - 3 * guess.count("\ufffd")
    if raw.startswith(codecs.BOM_UTF8) or 2 * valid > _high_bytes(raw):
        position, encoding = utf8_error.start, "UTF-8"
    else:
        try:
            return raw.decode("gb18030")
        except UnicodeDecodeError as exc:
            position, encoding = exc.start, "GB18030"
    line = raw.count(b"\n", 0, position) + 1
    raise Invalid(
        f"{name}: 第{line}行有无法识别的字节（按 {encoding} 读取；文件应为 UTF-8 或 GB18030 "
        "编码），未写入任何数据",
        code="bad_encoding",
    )


def _read_csv(source: Path | bytes, name: str, limits: Limits) -> list[list[Any]]:
    text = _decode_csv(source.read_bytes() if isinstance(source, Path) else source, name)
    reader = csv.reader(io.StringIO(text, newline=""))
    table: list[list[Any]] = []
    try:
        for cells in reader:
            if len(table) > limits.max_rows:
                raise _too_many_rows(name, limits)
            table.append(cells)
    except csv.Error as exc:
        raise Invalid(
            f"{name}: 第{reader.line_num}行无法按 CSV 读取（{exc}）", code="bad_file"
        ) from exc
    return table


_XML_MAIN = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_FORMULA_TAG = re.compile(rb"<(?:[A-Za-z_][\w.\-]*:)?f[\s/>]")


def _has_formula(source: IO[bytes]) -> bool:
    """Whether the sheet's XML holds any formula element: a byte search (a second or two for
    a district register) that spares sheets without formulas the slower XML scan."""
    tail = b""
    while chunk := source.read(1 << 20):
        if _FORMULA_TAG.search(tail + chunk):
            return True
        tail = chunk[-64:]
    return False


def _formulas_without_value(source: IO[bytes], name: str, limits: Limits) -> set[tuple[int, int]]:
    """(row, column) of the formula cells that carry no cached value, read from the sheet's XML:
    openpyxl reads both "no cached value" and a cached empty text as None, and only the first
    is an error. A value is cached when ``<v>`` has text, or the cell is typed as a text result
    (``t="str"``: Excel and LibreOffice write ``=""`` so, with an empty ``<v>``); scripts write
    no ``<v>`` or an empty one (openpyxl: ``<v />``). Refuses a DTD (an entity expansion bomb),
    which a worksheet never needs, and stops at the row bound."""
    from defusedxml.ElementTree import iterparse

    missing: set[tuple[int, int]] = set()
    rows = row = 0
    parent = None
    for event, element in iterparse(source, events=("start", "end"), forbid_dtd=True):
        if event == "start":
            if element.tag == _XML_MAIN + "sheetData":
                parent = element
            continue
        if element.tag != _XML_MAIN + "row":
            continue
        rows += 1
        row = int(element.get("r") or row + 1)
        if rows > limits.max_rows + 1 or row > limits.max_rows + 1:
            raise _too_many_rows(name, limits)
        column = 0
        for cell in element.iter(_XML_MAIN + "c"):
            ref = cell.get("r")
            column = coordinate_to_tuple(ref)[1] if ref else column + 1
            if cell.find(_XML_MAIN + "f") is None:
                continue
            cached = cell.find(_XML_MAIN + "v")
            if (cached is None or not cached.text) and cell.get("t") != "str":
                missing.add((row, column))
        if parent is not None:
            parent.clear()  # rows already read: keep memory flat on a large sheet
    return missing


def _opened(source: Path | bytes) -> IO[bytes]:
    return source.open("rb") if isinstance(source, Path) else io.BytesIO(source)


def _read_xlsx(source: Path | bytes, name: str, limits: Limits) -> list[list[Any]]:
    """The first worksheet's rows as values: cached values of formulas, :class:`_BadCell` for
    a formula without one, an error value (``#N/A``) or a date (Excel turns ``3-1`` into a
    date: the text is gone). Anything the file's structure breaks is ``bad_file``."""
    import openpyxl

    try:
        # openpyxl is given our open file: a workbook it fails to read is closed all the same
        with _opened(source) as handle, zipfile.ZipFile(handle) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
            if unpacked > limits.max_unpacked_bytes:
                raise _too_large(
                    name,
                    "解压后大小",
                    unpacked,
                    limits.max_unpacked_bytes,
                    "unpacked_too_large",
                )
            with warnings.catch_warnings():
                # openpyxl warns of what it drops (data validation, styles): not our concern
                warnings.simplefilter("ignore")
                book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
                try:
                    if not book.worksheets:
                        raise Invalid(f"{name}: 文件中没有工作表", code="bad_file")
                    sheet = book.worksheets[0]
                    sheet.reset_dimensions()  # pad rows by their cells, not a claimed size
                    missing: set[tuple[int, int]] = set()
                    # the sheet's part in the archive: openpyxl (and its stubs) name it only
                    # privately, on the read-only sheet it hands out here
                    part: str = sheet._worksheet_path  # type: ignore[attr-defined]
                    with archive.open(part) as xml:
                        formulas = _has_formula(xml)
                    if formulas:
                        with archive.open(part) as xml:
                            missing = _formulas_without_value(xml, name, limits)
                    return _sheet_values(sheet, missing, name, limits)
                finally:
                    book.close()
    except Invalid:
        raise
    except Exception as exc:  # whatever a broken or hostile file makes a parser raise
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise Invalid(f"{name}: 不是有效的 XLSX 文件（{detail}）", code="bad_file") from exc


def _sheet_values(
    sheet: Any, missing: set[tuple[int, int]], name: str, limits: Limits
) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for row in sheet.iter_rows():
        cells = [c for c in row if getattr(c, "row", None) is not None]
        if cells:  # read-only sheets skip empty rows: pad so numbering stays true
            if cells[0].row > limits.max_rows + 1:  # checked before padding up to it
                raise _too_many_rows(name, limits)
            rows.extend([] for _ in range(cells[0].row - 1 - len(rows)))
        if len(rows) > limits.max_rows:
            raise _too_many_rows(name, limits)
        values: list[Any] = []
        for c in row:
            value = c.value
            if getattr(c, "row", None) is None:
                pass
            elif (c.row, c.column) in missing:
                value = _NO_CACHED_VALUE
            elif c.data_type == "e":
                value = _BadCell("cell_error", f"单元格是错误值 {value}")
            elif isinstance(value, (datetime, date, time, timedelta)):
                value = _BadCell(
                    "date_cell",
                    f"单元格是日期或时间（{value}），原来的文字已被 Excel 改掉；"
                    "请把该列设为文本格式后重新填写",
                    value,
                )
            values.append(value)
        rows.append(values)
    return rows


def read_file(
    path: str | Path,
    limits: Limits = LIMITS,
    *,
    ignore_unknown_columns: bool = False,
    register: Register = HOUSEHOLDS,
) -> Sheet:
    """Parse a CSV (UTF-8 with or without BOM, or GB18030) or XLSX file of ``register``.

    File-level problems raise :class:`Invalid` with a code; a row that cannot be read whole
    (a CSV row with more or fewer cells than the header, a formula without a value, an error or
    date cell) is an error of that row in ``Sheet.errors``. A column whose header is unknown,
    or that has no header but holds data, is refused (``unknown_column``) unless
    ``ignore_unknown_columns``: data the user meant to import must not be dropped silently."""
    path = Path(path)
    if not path.is_file():
        raise Invalid(f"找不到文件 {path}", code="file_not_found")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise _too_large(path.name, "文件大小", size, limits.max_file_bytes, "file_too_large")
    return _read_sheet(path, path.name, limits, ignore_unknown_columns, register)


def read_upload(
    data: bytes,
    name: str,
    limits: Limits = LIMITS,
    *,
    ignore_unknown_columns: bool = False,
    register: Register = HOUSEHOLDS,
) -> Sheet:
    """:func:`read_file` of a file's bytes (an upload to the admin API); ``name``'s suffix
    (``.csv``, ``.xlsx``) says how to read it."""
    if len(data) > limits.max_file_bytes:
        raise _too_large(name, "文件大小", len(data), limits.max_file_bytes, "file_too_large")
    return _read_sheet(data, name, limits, ignore_unknown_columns, register)


def _read_sheet(
    source: Path | bytes,
    name: str,
    limits: Limits,
    ignore_unknown_columns: bool,
    register: Register,
) -> Sheet:
    table = _read_table(source, name, limits)
    exact_width = Path(name).suffix.lower() == ".csv"  # XLSX rows end at their last filled cell
    columns, ignored, unknown = _header_columns(name, table[0], register)
    unnamed = _unnamed_columns(table, exact_width)
    unknown += [f"第{i + 1}列（没有表头）" for i in unnamed]
    ignored += [f"第{i + 1}列（没有表头）" for i in unnamed]
    if unknown and not ignore_unknown_columns:
        raise Invalid(
            f"{name}: 无法识别的列 {'、'.join(unknown[:10])}"
            f"{' 等' if len(unknown) > 10 else ''}：改为可识别的列名（见 --help）、删去该列，"
            "或确认忽略（--ignore-unknown-columns）",
            code="unknown_column",
        )
    if register.times:
        _dates_as_text(table, {i for i, field in columns.items() if field in register.times})
    rows, errors = _data_rows(table, columns, exact_width, register)
    if not rows and not errors:
        raise Invalid(f"{name}: 只有表头，没有数据行", code="no_rows")
    return Sheet(name, columns, ignored, rows, errors)


def _dates_as_text(table: list[list[Any]], indexes: set[int]) -> None:
    """Date cells of the columns that take times, as ISO 8601 text (in place)."""
    for cells in table[1:]:
        for i in indexes:
            if i < len(cells):
                cell = cells[i]
                if isinstance(cell, _BadCell) and isinstance(cell.value, (datetime, date)):
                    cells[i] = cell.value.isoformat()


def _read_table(source: Path | bytes, name: str, limits: Limits) -> list[list[Any]]:
    """The file's cells, row 1 first, within ``limits``; an unknown kind of file, or one
    without a header row, is refused."""
    suffix = Path(name).suffix.lower()
    if suffix == ".csv":
        table = _read_csv(source, name, limits)
    elif suffix in (".xlsx", ".xlsm"):
        table = _read_xlsx(source, name, limits)
    else:
        raise Invalid(f"{name}: 只支持 .csv 和 .xlsx 文件", code="bad_file_type")
    if not table or not any(_cell_text(v) for v in table[0]):
        raise Invalid(f"{name}: 第1行应为表头（列名）", code="no_header")
    if len(table) - 1 > limits.max_rows:
        raise _too_many_rows(name, limits)
    return table


def _header_columns(
    source: str, header: list[Any], register: Register = HOUSEHOLDS
) -> tuple[dict[int, str], list[str], list[str]]:
    """(field of each known column by index, headers ignored, headers unknown). A field twice,
    or no key column (外部编号 of households), is refused; a row-number column (序号) is
    ignored, not unknown."""
    columns: dict[int, str] = {}
    ignored: list[str] = []
    unknown: list[str] = []
    index = register.index
    for i, cell in enumerate(header):
        text = _cell_text(cell)
        name = index.get(_normal_header(text))
        if name is None:
            if text:
                ignored.append(text)
                if _normal_header(text) not in ROW_NUMBER_HEADERS:
                    unknown.append(f"“{text[:40]}”")
        elif name in columns.values():
            raise Invalid(
                f"{source}: 列“{register.label(name)}”({name}) 出现了不止一次",
                code="duplicate_column",
            )
        else:
            columns[i] = name
    if register.key not in columns.values():
        raise Invalid(
            f"{source}: 缺少必需的列“{register.label(register.key)}”({register.key})",
            code="missing_column",
        )
    return columns, ignored, unknown


def _unnamed_columns(table: list[list[Any]], exact_width: bool) -> list[int]:
    """Indexes of the columns holding data under no header (or beyond the header's last
    column): data the user meant to import."""
    header = table[0]
    width = len(header)
    return sorted(
        {
            i
            for cells in table[1:]
            for i, v in enumerate(cells)
            if (i >= width or not _cell_text(header[i]))
            and _cell_text(v)
            and not (exact_width and i >= width)  # a CSV row that long is a row_width error
        }
    )


def _data_rows(
    table: list[list[Any]], columns: dict[int, str], exact_width: bool, register: Register
) -> tuple[list[tuple[int, dict[str, str]]], list[RowError]]:
    """(row number, text of each known column) of every row read whole, and an error for each
    row that could not be (a CSV row of another width than the header, a bad cell). Blank rows
    are skipped: they hold nothing to lose."""
    width = len(table[0])
    rows: list[tuple[int, dict[str, str]]] = []
    errors: list[RowError] = []
    for number, cells in enumerate(table[1:], start=2):
        if not any(_cell_text(v) or isinstance(v, _BadCell) for v in cells):
            continue
        if exact_width and len(cells) != width:
            errors.append(
                RowError(
                    row=number,
                    column=None,
                    code="row_width",
                    message=f"第{number}行: 有 {len(cells)} 个单元格，而表头有 {width} 列"
                    "（行被截断或多了分隔符），整行未导入",
                )
            )
            continue
        bad = [
            (name, cells[i])
            for i, name in columns.items()
            if i < len(cells) and isinstance(cells[i], _BadCell)
        ]
        for name, cell in bad:
            cell_error(errors, number, name, cell.code, cell.reason, register)
        if bad:
            continue
        values = {
            name: _cell_text(cells[i]) if i < len(cells) else "" for i, name in columns.items()
        }
        if any(values.values()):
            rows.append((number, values))
    return rows, errors


# -- validating and planning ------------------------------------------------------------------


class Preview(msgspec.Struct, kw_only=True):
    """What an import does (or would do): counts, and every bad row."""

    source: str
    rows: int
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    assigned: int = 0  # households given a (new) responsible member
    over_cap: int = 0  # of them, beyond the member's cap (only with override_cap)
    ignored_columns: list[str] = msgspec.field(default_factory=list)
    errors: list[RowError] = msgspec.field(default_factory=list)


class ImportRejected(Invalid):
    code = "import_rejected"


@dataclass
class _Plan:
    preview: Preview
    new: list[dict[str, Any]] = field(default_factory=list)
    changed: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    # (household id, previous member, member, load after, cap, over the cap) of every
    # assignment, in row order
    assignments: list[tuple[str, str | None, str, int, int, bool]] = field(default_factory=list)


_EXISTING_COLS = ("external_id", *HOUSEHOLD_COLUMNS)


class _Checker:
    """Row validation against the database, with per-import caches of grids and members."""

    def __init__(self, db: sqlite_utils.Database):
        self.db = db
        self.units: dict[str, str | None] = {}
        self.members: dict[str, coverage.Standing] = {}

    def unit_kind(self, unit_id: str) -> str | None:
        if unit_id not in self.units:
            row = self.db.execute("SELECT kind FROM org_units WHERE id = ?", [unit_id]).fetchone()
            self.units[unit_id] = row[0] if row else None
        return self.units[unit_id]

    def member(self, person_id: str) -> coverage.Standing:
        """The person as a responsible member (the one rule, :func:`coverage.standing`)."""
        found = self.members.get(person_id)
        if found is None:
            found = self.members[person_id] = coverage.standing(self.db, person_id)
        return found


def _row_values(number: int, raw: dict[str, str], errors: list[RowError]) -> dict[str, Any]:
    """Typed field values of one row (only the columns the file has); appends errors."""

    bad = partial(cell_error, errors, number)

    values: dict[str, Any] = {}
    for name, text in raw.items():
        if name in MAX_LENGTH and len(text) > MAX_LENGTH[name]:
            bad(name, "too_long", f"内容过长：{len(text)} 字（最多 {MAX_LENGTH[name]} 字）")
            values[name] = text  # the row is refused; the text only spares a second error
            continue
        if TEXT_RULE.get(name, ONE_LINE).search(text) is None:
            bad(name, "bad_text", "含有换行或不可见的控制字符（备注可以换行，其他列不可以）")
            values[name] = text
            continue
        shown = text if len(text) <= 40 else text[:40] + "…"
        if name in ("external_id", "grid_id", "building", "unit", "room", "head_name", "notes"):
            values[name] = text
        elif name == "phone":
            if text and not PHONE.fullmatch(text):
                bad(name, "bad_phone", f"电话号码格式不对：“{shown}”")
            values[name] = text
        elif name == "size":
            if not text:
                values[name] = 1
            elif text.isascii() and text.isdigit() and 0 < int(text) <= MAX_SIZE:
                values[name] = int(text)
            else:
                bad(name, "bad_size", f"人口数应为 1 到 {MAX_SIZE} 的整数，而不是“{shown}”")
        elif name == "tags":
            tags = set()
            for piece in TAG_SEPARATORS.split(text):
                tag = piece.strip()
                if not tag:
                    continue
                if len(tag) > MAX_TAG_LENGTH:
                    bad(name, "bad_tag", f"标签“{tag[:10]}…”过长（最多 {MAX_TAG_LENGTH} 字）")
                tags.add(TAG_ALIASES.get(tag, tag))
            if len(tags) > MAX_TAGS:
                bad(name, "too_many_tags", f"标签有 {len(tags)} 个（最多 {MAX_TAGS} 个）")
            values[name] = msgspec.json.encode(sorted(tags)).decode()
        elif name == "status":
            status = STATUS_ALIASES.get(text.lower())
            if status is None:
                bad(
                    name,
                    "bad_status",
                    f"未知状态“{shown}”（应为 在住/active、迁出/moved_out、归档/archived）",
                )
            values[name] = status
        elif name == "responsible_member_id":
            values[name] = text or None
    return values


def _same(name: str, old: Any, new: Any) -> bool:
    if name == "tags":  # compare as sets: another writer may encode the JSON differently
        return sorted(set(msgspec.json.decode(old))) == msgspec.json.decode(new)
    return old == new


def _plan_assignments(
    db: sqlite_utils.Database,
    settings: Settings,
    plan: _Plan,
    rows: list[tuple[int, str, dict[str, Any] | None, dict[str, Any]]],
    override_cap: bool,
) -> None:
    """Check the members' loads after the import against their caps and list the assignments.

    ``rows`` holds (row number, household id, current row or None, imported values) of the
    valid rows. Loads count active households, as coverage does; a row may take a household
    from one member (it moves, or leaves ``active``) and give it to another."""
    errors = plan.preview.errors
    changes: list[tuple[int, str, str | None, str | None, bool, str | None]] = []
    for number, household_id, current, values in rows:
        current = current or {}
        before: str | None = current.get("responsible_member_id")
        after: str | None = values.get("responsible_member_id", before)
        was_active = current.get("status") == "active"
        active = values.get("status", current.get("status", "active")) == "active"
        grid: str | None = values.get("grid_id") or current.get("grid_id")
        if (before, was_active) != (after, active):
            changes.append(
                (
                    number,
                    household_id,
                    before if was_active else None,
                    after if active else None,
                    before != after,
                    grid,
                )
            )
    before_of = {
        household_id: (current or {}).get("responsible_member_id")
        for _, household_id, current, _ in rows
    }
    members = {m for change in changes for m in change[2:4] if m}
    if not members:
        return
    loads: dict[str, int] = dict.fromkeys(members, 0)
    loads.update(
        db.execute(
            "SELECT responsible_member_id, count(*) FROM households WHERE status = 'active' AND "
            "responsible_member_id IN (SELECT value FROM json_each(?)) GROUP BY 1",
            [msgspec.json.encode(sorted(members)).decode()],
        ).fetchall()
    )
    initial, final = dict(loads), dict(loads)
    for _, _, left, joined, _, _ in changes:
        if left:
            final[left] -= 1
        if joined:
            final[joined] += 1
    communities = dict(
        db.execute(
            "SELECT g.id, g.parent_id FROM org_units g JOIN org_units c ON c.id = g.parent_id "
            "WHERE g.kind = 'grid' AND c.kind = 'community'"
        ).fetchall()
    )
    caps: dict[str | None, int] = {}

    def cap_of(grid: str | None) -> int:
        community = communities.get(grid)
        if community not in caps:
            policy = (
                coverage.policy_for(db, settings, community)
                if community
                else coverage.default_policy(settings)
            )
            caps[community] = policy.max_households_per_member
        return caps[community]

    for _, _, left, _, _, _ in changes:  # the file is applied as a whole: departures first
        if left:
            loads[left] -= 1
    for number, household_id, _, joined, moved, grid in changes:
        if not joined:
            continue
        loads[joined] += 1
        cap = cap_of(grid)
        if loads[joined] > cap and final[joined] > initial[joined] and not override_cap:
            cell_error(
                errors,
                number,
                "responsible_member_id",
                "over_cap",
                f"党员“{joined}”导入后将负责 {final[joined]} 户，超过上限 {cap} 户"
                "（确需超出时使用 --override-cap，会记入分配日志）",
            )
        elif moved:
            over = loads[joined] > cap and final[joined] > initial[joined]
            plan.assignments.append(
                (household_id, before_of[household_id], joined, loads[joined], cap, over)
            )


def plan_import(
    db: sqlite_utils.Database,
    sheet: Sheet,
    settings: Settings | None = None,
    override_cap: bool = False,
    progress: Callable[[int], None] | None = None,
) -> _Plan:
    """Validate every row against the database and work out what would change. Writes nothing.

    ``settings`` gives the district's coverage defaults for the members' caps (default:
    :class:`Settings` defaults); ``override_cap`` lets members exceed them; ``progress`` is
    told of each row checked (the CLI's bar)."""
    rows = len(sheet.rows) + len({e.row for e in sheet.errors})
    plan = _Plan(Preview(source=sheet.source, rows=rows, ignored_columns=sheet.ignored))
    errors = plan.preview.errors
    errors.extend(sheet.errors)
    existing = _existing_households(db, sheet)
    checker = _Checker(db)
    first_row: dict[str, int] = {}
    valid: list[tuple[int, str, dict[str, Any] | None, dict[str, Any]]] = []
    for number, raw in sheet.rows:
        if progress is not None:
            progress(1)
        before = len(errors)
        values = _row_values(number, raw, errors)
        ext = values.get("external_id", "")
        current = existing.get(ext)
        _check_row(checker, number, values, current, first_row, errors)
        if len(errors) > before:
            continue
        valid.append((number, current["id"] if current else household_id_for(ext), current, values))
        _plan_row(plan, current, values)
    _plan_assignments(db, settings or Settings(), plan, valid, override_cap)
    plan.preview.new = len(plan.new)
    plan.preview.changed = len(plan.changed)
    plan.preview.assigned = len(plan.assignments)
    plan.preview.over_cap = sum(1 for *_, over in plan.assignments if over)
    errors.sort(key=lambda e: (e.row, FIELDS.index(e.column) if e.column else -1))
    return plan


def _existing_households(db: sqlite_utils.Database, sheet: Sheet) -> dict[str, dict[str, Any]]:
    """The households the file names, by external_id (one query)."""
    ext_ids = [raw.get("external_id", "") for _, raw in sheet.rows]
    return {
        row[0]: dict(zip(_EXISTING_COLS, row))
        for row in db.execute(
            f"SELECT {', '.join(_EXISTING_COLS)} FROM households "
            "WHERE external_id IN (SELECT value FROM json_each(?))",
            [msgspec.json.encode(ext_ids).decode()],
        ).fetchall()
    }


def _check_row(
    checker: _Checker,
    number: int,
    values: dict[str, Any],
    current: dict[str, Any] | None,
    first_row: dict[str, int],
    errors: list[RowError],
) -> None:
    """A row's checks against the file (external_id present and not repeated: ``first_row``
    notes where each was first) and the database (fields a new household needs, the grid, the
    responsible member); appends errors."""

    bad = partial(cell_error, errors, number)

    ext = values.get("external_id", "")
    if not ext:
        bad("external_id", "missing_field", "外部编号不能为空")
    elif ext in first_row:
        bad("external_id", "duplicate_external_id", f"外部编号“{ext}”与第{first_row[ext]}行重复")
    else:
        first_row[ext] = number
    for name in REQUIRED_FOR_NEW:
        if current is None and not values.get(name):
            bad(name, "missing_field", f"新住户必须填写{HEADERS[name][0]}")
        elif current is not None and name in values and not values[name]:
            bad(
                name,
                "missing_field",
                f"{HEADERS[name][0]}不能为空（不改这一项时可留空整列或删去此列）",
            )
    grid = values.get("grid_id") or (current or {}).get("grid_id")
    if values.get("grid_id"):
        kind = checker.unit_kind(values["grid_id"])
        if kind is None:
            bad("grid_id", "unknown_grid", f"网格“{values['grid_id']}”不存在")
            grid = None
        elif kind != "grid":
            bad("grid_id", "not_a_grid", f"“{values['grid_id']}”是{kind}，不是网格")
            grid = None
    member = values.get("responsible_member_id")
    if member:
        standing = checker.member(member)
        problem = standing.problem
        if problem == "unknown_member":
            bad("responsible_member_id", problem, f"没有编号为“{member}”的人员")
        elif problem == "instructor_not_responsible":
            bad(
                "responsible_member_id",
                problem,
                f"“{member}”是党建指导员，不能作为联系户的责任党员",
            )
        elif problem == "not_a_member":
            bad("responsible_member_id", problem, f"“{member}”不是党员（角色不含 member）")
        elif problem == "member_inactive":
            bad("responsible_member_id", problem, f"党员“{member}”已停用")
        elif grid and not standing.serves(grid):
            bad("responsible_member_id", "member_out_of_grid", f"党员“{member}”不负责网格“{grid}”")


def _plan_row(plan: _Plan, current: dict[str, Any] | None, values: dict[str, Any]) -> None:
    """A valid row in the plan: a new household, the fields that change, or unchanged."""
    if current is None:
        plan.new.append(values)
        return
    diff = {k: v for k, v in values.items() if k != "external_id" and not _same(k, current[k], v)}
    if diff:
        plan.changed.append((current["id"], current, diff))
    else:
        plan.preview.unchanged += 1


def preview(
    db: sqlite_utils.Database,
    sheet: Sheet,
    settings: Settings | None = None,
    override_cap: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Preview:
    """Dry run: the counts and errors an import of ``sheet`` would have."""
    return plan_import(db, sheet, settings, override_cap, progress).preview


def _write_changes(
    db: sqlite_utils.Database,
    changed: list[tuple[str, dict[str, Any], dict[str, Any]]],
    first_seq: int,
    now: str,
    server: ServerClock,
    actor: Actor,
) -> None:
    """Write the changed households through the merge's own writer (:func:`merge.overwrite`,
    :func:`merge.save`): ``field_hlc`` gets the stamps the merge reads (a server HLC, the change
    seq, the importer), and a household moved to another grid takes its visits along, as a
    phone's edit would. Numbered from ``first_seq`` in row order."""
    if not changed:
        return
    states = {
        row[0]: merge.state_from_row(row)
        for row in db.execute(
            f"SELECT {merge.ROW_SELECT} FROM households WHERE id IN "
            "(SELECT value FROM json_each(?))",
            [msgspec.json.encode([household_id for household_id, _, _ in changed]).decode()],
        ).fetchall()
    }
    staying: list[tuple[merge.HouseholdState, set[str]]] = []
    for n, (household_id, _current, diff) in enumerate(changed):
        state, seq = states[household_id], first_seq + n
        values = {k: msgspec.json.decode(v) if k == "tags" else v for k, v in diff.items()}
        merge.overwrite(state, values, Stamp(server.tick(), seq, actor.device_id, actor.person_id))
        if state.values["grid_id"] != state.loaded_grid:
            merge.save(db, state, seq, now)
        else:
            state.seq = seq
            staying.append((state, state.changed))
    merge.save_many(db, staying, now)
    server.save()


def import_households(
    db: sqlite_utils.Database,
    sheet: Sheet,
    actor: Actor,
    clock: Clock = SYSTEM_CLOCK,
    settings: Settings | None = None,
    override_cap: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Preview:
    """Apply an import in the caller's write transaction; raises ImportRejected (and writes
    nothing) when any row is bad."""
    plan = plan_import(db, sheet, settings, override_cap, progress)
    result = plan.preview
    if result.errors:
        raise ImportRejected(
            f"{sheet.source}: {len({e.row for e in result.errors})} 行有错误，未写入任何数据",
            errors=[msgspec.structs.asdict(e) for e in result.errors],
        )
    now_ms = clock.now_ms()
    now = iso_ms(now_ms)
    seq = next_seq(db, len(plan.new) + len(plan.changed)) if plan.new or plan.changed else 0
    for values in plan.new:
        row = {
            "size": 1,
            "tags": "[]",
            "status": "active",
            **values,
            "id": household_id_for(values["external_id"]),
            "seq": seq,
            "created_at": now,
            "updated_at": now,
        }
        seq += 1
        names = list(row)
        db.execute(
            f"INSERT INTO households ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [row[n] for n in names],
        )
    _write_changes(db, plan.changed, seq, now, ServerClock(db, now_ms), actor)
    for household_id, previous, member, load, cap, over in plan.assignments:
        db.execute(
            "INSERT INTO assignment_log (at, household_id, previous_member_id, member_id, "
            "person_id, device_id, override_cap, load_after, cap, reason) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            [
                now,
                household_id,
                previous,
                member,
                actor.person_id,
                actor.device_id,
                int(over),
                load,
                cap,
                f"import {sheet.source}",
            ],
        )
    detail = {
        "rows": result.rows,
        "new": result.new,
        "changed": result.changed,
        "unchanged": result.unchanged,
        "assigned": result.assigned,
    }
    if result.over_cap:
        detail["override_cap"] = result.over_cap
    audit.record(db, actor, "households.import", target=sheet.source, detail=detail, clock=clock)
    return result

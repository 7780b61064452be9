"""One text rule for what people type (issue 12's review), on every way in: a short text (a
name, an address part, a phone, a category, a tag) is one line without control characters; a
long text (a note, a description, a reason) may hold tabs and line breaks and no other control.

The rule is two patterns in ``gridsync/models/core.py``; the wire types carry them (REST bodies
and push data alike), the domain checks the CLI's values against the same types, and the
importer reads them from ``HouseholdFields``. A walk over every Struct a client sends fails on
a text field without a pattern, so that a new field is classified on purpose.
"""

from __future__ import annotations

import re

import msgspec
import pytest
from msgspec import inspect as mi

from gridsync import importer
from gridsync.clock import uuid7
from gridsync.models.core import ID_PATTERN, LONG_TEXT_PATTERN, SHORT_TEXT_PATTERN
from tests.conftest import bearer
from tests.sync_helpers import Phone
from tests.test_bounds import _request_roots

# Text fields without the text rule, and why. Ids of existing records are looked up (a wrong one
# is not_found); the layout of the others is checked by the code that reads them.
NO_TEXT_RULE = {
    ("Mutation", "mid"): "a UUID; only compared",
    ("Mutation", "hlc"): "push matches the whole HLC layout itself (HLC_PATTERN)",
    ("Mutation", "op"): "looked up in the op registry (unknown_op)",
    ("Mutation", "id"): "looked up; a new record's id is matched against ID_PATTERN by push",
    ("Mutation", "fields{key}"): "a field name: known ones only (HouseholdFields)",
    ("PushRequest", "device_id"): "must equal the token's device (403)",
    ("PushRequest", "cursor"): "opaque base64url, decoded or reset",
    ("ConsoleLinkRequest", "next"): "a console path without spaces (NextPath), checked again by "
    "signin.safe_next",
    ("Cursor", "epoch"): "compared with the database's epoch",
    ("Cursor", "rm"): "compared with ids",
    ("Cursor", "exhausted[]"): "compared with change types",
    ("VisitCreate", "household_id"): "looked up",
    ("VisitCreate", "household_ids[]"): "each looked up (the whole group visit is refused)",
    ("VisitCreate", "at"): "read by clock.device_time_ms (invalid_time)",
    ("VisitCreate", "kinds[]"): "one of the configured service kinds",
    ("HouseholdCreate", "grid_id"): "looked up",
    ("HouseholdFields", "grid_id"): "looked up",
    ("WhistleRaise", "grid_id"): "looked up",
    ("WhistleRaise", "household_id"): "looked up",
    ("WhistleRaise", "raised_at"): "read by clock.device_time_ms (invalid_time)",
    ("WhistleAct", "department_id"): "looked up",
    ("WhistleAct", "at"): "read by clock.device_time_ms (invalid_time)",
    ("OrderCreate", "received_at"): "read by clock.device_time_ms (invalid_time)",
    ("SuperviseRequest", "due_at"): "read by clock.device_time_ms (invalid_time)",
    ("AssignRequest", "household_id"): "looked up",
    ("AssignRequest", "member_id"): "looked up",
    ("SuggestionPick", "household_id"): "looked up",
    ("SuggestionPick", "member_id"): "looked up",
    ("NoticeRead", "notice_id"): "compared with the mutation's id, which is looked up",
}
RULES = {SHORT_TEXT_PATTERN, LONG_TEXT_PATTERN, ID_PATTERN}


def _text_fields() -> dict[tuple[str, str], str | None]:
    """(Struct, field) -> the pattern of every str a client sends, lists and dict keys too."""
    found: dict[tuple[str, str], str | None] = {}
    seen: set[type] = set()
    stack = list(_request_roots())

    def visit(t: mi.Type, where: str, owner: str) -> None:
        if isinstance(t, mi.StructType):
            stack.append(t.cls)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                visit(member, where, owner)
        elif isinstance(t, mi.Metadata):
            visit(t.type, where, owner)
        elif isinstance(t, mi.StrType):
            found[(owner, where)] = t.pattern
        elif isinstance(t, mi.DictType):
            visit(t.key_type, f"{where}{{key}}", owner)
            visit(t.value_type, f"{where}{{}}", owner)
        elif isinstance(t, (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType)):
            visit(t.item_type, f"{where}[]", owner)

    while stack:
        cls = stack.pop()
        if cls not in seen:
            seen.add(cls)
            for f in mi.type_info(cls).fields:
                visit(f.type, f.name, cls.__name__)
    return found


def test_every_text_a_client_sends_follows_the_text_rule():
    fields = _text_fields()
    missing = sorted(
        f"{s}.{f}" for (s, f), p in fields.items() if p not in RULES and (s, f) not in NO_TEXT_RULE
    )
    assert missing == [], "text fields without the text rule (or a reason in NO_TEXT_RULE):\n" + (
        "\n".join(missing)
    )
    stale = sorted(f"{s}.{f}" for s, f in NO_TEXT_RULE if (s, f) not in fields)
    assert stale == [], f"NO_TEXT_RULE names fields that are gone: {stale}"


@pytest.mark.parametrize(
    "text, short, long",
    [
        ("张伟 3号楼-1单元 (东)", True, True),
        ("🙂 O'Brien", True, True),
        ("第一行\n第二行", False, True),
        ("列\t值", False, True),
        ("Windows 换行\r\n", False, True),
        ("末尾换行\n", False, True),
        ("\x00", False, False),
        ("ESC \x1b[2J", False, False),
        ("BEL \x07", False, False),
        ("DEL \x7f", False, False),
        ("C1 \x85", False, False),
        ("vertical tab \x0b", False, False),
    ],
)
def test_the_two_patterns(text, short, long):
    assert (re.search(SHORT_TEXT_PATTERN, text) is not None) is short
    assert (re.search(LONG_TEXT_PATTERN, text) is not None) is long


def test_push_refuses_control_characters_in_household_fields_alone(client, tiny):
    """Per mutation, as every bad ``data``: rejected/validation_error, the rest of the batch
    applies; a note may hold lines and tabs."""
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    new_id = uuid7()
    batch = [
        m1.mutation(
            "household.create", uuid7(), data={"grid_id": "g1", "head_name": "钱\x1b[2J多"}
        ),
        m1.mutation("household.create", uuid7(), data={"grid_id": "g1", "notes": "铃\x07"}),
        m1.mutation("household.update", "hh-g1-1", fields={"head_name": "张\n伟"}),
        m1.mutation("household.update", "hh-g1-1", fields={"phone": "138\x00"}),
        m1.mutation("household.update", "hh-g1-1", tags_add=["独居\x00"]),
        m1.visit("hh-g1-1", note="记录\x1b"),
        m1.mutation("whistle.raise", uuid7(), data={"category": "漏\x07水", "grid_id": "g1"}),
        m1.mutation(
            "household.create",
            new_id,
            data={"grid_id": "g1", "head_name": "钱多", "notes": "第一行\n\t第二行\r\n"},
        ),
        m1.mutation("household.update", "hh-g1-2", fields={"notes": "门铃坏了\n请敲门"}),
        m1.visit("hh-g1-1", note="上门\n老人安好"),
    ]
    r = m1.push(batch)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results[:7]] == ["rejected"] * 7
    assert [x["status"] in ("applied", "merged") for x in results[7:]] == [True] * 3, results
    assert {x["code"] for x in results[:7]} == {"validation_error"}
    households = {
        h["id"]: h
        for h in client.get(
            "/api/v1/households", headers=bearer(tiny.tokens["admin"]), params={"grid_id": "g1"}
        ).json()["items"]
    }
    assert households["hh-g1-1"]["head_name"] == "住户g11"  # nothing of the refused ones
    assert households[new_id]["notes"] == "第一行\n\t第二行\r\n"
    assert households["hh-g1-2"]["notes"] == "门铃坏了\n请敲门"


def test_rest_refuses_control_characters_in_case_texts(client, tiny):
    sec = bearer(tiny.tokens["sec"])
    for body in (
        {"category": "漏\x1b水", "grid_id": "g1"},
        {"category": "漏水", "grid_id": "g1", "location": "3号楼\n"},
        {"category": "漏水", "grid_id": "g1", "description": "\x00"},
    ):
        r = client.post("/api/v1/whistle/cases", headers=sec, json=body)
        assert (r.status_code, r.json()["code"]) == (400, "validation_error"), (body, r.text)
    ok = client.post(
        "/api/v1/whistle/cases",
        headers=sec,
        json={"category": "漏水", "grid_id": "g1", "description": "三楼漏水\n已关总闸"},
    )
    assert ok.status_code == 201, ok.text


def test_the_importer_applies_the_rule_of_each_field(tmp_path, store, tiny):
    """A note may hold a line break (Excel's Alt+Enter), a name may not: the importer takes
    each field's pattern from HouseholdFields, as a phone's push is checked."""
    path = tmp_path / "h.csv"
    rows = [
        "外部编号,网格,户主姓名,备注",
        'X1,g1,钱多,"第一行\n第二行"',
        'X2,g1,"孙\n少",',
        "X3,g1,李\x07四,",
    ]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    sheet = importer.read_file(str(path))
    result = store.read(importer.preview, sheet, None, False)
    assert sorted((e.row, e.column, e.code) for e in result.errors) == [
        (3, "head_name", "bad_text"),
        (4, "head_name", "bad_text"),
    ]
    assert msgspec.structs.asdict(result)["new"] == 1

"""No poison pill on the phone path (issue 12, SPEC 3.1): input that a careless spreadsheet, a
buggy phone build or a hostile member can produce ends as a coded 4xx for a bad envelope, or as a
``rejected`` result for the one mutation at fault, with nothing of it stored, the rest of the
batch applied and later batches unhindered. Each case here answered 500 (for every resend) or
was stored before.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from gridsync.clock import uuid7
from gridsync.models import MAX_TAGS
from gridsync.sync import merge
from gridsync.sync.hlc import format_hlc
from tests.conftest import bearer
from tests.sync_helpers import Phone

PUSH = "/api/v1/sync/push"
MSGPACK = {"Content-Type": "application/msgpack"}
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def m1(client, tiny) -> Phone:
    return Phone(client, tiny.tokens["m1"], tiny.devices["m1"])


def count(store, sql: str, params: list | None = None) -> int:
    return store.read(lambda db: db.execute(sql, params or []).fetchone()[0])


def results(r) -> list[tuple[str, str | None]]:
    assert r.status_code == 200, r.text
    return [(x["status"], x.get("code")) for x in r.json()["results"]]


def push_raw(m1: Phone, body: bytes, headers: dict[str, str]):
    return m1.client.post(PUSH, content=body, headers=m1.headers(**headers))


def envelope(m1: Phone, mutations: list[dict]) -> dict:
    return {"device_id": m1.device_id, "mutations": mutations}


# -- 1. times a phone sends -------------------------------------------------------------------

IMPOSSIBLE_TIMES = [
    "9999-12-31T23:59:59+00:00",  # overflowed when shown in China's zone (+08:00): a 500
    "9999-12-31T23:59:59-12:00",  # past year 9999 in UTC
    "0001-01-01T00:00:00+14:00",  # before year 1 in UTC
    "1969-12-31T23:59:59+00:00",  # before any phone clock
    "2026-11-20T09:30:00",  # no offset
    "2026-11-20T09:30:60+08:00",  # a leap second: Python has none
    "2026-11-20T09:30:00+23:00",  # no zone is 23 hours off
    "2026-11-20T24:00:00+08:00",  # the end of a day, as Python does not read it
    "2026-11-20 afternoon and a bit",
]
GOOD_TIMES = [
    "2026-11-20T09:30:00+14:00",  # Line Islands
    "2026-11-20T09:30:00-12:00",  # Baker Island
    "2026-11-20T09:30:00.123456789+08:00",  # nanoseconds: read to the microsecond
    "2026-11-20T01:30:00Z",
    "2026-11-20T09:30+08",  # an offset in hours, as ISO 8601 allows
]


@pytest.mark.parametrize("at", IMPOSSIBLE_TIMES)
def test_a_case_raised_at_an_impossible_time_is_rejected_alone(m1, store, at):
    raised = m1.mutation(
        "whistle.raise", uuid7(), data={"category": "噪音", "grid_id": "g1", "raised_at": at}
    )
    assert results(m1.push([raised, m1.visit("hh-g1-1")])) == [
        ("rejected", "invalid_time"),
        ("applied", None),
    ]
    assert count(store, "SELECT count(*) FROM whistle_cases") == 0
    assert count(store, "SELECT count(*) FROM outbox") == 0


@pytest.mark.parametrize("at", IMPOSSIBLE_TIMES)
def test_a_visit_or_action_at_an_impossible_time_is_rejected_alone(m1, store, at):
    case = m1.mutation("whistle.raise", uuid7(), data={"category": "噪音", "grid_id": "g1"})
    assert results(m1.push([case])) == [("applied", None)]
    history = count(store, "SELECT count(*) FROM whistle_history")
    act = m1.mutation("whistle.act", case["id"], data={"action": "comment", "at": at})
    visit = m1.visit("hh-g1-2", at=at)
    assert results(m1.push([act, visit, m1.visit("hh-g1-1")])) == [
        ("rejected", "invalid_time"),
        ("rejected", "invalid_time"),
        ("applied", None),
    ]
    assert count(store, "SELECT count(*) FROM whistle_history") == history
    assert count(store, "SELECT count(*) FROM visits WHERE household_id = 'hh-g1-2'") == 0


@pytest.mark.parametrize("at", GOOD_TIMES)
def test_real_zones_and_long_fractions_are_accepted(m1, store, at):
    case = m1.mutation(
        "whistle.raise", uuid7(), data={"category": "噪音", "grid_id": "g1", "raised_at": at}
    )
    act = m1.mutation("whistle.act", case["id"], data={"action": "comment", "at": at})
    assert results(m1.push([case, act, m1.visit("hh-g1-1", at=at)])) == [("applied", None)] * 3


def test_an_action_time_is_bounded_in_size(m1, store):
    """``WhistleAct.at`` took 4 MB: three pushes grew a case to 11.7 MB that every phone in the
    grid then pulled."""
    case = m1.mutation("whistle.raise", uuid7(), data={"category": "噪音", "grid_id": "g1"})
    act = m1.mutation("whistle.act", case["id"], data={"action": "comment", "at": "2" * 100_000})
    assert results(m1.push([case, act])) == [("applied", None), ("rejected", "validation_error")]
    assert count(store, "SELECT max(length(coalesce(device_at, ''))) FROM whistle_history") < 100


# -- 2. invalid UTF-8 inside one mutation ------------------------------------------------------


def test_invalid_utf8_in_one_mutations_msgpack_data_is_rejected_alone(m1, store):
    bad = m1.mutation("visit.create", uuid7())
    bad["data"] = msgspec.Raw(  # {"household_id": "hh-g1-1", "note": <0xff 0xfe>, ...}
        b"\x84\xachousehold_id\xa7hh-g1-1\xa2at\xb92026-11-20T09:30:00+08:00"
        b"\xa7channel\xa4door\xa4note\xa2\xff\xfe"
    )
    body = msgspec.msgpack.encode(envelope(m1, [bad, m1.visit("hh-g1-2")]))
    got = results(push_raw(m1, body, MSGPACK))
    assert got == [("rejected", "validation_error"), ("applied", None)]
    assert count(store, "SELECT count(*) FROM visits") == 1


def test_invalid_utf8_in_one_mutations_json_data_is_rejected_alone(m1, store):
    bad = m1.visit("hh-g1-1", note="NOTE")
    body = json.dumps(envelope(m1, [bad, m1.visit("hh-g1-2")])).encode()
    body = body.replace(b"NOTE", b"\xff\xfe")
    assert results(push_raw(m1, body, JSON)) == [
        ("rejected", "validation_error"),
        ("applied", None),
    ]


def test_invalid_utf8_in_a_mutations_own_field_is_rejected_alone(m1, store):
    """In ``fields`` (decoded with the envelope, not kept raw): the strict decode fails for the
    whole body, the outline finds the mutation at fault."""
    bad = m1.mutation("household.update", "hh-g1-1", fields={"notes": "NOTE"})
    body = msgspec.msgpack.encode(envelope(m1, [bad, m1.visit("hh-g1-2")]))
    body = body.replace(b"\xa4NOTE", b"\xa4\xff\xfe\xfd\xfc")
    assert results(push_raw(m1, body, MSGPACK)) == [
        ("rejected", "validation_error"),
        ("applied", None),
    ]
    assert count(store, "SELECT count(*) FROM households WHERE notes != ''") == 0


def test_invalid_utf8_in_the_envelope_is_400_malformed_body(m1, store):
    body = msgspec.msgpack.encode(envelope(m1, [m1.visit("hh-g1-1")]))
    body = body.replace(m1.device_id.encode(), b"\xff" * len(m1.device_id))
    r = push_raw(m1, body, MSGPACK)
    assert (r.status_code, r.json()["code"]) == (400, "malformed_body")
    assert "UTF-8" in r.json()["message"]
    assert count(store, "SELECT last_seq FROM devices WHERE id = 'dev-m1'") == 0


# -- 3. nesting -------------------------------------------------------------------------------

DEEP = 100_000


def deep_json_body(m1: Phone, where: str) -> bytes:
    if where == "fields":
        bad = m1.mutation("household.update", "hh-g1-1", fields={"notes": "DEEP"})
    else:
        bad = m1.mutation("visit.create", uuid7(), data="DEEP")
    body = json.dumps(envelope(m1, [bad, m1.visit("hh-g1-2")])).encode()
    return body.replace(b'"DEEP"', b"[" * DEEP + b"]" * DEEP)


def deep_msgpack_body(m1: Phone, where: str) -> bytes:
    deep = msgspec.Raw(b"\x91" * DEEP + b"\xc0")
    if where == "fields":
        bad = m1.mutation("household.update", "hh-g1-1", fields={"notes": deep})
    else:
        bad = m1.mutation("visit.create", uuid7(), data=deep)
    return msgspec.msgpack.encode(envelope(m1, [bad, m1.visit("hh-g1-2")]))


@pytest.mark.parametrize("where", ["data", "fields"])
@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_data_nested_100000_levels_is_rejected_alone(m1, store, fmt, where):
    body = deep_json_body(m1, where) if fmt == "json" else deep_msgpack_body(m1, where)
    r = push_raw(m1, body, JSON if fmt == "json" else MSGPACK)
    assert results(r) == [("rejected", "validation_error"), ("applied", None)]
    assert "levels deep" in r.json()["results"][0]["message"]
    # the seq is consumed and the refusal logged: a resend answers duplicate, as for any reject
    again = push_raw(m1, body, JSON if fmt == "json" else MSGPACK)
    assert results(again) == [("duplicate", None), ("duplicate", None)]
    assert count(store, "SELECT count(*) FROM sync_mutations WHERE status = 'rejected'") == 1


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_a_deep_envelope_is_400_malformed_body(m1, store, fmt):
    """Nesting where no mutation can be blamed (the list of mutations itself)."""
    if fmt == "json":
        body = b'{"device_id": "dev-m1", "mutations": ' + b"[" * DEEP + b"]" * DEEP + b"}"
    else:
        body = b"\x82\xa9device_id\xa6dev-m1\xa9mutations" + b"\x91" * DEEP + b"\x90"
    r = push_raw(m1, body, JSON if fmt == "json" else MSGPACK)
    assert r.status_code == 400, r.text
    assert r.json()["code"] in ("malformed_body", "validation_error") and r.json()["message"]
    assert count(store, "SELECT last_seq FROM devices WHERE id = 'dev-m1'") == 0


def test_a_mutation_without_a_readable_seq_fails_the_envelope(m1, store):
    """A mutation at fault is refused alone only when it can be answered (mid) and its seq
    consumed (seq, hlc): else the envelope is at fault, 400 with the field."""
    bad = m1.mutation("visit.create", uuid7(), data="DEEP")
    bad["seq"] = "DEEP"
    body = json.dumps(envelope(m1, [bad])).encode().replace(b'"DEEP"', b"[" * DEEP + b"]" * DEEP)
    r = push_raw(m1, body, JSON)
    assert r.status_code == 400, r.text
    assert (r.json()["code"], r.json()["field"]) == ("validation_error", "$.mutations[0].seq")
    assert count(store, "SELECT last_seq FROM devices WHERE id = 'dev-m1'") == 0


# -- envelope fields of one mutation -----------------------------------------------------------


def test_a_bad_field_of_one_mutation_is_rejected_alone(m1, store):
    """Out-of-bounds fields of a mutation (not of its data) failed the whole batch with 400,
    which the reference client could never get past."""
    muts = [
        m1.mutation("household.update", "hh-g1-1", tags_add=[f"t{i}" for i in range(MAX_TAGS + 1)]),
        m1.mutation("household.update", "hh-g1-1", tags_add=["x" * 33]),
        m1.mutation("household.update", "hh-g1-1", fields={f"f{i}": 1 for i in range(40)}),
        m1.mutation("household.update", "x" * 65, fields={"notes": "n"}),
        m1.mutation("o" * 65, uuid7()),
        m1.mutation("household.update", "hh-g1-1", base_seq=2**64),
        m1.visit("hh-g1-1"),
    ]
    r = m1.push(muts)
    assert results(r) == [("rejected", "validation_error")] * 6 + [("applied", None)]
    messages = [x["message"] for x in r.json()["results"][:6]]
    assert "$.mutations[0].tags_add" in messages[0] and "$.mutations[4].op" in messages[4]
    assert count(store, "SELECT count(*) FROM sync_mutations WHERE status = 'rejected'") == 6
    assert count(store, "SELECT last_seq FROM devices WHERE id = 'dev-m1'") == 7


# -- 5. tags: per mutation, per household, each tag ---------------------------------------------


def test_a_mutation_that_takes_a_household_past_the_tag_cap_is_rejected(m1, store):
    hid = "hh-g1-3"
    first = [f"tag{i}" for i in range(MAX_TAGS - 1)]
    assert results(m1.push([m1.mutation("household.update", hid, tags_add=first)])) == [
        ("applied", None)
    ]
    over = m1.mutation("household.update", hid, tags_add=["one", "two"])
    swap = m1.mutation("household.update", hid, tags_add=["new"], tags_remove=["tag0"])
    last = m1.mutation("household.update", hid, tags_add=["last"])
    assert results(m1.push([over, swap, last])) == [
        ("rejected", "too_many_tags"),
        ("applied", None),  # one out, one in: 31
        ("applied", None),  # 32, the cap
    ]
    tags = json.loads(store.read(lambda db: db.execute(
        "SELECT tags FROM households WHERE id = ?", [hid]).fetchone()[0]))  # fmt: skip
    assert len(tags) == MAX_TAGS and "one" not in tags and "tag0" not in tags
    full = m1.mutation("household.update", hid, tags_add=["more"])
    seq = count(store, "SELECT seq FROM households WHERE id = ?", [hid])
    edit = m1.mutation("household.update", hid, base_seq=seq, fields={"notes": "满了也能改别的"})
    assert results(m1.push([full, edit])) == [("rejected", "too_many_tags"), ("applied", None)]


def test_a_new_household_has_at_most_the_tag_cap(m1, store):
    data = {"grid_id": "g1", "head_name": "陈", "tags": [f"t{i}" for i in range(MAX_TAGS + 1)]}
    ok = {**data, "tags": data["tags"][:MAX_TAGS]}
    got = results(m1.push([m1.mutation("household.create", uuid7(), data=d) for d in (data, ok)]))
    assert got == [("rejected", "validation_error"), ("applied", None)]


def test_20000_tags_are_refused_before_any_work(m1, store):
    """20,000 tags cost 38 s holding the write lock (the merge is quadratic in them)."""
    tags = [f"tag-{i}" for i in range(20_000)]
    create = m1.mutation("household.create", uuid7(), data={"grid_id": "g1", "tags": tags})
    update = m1.mutation("household.update", "hh-g1-1", tags_add=tags)
    assert results(m1.push([create, update])) == [("rejected", "validation_error")] * 2


def test_tag_removal_stamps_are_bounded(m1, store):
    """Adding and removing ever new tags must not grow a household's field_hlc without end."""
    hid = "hh-g1-4"
    for round_ in range(4):
        tags = [f"r{round_}-{i}" for i in range(MAX_TAGS)]
        add = m1.mutation("household.update", hid, tags_add=tags)
        remove = m1.mutation("household.update", hid, tags_remove=tags)
        assert results(m1.push([add, remove])) == [("applied", None)] * 2
    state = store.read(merge.load, hid)
    assert state.tags == [] and len(state.tag_removes) == merge.MAX_TAG_TOMBSTONES


# -- 8. ids made by phones, HLCs ----------------------------------------------------------------

BAD_IDS = ["bad id", "id\n", "行政编号", "a/b", "x;drop"]
VISIT = {"household_id": "hh-g1-1", "at": "2026-11-20T09:30:00+08:00", "channel": "door"}


@pytest.mark.parametrize("bad", BAD_IDS)
def test_ids_made_by_phones_have_the_rest_shape(m1, store, bad):
    muts = [
        m1.mutation("household.create", bad, data={"grid_id": "g1", "head_name": "陈"}),
        m1.mutation("whistle.raise", bad, data={"category": "噪音", "grid_id": "g1"}),
        m1.mutation("visit.create", bad, data=VISIT),
        m1.visit("hh-g1-2"),
    ]
    got = results(m1.push(muts))
    assert got == [("rejected", "validation_error")] * 3 + [("applied", None)]
    assert count(store, "SELECT count(*) FROM households WHERE id = ?", [bad]) == 0
    assert count(store, "SELECT count(*) FROM whistle_cases") == 0
    assert count(store, "SELECT count(*) FROM visits") == 1


def test_rest_refuses_the_same_ids(client, tiny, m1):
    admin = bearer(tiny.tokens["admin"])
    for bad in BAD_IDS:
        r = client.post(
            "/api/v1/whistle/cases", json={"category": "噪音", "grid_id": "g1", "id": bad},
            headers=admin,
        )  # fmt: skip
        assert (r.status_code, r.json()["code"]) == (400, "validation_error"), bad


def test_an_hlc_with_a_trailing_newline_is_refused(m1, store):
    hlc = format_hlc(1_795_000_000_000, 1, m1.device_id) + "\n"
    r = m1.push([m1.mutation("visit.create", uuid7(), hlc=hlc, data=VISIT)])
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        400,
        "validation_error",
        "$.mutations[0].hlc",
    )
    assert count(store, "SELECT count(*) FROM visits") == 0


# -- 6. the pull cursor -------------------------------------------------------------------------


def cursor(*fields: Any) -> str:
    import base64

    return base64.urlsafe_b64encode(msgspec.msgpack.encode(list(fields))).rstrip(b"=").decode()


def epoch_of(store) -> str:
    return store.read(
        lambda db: db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    )


@pytest.mark.parametrize("position", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("value", [2**64 - 1, 2**63, 2**53 + 1, -1, -(2**63), 1.5, float("inf")])
def test_a_cursor_with_numbers_out_of_range_resets(m1, store, position, value):
    fields: list[Any] = [1, epoch_of(store), 1, 0, 0, 0, 0]
    fields[position] = value
    r = m1.client.get("/api/v1/sync/pull", params={"cursor": cursor(*fields)}, headers=m1.headers())
    assert r.status_code == 200, r.text
    assert r.json()["reset"] is True

"""Property tests of the phone path against hostile input (issue 12), over the real app.

* Any ``data`` for any registered op (JSON values and raw bytes: huge and tiny numbers, odd and
  invalid strings, lone surrogates, deep nesting, times in every format), and odd envelope
  fields of a mutation: the push answers 200 with one result per mutation, every ``rejected``
  one with a code, and the well-formed visit that ends each batch is applied. Never a 5xx.
* Hostile envelopes (bytes that are not a push): a coded 4xx, never a 5xx, nothing stored.
* The reference client pushed through such a batch syncs on: its later edits and pulls work.
* Pull cursors of any content: 200 (``reset: true`` when it cannot be honoured) or a coded 400.

``GRIDSYNC_FUZZ_EXAMPLES=N`` searches longer and prints the outcomes counted (``pytest -s``).
"""

from __future__ import annotations

import base64
import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gridsync.clock import FixedClock, uuid7
from gridsync.sync import registry
from gridsync.sync.client import DeviceClient
from gridsync.sync.hlc import format_hlc
from tests.conftest import bearer
from tests.sync_helpers import SYNC

PUSH = "/api/v1/sync/push"
OPS = sorted(registry.OPS)
FIELD_NAMES = sorted(
    {
        name
        for spec in registry.OPS.values()
        if spec.data_type is not None
        for name in spec.data_type.__struct_fields__
    }
)
# A few seconds in the suite, the same inputs on every run (a failure is reproducible);
# GRIDSYNC_FUZZ_EXAMPLES=2000 runs a longer, random search on purpose.
_EXAMPLES = int(os.environ.get("GRIDSYNC_FUZZ_EXAMPLES", "0"))


class Outcomes(Counter):
    def report(self, title: str) -> None:
        if _EXAMPLES:
            print(f"\n{title}: " + ", ".join(f"{k}: {n}" for k, n in sorted(self.items())))


SETTINGS = settings(
    max_examples=_EXAMPLES or 60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=not _EXAMPLES,
)

# -- strategies -----------------------------------------------------------------------------------

ZONES = [
    UTC,
    timezone(timedelta(hours=8)),
    timezone(timedelta(hours=14)),
    timezone(timedelta(hours=-12)),
    timezone(timedelta(hours=23, minutes=59)),
    timezone(timedelta(hours=-23, minutes=-59)),
    None,
]
odd_times = st.sampled_from(
    [
        "9999-12-31T23:59:59+00:00",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "2026-11-20T09:30:60+08:00",
        "2026-11-20T09:30:00.1234567890123+08:00",
        "2026-W47-5T09:30+08:00",
        "20261120T093000+0800",
        "2026-11-20",
        "2026-11-20T24:00:00Z",
        "",
        "T",
        "+08:00",
    ]
)
times = st.one_of(
    odd_times,
    st.builds(
        lambda dt, zone, spec: dt.replace(tzinfo=zone).isoformat(timespec=spec),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        st.sampled_from(ZONES),
        st.sampled_from(["auto", "hours", "minutes", "seconds", "milliseconds", "microseconds"]),
    ),
)
numbers = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.sampled_from([0, 1, -1, 5, 6, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63)]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, 5e-324, 0.5, -0.0]),
)
strings = st.one_of(
    st.text(max_size=20),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=30, max_size=5000),
    st.sampled_from(["g1", "g2", "hh-g1-1", "hh-g2-1", "door", "policy", "accept", "close"]),
    st.sampled_from(["elderly_alone", "噪音", "\u202e", "\x00", "a\nb", " ", "x" * 65]),
    times,
)
values = st.recursive(
    st.none() | st.booleans() | numbers | strings,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4),
    max_leaves=12,
)


# A well-formed data per op: the fuzz changes one or two of its fields, so that the odd value
# reaches the checks behind the decode (times, scope, ids), not only the decode.
WELL_FORMED = {
    "household.create": {"grid_id": "g1", "head_name": "陈"},
    "visit.create": {
        "household_id": "hh-g1-1",
        "at": "2026-11-20T09:30:00+08:00",
        "channel": "door",
    },
    "whistle.raise": {"category": "噪音", "grid_id": "g1"},
    "whistle.act": {"action": "comment"},
}


@st.composite
def op_data(draw, op: str) -> Any:
    """A value for the op's ``data``: anything at all, or its own fields with odd values."""
    spec = registry.OPS.get(op)
    names = sorted(spec.data_type.__struct_fields__) if spec and spec.data_type else FIELD_NAMES
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(values)
    if kind == 1:
        return draw(st.dictionaries(st.sampled_from(FIELD_NAMES), values | times, max_size=6))
    changed = draw(st.dictionaries(st.sampled_from(names), values | times, min_size=1, max_size=2))
    return {**WELL_FORMED.get(op, {}), **changed}


# Raw bodies of ``data`` that no encoder writes: each a template for JSON and for msgpack.
RAW_DATA = {
    "deep": (b"[" * 50_000 + b"]" * 50_000, b"\x91" * 50_000 + b"\xc0"),
    "moderately deep": (b"[" * 900 + b"]" * 900, b"\x91" * 900 + b"\xc0"),
    "invalid utf-8": (b'{"note": "\xff\xfe"}', b"\x81\xa4note\xa2\xff\xfe"),
    "lone surrogate": (b'{"note": "\\udc00"}', b"\x81\xa4note\xa3\xed\xb0\x80"),
    "overlong utf-8": (b'{"note": "\xc0\xaf"}', b"\x81\xa4note\xa2\xc0\xaf"),
    "big number": (b'{"size": 1' + b"0" * 400 + b"}", b"\x81\xa4size\xcf" + b"\xff" * 8),
    "float overflow": (b'{"size": 1e999}', b"\x81\xa4size\xcb\x7f\xf0\x00\x00\x00\x00\x00\x00"),
    "ext type": (b"{}", b"\xd4\x01\x00"),
}


@st.composite
def mutations(draw, seq: int, device_id: str) -> tuple[dict[str, Any], bytes | None]:
    """(a mutation with dict data, or with a RAW_DATA key as data) and whether data is raw."""
    op = draw(st.sampled_from([*OPS, "no.such.op"]))
    target = draw(
        st.sampled_from(["hh-g1-1", "hh-g1-2", "hh-g2-1", "c-1", "v-1"])
        | st.builds(uuid7)
        | st.text(max_size=70)
    )
    m: dict[str, Any] = {
        "mid": uuid7(),
        "seq": seq,
        "hlc": format_hlc(1_795_000_000_000 + seq, 0, device_id),
        "op": op,
        "id": target,
    }
    if draw(st.integers(0, 3)) == 0:  # the envelope's own optional fields, oddly
        m["base_seq"] = draw(st.none() | numbers)
        m["fields"] = draw(st.none() | st.dictionaries(st.text(max_size=70), values, max_size=20))
        m["tags_add"] = draw(st.lists(st.text(max_size=40), max_size=40))
        m["tags_remove"] = draw(st.lists(st.text(max_size=40), max_size=3))
    raw = draw(st.none() | st.sampled_from(sorted(RAW_DATA)))
    m["data"] = raw if raw is not None else draw(op_data(op))
    return m, raw


def encode_batch(device_id: str, batch: list[tuple[dict, str | None]], fmt: str) -> bytes:
    """The push body with each RAW_DATA placeholder replaced by its bytes."""
    placeholders = {}
    body_mutations = []
    for m, raw in batch:
        m = dict(m)
        if raw is not None:
            mark = f"RAW{len(placeholders)}X"
            placeholders[mark] = RAW_DATA[raw][0 if fmt == "json" else 1]
            m["data"] = mark
        body_mutations.append(m)
    envelope = {"device_id": device_id, "mutations": body_mutations}
    if fmt == "json":
        # ensure_ascii: lone surrogates in generated text go out as \\udXXX escapes
        body = json.dumps(envelope, ensure_ascii=True).encode()
        for mark, raw_bytes in placeholders.items():
            body = body.replace(f'"{mark}"'.encode(), raw_bytes)
        return body
    body = msgspec.msgpack.encode(envelope)
    for mark, raw_bytes in placeholders.items():
        packed = msgspec.msgpack.encode(mark)
        body = body.replace(packed, raw_bytes)
    return body


def good_visit(seq: int, device_id: str) -> dict[str, Any]:
    return {
        "mid": uuid7(),
        "seq": seq,
        "hlc": format_hlc(1_795_000_000_000 + seq, 0, device_id),
        "op": "visit.create",
        "id": uuid7(),
        "data": {
            "household_id": "hh-g1-1",
            "at": "2026-11-20T09:30:00+08:00",
            "channel": "door",
            "kinds": ["policy"],
        },
    }


def is_encodable(batch: list[tuple[dict, str | None]]) -> bool:
    try:
        msgspec.msgpack.encode([m for m, _ in batch])
    except (UnicodeEncodeError, OverflowError):
        return False  # a lone surrogate or a number msgpack cannot carry: JSON only
    return True


# -- the property ---------------------------------------------------------------------------------


def test_any_data_for_any_op_never_answers_5xx(client, tiny, store):
    headers = {**bearer(tiny.tokens["m1"]), **SYNC}
    device_id = tiny.devices["m1"]
    seen = Outcomes()

    def last_seq() -> int:
        return store.read(
            lambda db: db.execute("SELECT last_seq FROM devices WHERE id = ?", [device_id])
        ).fetchone()[0]

    @SETTINGS
    @given(data=st.data(), fmt=st.sampled_from(["json", "msgpack"]))
    def push_anything(data, fmt):
        start = last_seq() + 1
        n = data.draw(st.integers(1, 4))
        batch = [data.draw(mutations(start + i, device_id)) for i in range(n)]
        batch.append((good_visit(start + n, device_id), None))
        if fmt == "msgpack" and not is_encodable(batch):
            fmt = "json"
        body = encode_batch(device_id, batch, fmt)
        r = client.post(
            PUSH, content=body, headers={**headers, "Content-Type": f"application/{fmt}"}
        )
        assert r.status_code < 500, r.text
        assert r.status_code == 200, r.text  # every mutation is well-framed: none fails the batch
        got = r.json()["results"]
        assert len(got) == len(batch)
        seen[f"HTTP {r.status_code}"] += 1
        for result in got:
            seen[f"{result['status']} {result.get('code', '')}".strip()] += 1
            if result["status"] == "rejected":
                assert result["code"] and result["message"]
        assert got[-1]["status"] == "applied", got[-1]  # the batch went on
        assert r.json()["last_seq"] == start + n  # every seq consumed, nothing stalled

    push_anything()
    seen.report("data fuzz")


HOSTILE_ENVELOPES = st.one_of(
    st.binary(max_size=300),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b'{"device_id": "dev-m1"}',
            b'{"device_id": "dev-m1", "mutations": {}}',
            b'{"device_id": "dev-m1", "mutations": [1, 2]}',
            b'{"device_id": "dev-m1", "mutations": [{"mid": "a"}]}',
            b'{"device_id": "\xff", "mutations": []}',
            b'{"device_id": "dev-m1", "mutations": ' + b"[" * 100_000,
            # a string left open swallows the mutations after it: not one result per mutation
            b'{"device_id": "dev-m1", "mutations": [{"mid": "a", "seq": 1, "hlc": '
            b'"001795000000001:00000:dev-m1", "op": "visit.create", "id": "v", "data": '
            b'{"note": "ab}, {"mid": "b", "seq": 2, "hlc": "001795000000002:00000:dev-m1", '
            b'"op": "visit.create", "id": "w", "data": {"note": "cd"}}]}',
            b"\x82\xa9device_id\xa6dev-m1\xa9mutations\xdd\xff\xff\xff\xff",
            b"\xdf\xff\xff\xff\xff",
            b"\xc1",
        ]
    ),
)


def test_hostile_envelopes_are_coded_4xx(client, tiny, store):
    headers = {**bearer(tiny.tokens["m1"]), **SYNC}
    seen = Outcomes()

    @SETTINGS
    @given(body=HOSTILE_ENVELOPES, fmt=st.sampled_from(["json", "msgpack"]))
    def push_garbage(body, fmt):
        r = client.post(
            PUSH, content=body, headers={**headers, "Content-Type": f"application/{fmt}"}
        )
        seen[f"HTTP {r.status_code} {r.json().get('code') if r.status_code != 200 else ''}"] += 1
        assert r.status_code < 500, r.text
        if r.status_code != 200:  # an empty push ({"mutations": []}) is fine
            assert 400 <= r.status_code < 500 and r.json()["code"] and r.json()["message"]

    push_garbage()
    seen.report("envelope fuzz")
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM sync_mutations").fetchone()[0]) == 0
    )


# -- the reference client -------------------------------------------------------------------------


def test_the_reference_client_syncs_on_after_a_hostile_batch(client, tiny, store):
    """A buggy app build queues mutations that can never apply; the reference client pushes
    them, gets them back ``rejected`` one by one, and goes on: its later edits and pulls work.
    Before, the first of them answered 500 (or 400 for the whole batch) on every resend and the
    phone never pulled again."""
    clock = FixedClock(int(datetime.now(UTC).timestamp() * 1000))
    phone = DeviceClient(
        client,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        person_id="m1",
        path=":memory:",
        clock=clock,
        sleep=lambda _s: None,
    )
    phone.sync()
    case = uuid7()
    phone.enqueue(
        "whistle.raise",
        case,
        data={"category": "噪音", "grid_id": "g1", "raised_at": "9999-12-31T23:59:59+00:00"},
    )
    phone.enqueue("visit.create", uuid7(), data={"household_id": "hh-g1-1", "at": "0001-01-01"})
    phone.update_household("hh-g1-1", tags_add=[f"tag{i}" for i in range(40)])
    phone.update_household("hh-g1-1", fields={f"field{i}": i for i in range(20)})
    phone.enqueue("household.create", "bad id\n", data={"grid_id": "g1", "head_name": "陈"})
    deep: Any = None
    for _ in range(200):
        deep = [deep]
    phone.enqueue("visit.void", uuid7(), data={"reason": deep})
    phone.enqueue("whistle.act", case, data={"action": "comment", "at": "2" * 100_000})
    phone.enqueue("o" * 100, uuid7(), data={"x": 10**30})
    report = phone.sync()
    assert report.push.rejected == 8 and phone.pending_count() == 0
    codes = sorted(o["code"] for o in phone.rejected())
    assert codes == sorted(["invalid_time"] + ["validation_error"] * 7), codes

    # it syncs on: edits go up, the server's changes come down
    phone.update_household("hh-g1-2", fields={"notes": "之后的修改"}, tags_add=["renter"])
    visit = phone.log_visit("hh-g1-2", "door", ["policy"], "之后的走访")
    secretary = bearer(tiny.tokens["sec"])
    r = client.post(
        "/api/v1/whistle/cases", json={"category": "积水", "grid_id": "g1"}, headers=secretary
    )
    assert r.status_code == 201, r.text
    report = phone.sync()
    assert (report.push.applied, report.push.rejected) == (2, 0)
    assert report.pull.changes > 0 and phone.pending_count() == 0
    assert phone.household("hh-g1-2")["notes"] == "之后的修改"
    assert visit.id in phone.visits("hh-g1-2")
    assert r.json()["id"] in phone.all("whistle")
    notes = store.read(
        lambda db: db.execute("SELECT notes FROM households WHERE id = 'hh-g1-2'").fetchone()[0]
    )
    assert notes == "之后的修改"


# -- pull cursors ---------------------------------------------------------------------------------

cursor_ints = st.one_of(  # 0 often: most fields of a real cursor are
    st.sampled_from([0, 0, 0, 0, 1, 2**53, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, -1, -(2**63)]),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
)
cursor_numbers = cursor_ints | st.floats() | st.text(max_size=5) | st.none()


@st.composite
def cursors(draw, epoch: str) -> str:
    kind = draw(st.integers(0, 3))
    if kind <= 1:  # the real layout with any numbers and strings (half: version 1, this database)
        fields = [
            1 if kind == 0 else draw(cursor_numbers),
            epoch if kind == 0 else draw(st.text(max_size=70)),
            *draw(st.lists(cursor_ints if kind == 0 else cursor_numbers, min_size=5, max_size=5)),
            draw(st.text(max_size=70)),
            draw(st.booleans()),
            draw(st.lists(st.text(max_size=40), max_size=20)),
        ][: draw(st.integers(3, 10))]  # trailing fields may be left out
        raw = msgspec.msgpack.encode(fields)
    elif kind == 2:
        raw = draw(st.binary(max_size=120))
    else:
        return draw(st.text(max_size=300))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_any_cursor_is_honoured_reset_or_refused(client, tiny, store):
    headers = {**bearer(tiny.tokens["m1"]), **SYNC}
    epoch = store.read(
        lambda db: db.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()[0]
    )
    seen = Outcomes()

    @settings(SETTINGS, max_examples=_EXAMPLES or 300)  # a pull is cheap: 300 take ~3 s
    @given(cursor=cursors(epoch))
    def pull_with(cursor):
        r = client.get("/api/v1/sync/pull", params={"cursor": cursor}, headers=headers)
        assert r.status_code < 500, r.text
        if r.status_code == 200:
            seen[f"HTTP 200 reset={r.json()['reset']}"] += 1
        else:
            seen[f"HTTP {r.status_code} {r.json()['code']}"] += 1
            assert r.status_code == 400 and r.json()["code"]

    pull_with()
    seen.report("cursor fuzz")

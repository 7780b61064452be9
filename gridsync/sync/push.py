"""Push (SPEC 3.1): decode a batch, then apply it whole in one write transaction, in order.

Exactly once: ``devices.last_seq`` is the highest push seq applied for a device; a mutation at or
below it is a ``duplicate`` with no effect, and so is a new seq whose ``mid`` is already in
``sync_mutations``. Every new mutation consumes its seq, whether applied or rejected (rejected
ones are recorded with their code, so a resend answers ``duplicate`` too). Nothing of a request
that fails as a whole (400, 403, 409, 413) is stored: those checks come before any write, and
the transaction rolls back whole on any error.

A device revoked with drain (``auth.py``) is revoked in the transaction of its first push that
applies: that push is its last, and a second one, even racing it, is ``401 device_revoked``.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit, auth
from gridsync.auth import Principal
from gridsync.clock import Clock, iso_ms, parse_ms
from gridsync.config import Settings
from gridsync.errors import (
    DeviceRevoked,
    Forbidden,
    GridsyncError,
    Invalid,
    PayloadTooLarge,
    SeqGap,
    UnsupportedMediaType,
    UnsupportedSchema,
)
from gridsync.sync import scope as sync_scope
from gridsync.sync.hlc import ServerClock, advance, is_valid, ms_of
from gridsync.sync.ops import BatchItem, OpContext, Outcome, load_builtin_ops
from gridsync.sync.protocol import (
    IgnoredField,
    LostValue,
    MutationResult,
    PushRequest,
    PushResponse,
)

SCHEMA_VERSION = "1"

_json_decoder = msgspec.json.Decoder(PushRequest)
_msgpack_decoder = msgspec.msgpack.Decoder(PushRequest)
_json = msgspec.json.Encoder()


def check_schema_header(value: str | None) -> None:
    if value is None or value.strip() != SCHEMA_VERSION:
        got = "no X-Gridsync-Schema header" if value is None else f"schema {value!r}"
        raise UnsupportedSchema(
            f"this server speaks sync schema {SCHEMA_VERSION} and got {got}: update the app to a "
            f"version that sends 'X-Gridsync-Schema: {SCHEMA_VERSION}'",
            supported=[SCHEMA_VERSION],
        )


def limits_message(settings: Settings) -> str:
    return (
        f"at most {settings.max_push_mutations} mutations and "
        f"{settings.max_push_bytes // (1024 * 1024)} MiB ({settings.max_push_bytes} bytes) "
        "per push: split the batch"
    )


def gunzip_limited(body: bytes, limit: int, settings: Settings) -> bytes:
    """Decompress a gzip body, refusing to inflate beyond ``limit`` bytes (gzip bombs)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"the decompressed body is larger than allowed: {limits_message(settings)}"
            )
        out += inflater.flush()
    except zlib.error as exc:
        raise Invalid(f"the body is not valid gzip: {exc}", field="$") from None
    if len(out) > limit:
        raise PayloadTooLarge(
            f"the decompressed body is larger than allowed: {limits_message(settings)}"
        )
    return out


_PATH_RE = re.compile(r"at `(\$[^`]*)`")


def media_format(content_type: str | None) -> str:
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype in ("application/json", "", "*/*"):
        return "json"
    if ctype in ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack"):
        return "msgpack"
    raise UnsupportedMediaType(
        f"unsupported Content-Type {ctype!r}: send application/json or application/msgpack"
    )


def decode_request(
    body: bytes, *, content_type: str | None, content_encoding: str | None, settings: Settings
) -> tuple[PushRequest, str]:
    """Size checks, gzip, and a typed decode of the raw body: (request, "json"|"msgpack")."""
    if len(body) > settings.max_push_bytes:
        raise PayloadTooLarge(f"the body has {len(body)} bytes: {limits_message(settings)}")
    fmt = media_format(content_type)
    encoding = (content_encoding or "identity").strip().lower()
    if encoding == "gzip":
        body = gunzip_limited(body, settings.max_push_bytes, settings)
    elif encoding not in ("identity", ""):
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}: send gzip or nothing"
        )
    try:
        request = (_msgpack_decoder if fmt == "msgpack" else _json_decoder).decode(body)
    except msgspec.ValidationError as exc:
        match = _PATH_RE.search(str(exc))
        raise Invalid(f"invalid push: {exc}", field=match.group(1) if match else "$") from None
    except msgspec.DecodeError as exc:
        raise Invalid(f"malformed {fmt} body: {exc}", field="$") from None
    if len(request.mutations) > settings.max_push_mutations:
        raise PayloadTooLarge(
            f"the batch has {len(request.mutations)} mutations: {limits_message(settings)}"
        )
    previous = None
    for i, m in enumerate(request.mutations):
        if previous is not None and m.seq != previous + 1:
            raise Invalid(
                "seq must count up by one within a batch, in order", field=f"$.mutations[{i}].seq"
            )
        previous = m.seq
        h = m.hlc
        if not (
            h[15] == ":"
            and h[21] == ":"
            and h[:15].isdigit()
            and h[16:21].isdigit()
            and is_valid(h)
        ):
            raise Invalid(
                f"hlc {h!r} is not <15-digit ms>:<5-digit counter>:<device id>",
                field=f"$.mutations[{i}].hlc",
            )
    return request, fmt


@dataclass(slots=True)
class _Decoded:
    """A mutation with its op's data decoded outside the write transaction."""

    index: int
    data: Any = None
    error: GridsyncError | None = None


def decode_data(request: PushRequest, fmt: str) -> list[_Decoded]:
    registry = load_builtin_ops()
    out = []
    for i, m in enumerate(request.mutations):
        spec = registry.get(m.op)
        if spec is None:
            out.append(
                _Decoded(
                    i,
                    error=GridsyncError(
                        f"unknown op {m.op!r}; this server knows {', '.join(sorted(registry))}",
                        code="unknown_op",
                    ),
                )
            )
            continue
        try:
            out.append(_Decoded(i, data=spec.decode(m.data, fmt)))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            text = str(exc).replace("at `$", f"at `$.mutations[{i}].data")
            out.append(
                _Decoded(i, error=Invalid(f"invalid data: {text}", field=f"$.mutations[{i}].data"))
            )
    return out


def apply_push(
    db: sqlite_utils.Database,
    principal: Principal,
    request: PushRequest,
    decoded: list[_Decoded],
    settings: Settings,
    clock: Clock,
    app: str | None = None,
) -> PushResponse:
    """Apply a decoded batch inside the caller's write transaction."""
    if request.device_id != principal.device_id:
        raise Forbidden(
            f"device_id {request.device_id} is not this token's device ({principal.device_id})",
            code="device_mismatch",
        )
    now_ms = clock.now_ms()
    registry = load_builtin_ops()
    last_seq, floor_ms, enrolled_at, revoked_at, draining_since = db.execute(
        "SELECT last_seq, hlc_high_ms, created_at, revoked_at, draining_since FROM devices "
        "WHERE id = ?",
        [principal.device_id],
    ).fetchone()
    if revoked_at is not None:
        # Revoked since the token was checked (or a second push of a draining device that
        # raced its drain push): nothing of this request is stored.
        raise DeviceRevoked()
    # A device holds no edit from before its enrollment: its records came from a pull that its
    # token made possible. So the time an edit claims for the scope check starts there too.
    floor_ms = max(floor_ms, parse_ms(enrolled_at))
    mutations = request.mutations
    new_start = next((i for i, m in enumerate(mutations) if m.seq > last_seq), len(mutations))
    if new_start < len(mutations) and mutations[new_start].seq != last_seq + 1:
        raise SeqGap(
            f"seq {mutations[new_start].seq} leaves a gap: the next seq of device "
            f"{principal.device_id} is {last_seq + 1}; resend from there",
            expected_seq=last_seq + 1,
        )
    # Ops that are their own record (a visit, by its id) are not in the log: only the others'
    # mids are looked up there (one query per batch).
    logged_mids = [
        m.mid
        for m in mutations[new_start:]
        if m.op not in registry or not registry[m.op].own_record
    ]
    # mids are per device: another device's mutation under a known mid is not a resend
    known_mids = (
        {
            r[0]
            for r in db.execute(
                "SELECT mid FROM sync_mutations WHERE mid IN (SELECT value FROM json_each(?)) "
                "AND device_id = ?",
                [_json.encode(logged_mids).decode(), principal.device_id],
            ).fetchall()
        }
        if logged_mids
        else set()
    )

    server = ServerClock(db, now_ms)
    results: list[MutationResult | None] = [None] * len(mutations)
    log_rows: list[tuple] = []
    for i in range(new_start):
        results[i] = MutationResult(mid=mutations[i].mid, status="duplicate")

    # Clock sanity and the work list. A device's HLCs only go forward (it advances its clock
    # from every answer), so the time an edit claims for the scope check ("was the household in
    # scope when it was made?", SPEC 3.1) is never older than the device's earlier mutations:
    # a phone cannot reach a household it lost by dating an edit back. ``floor_ms`` carries the
    # newest time seen from the device, in seq order, across its pushes.
    pending: list[tuple[int, str, bool, int]] = []  # (index, hlc, clamped, scope time)
    skew_limit = f"{now_ms + settings.max_clock_skew_ms:015d}"
    newest = ""
    for i in range(new_start, len(mutations)):
        m = mutations[i]
        if m.mid in known_mids:
            results[i] = MutationResult(mid=m.mid, status="duplicate")
            continue
        known_mids.add(m.mid)
        hlc = m.hlc
        if hlc[:15] > skew_limit:
            hlc, clamped = server.tick(), True
        else:
            clamped = False
            if hlc > newest:
                newest = hlc
        floor_ms = max(floor_ms, ms_of(hlc))
        pending.append((i, hlc, clamped, floor_ms))
    if newest:
        server.observe(newest)

    def context(hlc: str, mid: str, scope_ms: int) -> OpContext:
        return OpContext(
            db=db,
            principal=principal,
            settings=settings,
            clock=clock,
            hlc=hlc,
            received_ms=now_ms,
            server_hlc=server.tick,
            mid=mid,
            scope_ms=scope_ms,
        )

    def settle(i: int, clamped: bool, outcome: Outcome | GridsyncError) -> None:
        m = mutations[i]
        clock_flag = "clamped" if clamped else None
        if isinstance(outcome, GridsyncError):
            results[i] = MutationResult(
                mid=m.mid,
                status="rejected",
                code=outcome.code,
                message=outcome.message,
                clock=clock_flag,
            )
            log_rows.append(
                (
                    m.mid,
                    principal.device_id,
                    m.seq,
                    m.op,
                    m.id,
                    "rejected",
                    outcome.code,
                    outcome.message[:500],
                    now_ms,
                )
            )
            return
        if outcome.lost or outcome.ignored:
            lost = [
                LostValue(
                    field=x["field"],
                    value=x["value"],
                    winner=x["winner"],
                    conflict_id=x.get("conflict_id"),
                )
                for x in outcome.lost
            ]
            ignored = [IgnoredField(field=x["field"], code=x["code"]) for x in outcome.ignored]
            results[i] = MutationResult(
                mid=m.mid,
                status=outcome.status,
                lost=lost or None,
                ignored=ignored or None,
                clock=clock_flag,
            )
        else:
            results[i] = MutationResult(mid=m.mid, status=outcome.status, clock=clock_flag)
        if outcome.logged:
            log_rows.append(
                (m.mid, principal.device_id, m.seq, m.op, m.id, outcome.status, None, None, now_ms)
            )

    k = 0
    while k < len(pending):
        i, hlc, clamped, scope_ms = pending[k]
        m = mutations[i]
        d = decoded[i]
        if d.error is not None:
            settle(i, clamped, d.error)
            k += 1
            continue
        spec = registry[m.op]
        if spec.batch_handler is not None:
            run = [pending[k]]
            while (
                k + len(run) < len(pending)
                and mutations[pending[k + len(run)][0]].op == m.op
                and decoded[pending[k + len(run)][0]].error is None
            ):
                run.append(pending[k + len(run)])
            items = [BatchItem(mutations[j], decoded[j].data, h, t) for j, h, _, t in run]
            outcomes = spec.batch_handler(context(hlc, m.mid, scope_ms), items)
            for (j, _, c, _), outcome in zip(run, outcomes):
                if (
                    c
                    or type(outcome) is not Outcome
                    or outcome.lost
                    or outcome.logged
                    or outcome.ignored
                ):
                    settle(j, c, outcome)
                else:  # the common case of a run (an applied visit), without a call
                    results[j] = MutationResult(mid=mutations[j].mid, status=outcome.status)
            k += len(run)
            continue
        db.execute("SAVEPOINT mutation")
        try:
            outcome: Outcome | GridsyncError = spec.handler(
                context(hlc, m.mid, scope_ms), m, d.data
            )
        except GridsyncError as exc:
            db.execute("ROLLBACK TO mutation")
            outcome = exc
        db.execute("RELEASE mutation")
        settle(i, clamped, outcome)
        k += 1

    if log_rows:
        db.conn.executemany(
            "INSERT INTO sync_mutations (mid, device_id, seq, op, target_id, status, code, "
            "message, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            # a mid logged already (another device's, or a visit's reusing one) keeps its row
            "ON CONFLICT(mid) DO NOTHING",
            log_rows,
        )
    new_last = max(last_seq, mutations[-1].seq) if mutations else last_seq
    db.execute(
        "UPDATE devices SET last_seq = ?, last_seen_at = ?, hlc_high_ms = ? WHERE id = ?",
        [new_last, iso_ms(now_ms), floor_ms, principal.device_id],
    )
    sync_scope.remember(db, principal.scope)
    server.save()
    final = [r for r in results if r is not None]
    counts = Counter(r.status for r in final)
    audit.record(
        db,
        principal.actor,
        "sync.push",
        target=principal.device_id,
        detail={
            "app": app,
            "mutations": len(mutations),
            "first_seq": mutations[0].seq if mutations else None,
            "last_seq": new_last,
            **counts,
            "clamped": sum(1 for r in final if r.clock),
        },
        clock=clock,
    )
    if draining_since is not None:
        # The one push of a draining device: it is revoked with this transaction's commit.
        auth.finish_drain(
            db,
            principal.actor,
            iso_ms(now_ms),
            {"mutations": len(mutations), "last_seq": new_last, **counts},
        )
    return PushResponse(
        results=final,
        server_hlc=advance(server.last, now_ms),
        last_seq=new_last,
        cursor=request.cursor,
        drained=draining_since is not None,
    )

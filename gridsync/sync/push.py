"""Push (SPEC 3.1): decode a batch, then apply it whole in one write transaction, in order.

Exactly once: ``devices.last_seq`` is the highest push seq applied for a device; a mutation at or
below it is a ``duplicate`` with no effect, and so is a new seq whose ``mid`` is already in
``sync_mutations``. Every new mutation consumes its seq, whether applied or rejected (rejected
ones are recorded with their code, so a resend answers ``duplicate`` too). Nothing of a request
that fails as a whole (400, 403, 409, 413) is stored: those checks come before any write, and
the transaction rolls back whole on any error.

A device revoked with drain (``auth.py``) is revoked in the transaction of its drain push: the
push marked ``drain: true``, or, from a client that does not mark pushes (``drain`` absent),
its first push that applies. That push is its last, and a second one, even racing it, is
``401 device_revoked``. A push marked ``drain: false`` from a draining device is ``403
device_draining`` with nothing stored: the client learns it is draining from that answer and
sends everything in one marked push, so a drain that lands between two batches of a sync loses
nothing that fits one push.
"""

from __future__ import annotations

import json
import re
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

import msgspec
import sqlite_utils
from msgspec import Meta

from gridsync import audit, auth
from gridsync.auth import Principal
from gridsync.clock import Clock, iso_ms, parse_ms
from gridsync.config import Settings
from gridsync.errors import (
    DeviceDraining,
    DeviceRevoked,
    Forbidden,
    GridsyncError,
    Invalid,
    Malformed,
    PayloadTooLarge,
    SeqGap,
    UnsupportedMediaType,
    UnsupportedSchema,
)
from gridsync.models import (
    ID_PATTERN,
    HlcStr,
    IgnoredField,
    LostValue,
    Mid,
    Mutation,
    MutationResult,
    PushRequest,
    PushResponse,
    SyncId,
)
from gridsync.sync import scope as sync_scope
from gridsync.sync.hlc import ServerClock, advance, is_valid, ms_of
from gridsync.sync.ops import BatchItem, OpContext, OpSpec, Outcome
from gridsync.sync.outline import Span, TooManyMutations, outline
from gridsync.sync.registry import OPS

SCHEMA_VERSION = "1"

_json_decoder = msgspec.json.Decoder(PushRequest)
_msgpack_decoder = msgspec.msgpack.Decoder(PushRequest)
_json = msgspec.json.Encoder()
_ID_RE = re.compile(ID_PATTERN)


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
        raise Malformed(f"the body is not valid gzip: {exc}", field="$") from None
    if len(out) > limit:
        raise PayloadTooLarge(
            f"the decompressed body is larger than allowed: {limits_message(settings)}"
        )
    return out


_PATH_RE = re.compile(r"`(\$[^`]*)`")  # "at `$.x`", or "at `key` in `$.x`"


def media_format(content_type: str | None) -> str:
    ctype = (content_type or "application/json").split(";")[0].strip().lower()
    if ctype in ("application/json", "", "*/*"):
        return "json"
    if ctype in ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack"):
        return "msgpack"
    raise UnsupportedMediaType(
        f"unsupported Content-Type {ctype!r}: send application/json or application/msgpack"
    )


@dataclass(slots=True)
class PushBody:
    """A decoded push: the request, its format, and the mutations refused while decoding (by
    index: a placeholder with the mutation's mid, seq and HLC stands in the request)."""

    request: PushRequest
    fmt: str
    refused: dict[int, GridsyncError] = field(default_factory=dict)


class NeedsOutline(Exception):
    """The strict decode failed inside one mutation (or could not say where): :meth:`salvage`
    outlines the body (``gridsync/sync/outline.py``) so that the mutations at fault are refused
    alone. Raised instead of doing that at once because it is slow on a hostile body (about
    2 s for 4 MiB): the controller runs it on a worker thread, off the event loop."""

    def __init__(self, body: bytes, fmt: str, settings: Settings, error: GridsyncError):
        super().__init__(error.message)
        self.body, self.fmt, self.settings, self.error = body, fmt, settings, error

    def salvage(self) -> PushBody:
        """The push with the mutations at fault refused; the strict decode's error when the
        envelope itself (device_id, a mutation's mid, seq or hlc) is at fault."""
        found = _salvage(self.body, self.fmt, self.settings)
        if found is None:
            raise self.error
        return _checked(PushBody(found[0], self.fmt, found[1]), self.settings)


def decode_request(
    body: bytes, *, content_type: str | None, content_encoding: str | None, settings: Settings
) -> PushBody:
    """Size checks, gzip, and a typed decode of the raw body. Raises :class:`NeedsOutline`
    when a mutation could not be decoded (see there)."""
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
        path = match.group(1) if match else "$"
        error = Invalid(f"invalid push: {exc}", field=path)
        if path.startswith("$.mutations["):
            raise NeedsOutline(body, fmt, settings, error) from None
        raise error from None
    except _UNDECODABLE as exc:
        # Broken syntax, a lone surrogate (\ud83d: an emoji cut in half by a phone), invalid
        # UTF-8, nesting beyond Python's recursion limit: the outline tells whether one
        # mutation holds it.
        error = Malformed(f"malformed {fmt} body: {_why(exc)}", field="$")
        raise NeedsOutline(body, fmt, settings, error) from None
    return _checked(PushBody(request, fmt), settings)


def _checked(body: PushBody, settings: Settings) -> PushBody:
    """The batch-wide checks: its size, seqs counting up by one, HLCs in their layout."""
    request = body.request
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
    return body


# How deeply one mutation may nest to be decoded on its own (a visit with geo: 3 levels).
MAX_MUTATION_DEPTH = 32
_Head = Annotated[str, Meta(max_length=64)]
_SPAN_TYPES: dict[str, Any] = {
    "device_id": SyncId,
    "cursor": Annotated[str, Meta(max_length=1024)] | None,
    "drain": bool | None,
    "mid": Mid,
    "seq": Annotated[int, Meta(ge=1, le=2**53)],
    "hlc": HlcStr,
    "op": _Head,
    "id": _Head,
}
_SpanDecoder = msgspec.json.Decoder[Any] | msgspec.msgpack.Decoder[Any]
_SPAN_DECODERS: dict[str, dict[str, _SpanDecoder]] = {
    "json": {name: msgspec.json.Decoder(t) for name, t in _SPAN_TYPES.items()},
    "msgpack": {name: msgspec.msgpack.Decoder(t) for name, t in _SPAN_TYPES.items()},
}
_MUTATION_DECODERS: dict[
    str, msgspec.json.Decoder[Mutation] | msgspec.msgpack.Decoder[Mutation]
] = {
    "json": msgspec.json.Decoder(Mutation),
    "msgpack": msgspec.msgpack.Decoder(Mutation),
}
_UNDECODABLE = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def _why(exc: BaseException) -> str:
    """What an error of _UNDECODABLE says, for a message."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc})"
    return str(exc)


def _json_frame_holds(body: bytes, mutations: list[Span]) -> bool:
    """Whether the body is JSON as the outline cut it. The outline reads only the structure it
    needs, so in a body with broken syntax (a string left open swallows the next mutations) it
    could see fewer mutations than the phone sent. Python's own parser checks the syntax, with
    each mutation too deep for it replaced by 0 (the outline found their ends by counting
    brackets outside strings, which holds when the rest parses). It accepts what msgspec
    refuses but a phone may write: lone surrogates (an emoji cut in half), invalid UTF-8 (read
    as surrogate escapes); those then fail the one mutation that holds them."""
    pieces, pos = [], 0
    for span in mutations:
        if span.depth > MAX_MUTATION_DEPTH:
            pieces += [body[pos : span.start], b"0"]
            pos = span.end
    pieces.append(body[pos:])
    try:
        json.loads(b"".join(pieces).decode("utf-8", "surrogateescape"))
    except (ValueError, RecursionError):
        return False
    return True


def _salvage(
    body: bytes, fmt: str, settings: Settings
) -> tuple[PushRequest, dict[int, GridsyncError]] | None:
    """Decode the push mutation by mutation: each one that does not decode is refused alone
    (``validation_error``, with why and where) and stands in the request as a placeholder
    carrying its mid, seq and HLC, so that its seq is consumed and a resend answers
    ``duplicate``. None when the body cannot be cut into mutations; Invalid naming the field
    when the envelope is at fault (device_id, or a mutation without a readable mid, seq, hlc)."""
    try:
        shape = outline(body, fmt, settings.max_push_mutations)
    except TooManyMutations as exc:
        raise PayloadTooLarge(
            f"the batch has more than {exc.count - 1} mutations: {limits_message(settings)}"
        ) from None
    if shape is None or shape.mutations is None:
        return None
    if fmt == "json" and not _json_frame_holds(body, shape.mutations):
        return None
    decoders = _SPAN_DECODERS[fmt]

    def value(spans: dict[str, Span], name: str, where: str, default: Any = ...) -> Any:
        span = spans.get(name)
        if span is None:
            if default is ...:
                raise Invalid(f"invalid push: {name} is missing", field=f"{where}.{name}")
            return default
        try:
            return decoders[name].decode(body[span.start : span.end])
        except msgspec.ValidationError as exc:
            raise Invalid(f"invalid push: {name}: {exc}", field=f"{where}.{name}") from None
        except _UNDECODABLE as exc:
            message = f"malformed {fmt} body: {name}: {_why(exc)}"
            raise Malformed(message, field=f"{where}.{name}") from None

    device_id = value(shape.top, "device_id", "$")
    cursor = value(shape.top, "cursor", "$", None)
    drain = value(shape.top, "drain", "$", None)
    mutations: list[Mutation] = []
    refused: dict[int, GridsyncError] = {}
    for i, span in enumerate(shape.mutations):
        where = f"$.mutations[{i}]"
        if span.depth > MAX_MUTATION_DEPTH:
            why = f"it nests {span.depth} levels deep (at most {MAX_MUTATION_DEPTH})"
        else:
            try:
                mutations.append(_MUTATION_DECODERS[fmt].decode(body[span.start : span.end]))
                continue
            except msgspec.ValidationError as exc:
                why = str(exc).replace("at `$", f"at `{where}")
                match = _PATH_RE.search(why)
                where = match.group(1) if match else where
            except _UNDECODABLE as exc:
                why = _why(exc)
                if fmt == "msgpack" and type(exc) is msgspec.DecodeError:
                    return None  # broken framing (msgpack syntax is its framing)
        if span.fields is None:
            raise Invalid(f"invalid push: mutation {i} is not a map ({why})", field=where)
        # without a mid, seq and HLC to answer it by, the envelope is at fault (Invalid)
        head = Mutation(
            mid=value(span.fields, "mid", f"$.mutations[{i}]"),
            seq=value(span.fields, "seq", f"$.mutations[{i}]"),
            hlc=value(span.fields, "hlc", f"$.mutations[{i}]"),
            op="",
            id="",
        )
        for name in ("op", "id"):  # kept in the mutation log when readable
            try:
                setattr(head, name, value(span.fields, name, "", ""))
            except Invalid:
                pass
        mutations.append(head)
        refused[i] = Invalid(f"invalid mutation: {why}", field=where)
    return (
        PushRequest(device_id=device_id, mutations=mutations, cursor=cursor, drain=drain),
        refused,
    )


@dataclass(slots=True)
class _Decoded:
    """A mutation with its op's data decoded outside the write transaction."""

    index: int
    data: Any = None
    error: GridsyncError | None = None


def decode_data(
    request: PushRequest, fmt: str, refused: dict[int, GridsyncError] | None = None
) -> list[_Decoded]:
    """Each mutation's ``data`` as its op's type, or the error that rejects it: ``refused``
    (from :class:`PushBody`, the mutations refused while decoding), an unknown op, a new id
    without the REST shape, a data that does not decode."""
    registry = OPS
    refused = refused or {}
    out = []
    for i, m in enumerate(request.mutations):
        error = refused.get(i)
        if error is not None:
            out.append(_Decoded(i, error=error))
            continue
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
        if spec.new_id and _ID_RE.search(m.id) is None:
            # ids that phones make obey the shape of ids made through REST
            error = Invalid(
                f"id {m.id!r} may hold only letters, digits and _ . : - (a UUID is best)",
                field=f"$.mutations[{i}].id",
            )
            out.append(_Decoded(i, error=error))
            continue
        try:
            out.append(_Decoded(i, data=spec.decode(m.data, fmt)))
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            text = str(exc).replace("at `$", f"at `$.mutations[{i}].data")
            out.append(
                _Decoded(i, error=Invalid(f"invalid data: {text}", field=f"$.mutations[{i}].data"))
            )
        except (UnicodeDecodeError, RecursionError) as exc:
            error = Invalid(f"invalid data: {_why(exc)}", field=f"$.mutations[{i}].data")
            out.append(_Decoded(i, error=error))
    return out


# -- applying a batch: the steps of SPEC 3.1, in order ---------------------------------------


class _DeviceRow(NamedTuple):
    last_seq: int
    hlc_high_ms: int
    enrolled_at: str
    revoked_at: str | None
    draining_since: str | None


BatchHandler = Callable[[OpContext, list[BatchItem]], list[Outcome | GridsyncError]]
# (index in the batch, HLC after clock sanity, clamped, scope time): a new mutation to apply
_Pending = tuple[int, str, bool, int]


@dataclass(slots=True)
class _Batch:
    """One push being applied: what its steps read, and the answers they fill in (``results``
    by index; ``log_rows`` for ``sync_mutations``)."""

    db: sqlite_utils.Database
    principal: Principal
    settings: Settings
    clock: Clock
    now_ms: int
    mutations: list[Mutation]
    decoded: list[_Decoded]
    registry: dict[str, OpSpec]
    server: ServerClock
    results: list[MutationResult | None]
    log_rows: list[tuple] = field(default_factory=list)

    def context(self, hlc: str, mid: str, scope_ms: int) -> OpContext:
        return OpContext(
            db=self.db,
            principal=self.principal,
            settings=self.settings,
            clock=self.clock,
            hlc=hlc,
            received_ms=self.now_ms,
            server_hlc=self.server.tick,
            mid=mid,
            scope_ms=scope_ms,
        )


def apply_push(
    db: sqlite_utils.Database,
    principal: Principal,
    request: PushRequest,
    decoded: list[_Decoded],
    settings: Settings,
    clock: Clock,
    app: str | None = None,
) -> PushResponse:
    """Apply a decoded batch inside the caller's write transaction, step by step as SPEC 3.1
    names them. Only the device check and exactly once refuse a request as a whole (403, 401,
    409), and they come before any write."""
    device = _pushing_device(db, principal, request)
    now_ms = clock.now_ms()
    mutations = request.mutations
    batch = _Batch(
        db=db,
        principal=principal,
        settings=settings,
        clock=clock,
        now_ms=now_ms,
        mutations=mutations,
        decoded=decoded,
        registry=OPS,
        server=ServerClock(db, now_ms),
        results=[None] * len(mutations),
    )
    new = _exactly_once(batch, device.last_seq)
    sane = _clock_sanity(batch, new)
    pending, high_ms = _scope_times(sane, device)
    _apply_in_runs(batch, pending)  # each mutation's answer: _settle
    final = [r for r in batch.results if r is not None]
    new_last = max(device.last_seq, mutations[-1].seq) if mutations else device.last_seq
    counts = _record(batch, final, new_last, high_ms, app)
    drained = device.draining_since is not None  # and not marked false: _pushing_device
    if drained:
        _drain(batch, new_last, counts)
    return PushResponse(
        results=final,
        server_hlc=advance(batch.server.last, now_ms),
        last_seq=new_last,
        cursor=request.cursor,
        drained=drained,
    )


def _pushing_device(
    db: sqlite_utils.Database, principal: Principal, request: PushRequest
) -> _DeviceRow:
    """The token's device, which the request must name (403 ``device_mismatch``), which must
    not have been revoked since its token was checked (401 ``device_revoked``), and which, if
    it is being drained, sends its drain push: a push marked ``drain: false`` is 403
    ``device_draining`` (the client then sends everything in one push marked ``true``)."""
    if request.device_id != principal.device_id:
        raise Forbidden(
            f"device_id {request.device_id} is not this token's device ({principal.device_id})",
            code="device_mismatch",
        )
    device = _DeviceRow(
        *db.execute(
            "SELECT last_seq, hlc_high_ms, created_at, revoked_at, draining_since FROM devices "
            "WHERE id = ?",
            [principal.device_id],
        ).fetchone()
    )
    if device.revoked_at is not None:
        # Revoked since the token was checked (or a second push of a draining device that
        # raced its drain push): nothing of this request is stored.
        raise DeviceRevoked()
    if device.draining_since is not None and request.drain is False:
        raise DeviceDraining(
            "this device is being revoked: send everything it holds in one push marked "
            '"drain": true, its last; then wipe it'
        )
    return device


def _exactly_once(batch: _Batch, last_seq: int) -> list[int]:
    """Exactly once: the indexes of the batch's new mutations, in order. The others answer
    ``duplicate``: a seq at or below the device's ``last_seq``, or a mid the device sent before
    (in ``sync_mutations``) or earlier in this batch. 409 ``seq_gap`` when the first new seq is
    not the next one."""
    mutations, results, registry = batch.mutations, batch.results, batch.registry
    device_id = batch.principal.device_id
    new_start = next((i for i, m in enumerate(mutations) if m.seq > last_seq), len(mutations))
    if new_start < len(mutations) and mutations[new_start].seq != last_seq + 1:
        raise SeqGap(
            f"seq {mutations[new_start].seq} leaves a gap: the next seq of device "
            f"{device_id} is {last_seq + 1}; resend from there",
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
            for r in batch.db.execute(
                "SELECT mid FROM sync_mutations WHERE mid IN (SELECT value FROM json_each(?)) "
                "AND device_id = ?",
                [_json.encode(logged_mids).decode(), device_id],
            ).fetchall()
        }
        if logged_mids
        else set()
    )
    for i in range(new_start):
        results[i] = MutationResult(mid=mutations[i].mid, status="duplicate")
    new = []
    for i in range(new_start, len(mutations)):
        mid = mutations[i].mid
        if mid in known_mids:
            results[i] = MutationResult(mid=mid, status="duplicate")
            continue
        known_mids.add(mid)
        new.append(i)
    return new


def _clock_sanity(batch: _Batch, new: list[int]) -> list[tuple[int, str, bool]]:
    """Clock sanity: (index, HLC, clamped) of each new mutation. An HLC further ahead of the
    server's clock than ``max_clock_skew_ms`` is replaced by a fresh server HLC (clamped: its
    result says so); the newest of the others moves the server's clock forward."""
    mutations, server = batch.mutations, batch.server
    skew_limit = f"{batch.now_ms + batch.settings.max_clock_skew_ms:015d}"
    newest = ""
    out = []
    for i in new:
        hlc = mutations[i].hlc
        if hlc[:15] > skew_limit:
            out.append((i, server.tick(), True))
        else:
            if hlc > newest:
                newest = hlc
            out.append((i, hlc, False))
    if newest:
        server.observe(newest)
    return out


def _scope_times(
    sane: list[tuple[int, str, bool]], device: _DeviceRow
) -> tuple[list[_Pending], int]:
    """Scope: the time each edit claims for "was the household in scope when it was made?",
    and the device's newest time to store (``hlc_high_ms``).

    A device's HLCs only go forward (it advances its clock from every answer), so that time is
    never older than the device's earlier mutations: a phone cannot reach a household it lost
    by dating an edit back. The floor carries the newest time seen from the device, in seq
    order, across its pushes. A device holds no edit from before its enrollment (its records
    came from a pull that its token made possible), so the floor starts there too."""
    floor_ms = max(device.hlc_high_ms, parse_ms(device.enrolled_at))
    pending = []
    for i, hlc, clamped in sane:
        floor_ms = max(floor_ms, ms_of(hlc))
        pending.append((i, hlc, clamped, floor_ms))
    return pending, floor_ms


def _apply_in_runs(batch: _Batch, pending: list[_Pending]) -> None:
    """Apply in runs, in order: consecutive mutations of an op with a batch handler (visits)
    go to it as one run; every other mutation goes to its handler in a savepoint of its own, so
    that one rejected leaves no trace and blocks nothing after it (no poison pill)."""
    mutations, decoded, registry = batch.mutations, batch.decoded, batch.registry
    k = 0
    while k < len(pending):
        i, hlc, clamped, scope_ms = pending[k]
        m = mutations[i]
        d = decoded[i]
        if d.error is not None:
            _settle(batch, i, clamped, d.error)
            k += 1
            continue
        spec = registry[m.op]
        if spec.batch_handler is not None:
            k += _apply_run(batch, spec.batch_handler, pending, k)
            continue
        _settle(batch, i, clamped, _apply_one(batch, spec, m, d.data, hlc, scope_ms))
        k += 1


def _apply_run(batch: _Batch, handler: BatchHandler, pending: list[_Pending], k: int) -> int:
    """The run of one op's mutations starting at ``pending[k]`` (up to another op or a
    mutation already refused) through the op's batch handler, which keeps a rejected mutation
    from touching the others; how many mutations it took."""
    mutations, decoded, results = batch.mutations, batch.decoded, batch.results
    i, hlc, _, scope_ms = pending[k]
    op = mutations[i].op
    end = k + 1
    while end < len(pending):
        j = pending[end][0]
        if mutations[j].op != op or decoded[j].error is not None:
            break
        end += 1
    run = pending[k:end]
    items = [BatchItem(mutations[j], decoded[j].data, h, t) for j, h, _, t in run]
    outcomes = handler(batch.context(hlc, mutations[i].mid, scope_ms), items)
    for (j, _, c, _), outcome in zip(run, outcomes):
        if c or type(outcome) is not Outcome or outcome.lost or outcome.logged or outcome.ignored:
            _settle(batch, j, c, outcome)
        else:  # the common case of a run (an applied visit), without a call
            results[j] = MutationResult(mid=mutations[j].mid, status=outcome.status)
    return len(run)


def _apply_one(
    batch: _Batch, spec: OpSpec, m: Mutation, data: Any, hlc: str, scope_ms: int
) -> Outcome | GridsyncError:
    """One mutation through its handler, in a savepoint: a rejected one is rolled back alone."""
    db = batch.db
    db.execute("SAVEPOINT mutation")
    try:
        outcome: Outcome | GridsyncError = spec.handler(
            batch.context(hlc, m.mid, scope_ms), m, data
        )
    except GridsyncError as exc:
        db.execute("ROLLBACK TO mutation")
        outcome = exc
    db.execute("RELEASE mutation")
    return outcome


def _settle(batch: _Batch, i: int, clamped: bool, outcome: Outcome | GridsyncError) -> None:
    """Settle results: mutation ``i``'s answer, and its row for ``sync_mutations`` (a rejected
    one is recorded with its code, so that a resend answers ``duplicate``)."""
    m = batch.mutations[i]
    device_id, now_ms = batch.principal.device_id, batch.now_ms
    clock_flag: Literal["clamped"] | None = "clamped" if clamped else None
    if isinstance(outcome, GridsyncError):
        batch.results[i] = MutationResult(
            mid=m.mid,
            status="rejected",
            code=outcome.code,
            message=outcome.message,
            clock=clock_flag,
        )
        batch.log_rows.append(
            (
                m.mid,
                device_id,
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
        batch.results[i] = MutationResult(
            mid=m.mid,
            status=outcome.status,
            lost=lost or None,
            ignored=ignored or None,
            clock=clock_flag,
        )
    else:
        batch.results[i] = MutationResult(mid=m.mid, status=outcome.status, clock=clock_flag)
    if outcome.logged:
        batch.log_rows.append(
            (m.mid, device_id, m.seq, m.op, m.id, outcome.status, None, None, now_ms)
        )


def _record(
    batch: _Batch, final: list[MutationResult], new_last: int, high_ms: int, app: str | None
) -> Counter[str]:
    """Record the batch: the mutation log, the device's last seq and newest time, the scope
    version it pushed under, the server clock, the audit entry. The count of each status."""
    db, principal, now_ms, mutations = batch.db, batch.principal, batch.now_ms, batch.mutations
    if batch.log_rows:
        db.conn.executemany(
            "INSERT INTO sync_mutations (mid, device_id, seq, op, target_id, status, code, "
            "message, received_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            # a mid logged already (another device's, or a visit's reusing one) keeps its row
            "ON CONFLICT(mid) DO NOTHING",
            batch.log_rows,
        )
    db.execute(
        "UPDATE devices SET last_seq = ?, last_seen_at = ?, hlc_high_ms = ? WHERE id = ?",
        [new_last, iso_ms(now_ms), high_ms, principal.device_id],
    )
    sync_scope.remember(db, principal.scope)
    batch.server.save()
    counts: Counter[str] = Counter(r.status for r in final)
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
        clock=batch.clock,
    )
    return counts


def _drain(batch: _Batch, new_last: int, counts: Counter[str]) -> None:
    """Drain: the one push of a draining device is applied, so the device is revoked with this
    transaction's commit (``auth.finish_drain``)."""
    auth.finish_drain(
        batch.db,
        batch.principal.actor,
        iso_ms(batch.now_ms),
        {"mutations": len(batch.mutations), "last_seq": new_last, **counts},
    )

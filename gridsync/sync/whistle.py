"""Whistle cases on the phone path: the push ops ``whistle.raise`` and ``whistle.act`` (SPEC
3.1) and the pull source ``whistle`` (SPEC 3.2), listed in ``gridsync/sync/registry.py``.

The mutation's ``id`` is the case's client UUID. Times: deadlines count from the push's server
receipt (``ctx.received_ms``), the device's clock is kept as sent (``raised_at``, ``at``) once
``clock.device_time_ms`` has read it (else ``rejected``/``invalid_time``: year 9999 overflowed
later, when the time was shown in China's zone).
A GridsyncError (illegal_transition, already_accepted, out_of_scope, case_too_long, ...)
becomes a ``rejected`` result with its code; the rest of the batch goes on.

A device raises at most ``Settings.max_phone_raises_per_hour`` cases an hour (by server receipt;
beyond, ``rejected``/``rate_limited``): each case alerts the grid's team, and one push may carry
1,000. Only phones are limited: a web desk (a 12345 hotline intake) raises one case per request
through REST, and may need to raise many.
"""

from __future__ import annotations

from gridsync import whistle
from gridsync.clock import DAY_MS, device_time_ms
from gridsync.errors import GridsyncError, Invalid
from gridsync.models import WhistleAct, WhistleRaise
from gridsync.sync.ops import Mutation, OpContext, Outcome
from gridsync.sync.sources import SourceChange, SourceContext


def raise_case(ctx: OpContext, m: Mutation, data: WhistleRaise) -> Outcome:
    row = ctx.db.execute("SELECT raised_by FROM whistle_cases WHERE id = ?", [m.id]).fetchone()
    if row is not None and row[0] == ctx.principal.person_id:
        # The same case sent again under a new mid (a phone that lost its queue's state):
        # no second effect. Someone else's case with this id is refused (case_exists).
        return Outcome(status="duplicate")
    limit = ctx.settings.max_phone_raises_per_hour
    since = ctx.received_ms - whistle.HOUR_MS
    if whistle.raised_by_device(ctx.db, ctx.principal.device_id, since) >= limit:
        raise GridsyncError(
            f"this phone raised {limit} cases in the last hour, the most it may: each one "
            "alerts the grid's team; raise the rest later, or from the web",
            code="rate_limited",
            status=429,
        )
    whistle.raise_case(
        ctx.db, ctx.principal, m.id, data, received_ms=ctx.received_ms, settings=ctx.settings
    )
    return Outcome()


def act(ctx: OpContext, m: Mutation, data: WhistleAct) -> Outcome:
    if data.at is not None:
        try:
            device_time_ms(data.at)
        except ValueError as exc:
            raise Invalid(f"at: {exc}", code="invalid_time", field="data.at") from None
    ignored = whistle.apply_action(
        ctx.db,
        ctx.principal,
        m.id,
        data,
        now_ms=ctx.received_ms,
        settings=ctx.settings,
        device_at=data.at,
    )
    return Outcome(ignored=ignored)


def whistle_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    """Open cases and those closed in the last 30 days (``whistle.CLOSED_VISIBLE_DAYS``) before
    the pull's "now" (the request's clock), in the scope (SPEC 3.2). A case closed longer ago
    is not sent again; the phone drops closed cases past the same horizon itself."""
    horizon = ctx.now_ms - whistle.CLOSED_VISIBLE_DAYS * DAY_MS
    return [
        SourceChange(seq, case.id, "put", case)
        for seq, case in whistle.changed_cases(
            ctx.db, ctx.scope, after_seq, upto_seq, limit, closed_since_ms=horizon
        )
    ]

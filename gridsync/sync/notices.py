"""The inbox on the phone path: the pull source ``notice`` and the push op ``notice.read``
(SPEC 3.1, 3.2), listed in ``gridsync/sync/registry.py``.

A person's notices are theirs alone, whatever their scope: the source reads the token's
person (an admin's district-wide scope does not show them anyone else's inbox), and
``notice.read`` on another person's notice is ``rejected``/``not_your_notice``. Notices of the
last ``NOTICE_VISIBLE_DAYS`` (30) before the pull's "now" are sent; the phone drops older ones
itself. The mutation's ``id`` is the notice's id; ``data.notice_id``, when sent, must repeat
it. Marking a notice already read is a ``duplicate`` (no second effect, no new seq).
"""

from __future__ import annotations

from gridsync.clock import DAY_MS
from gridsync.errors import Invalid
from gridsync.models import NOTICE_VISIBLE_DAYS, NoticeRead
from gridsync.notify import inbox
from gridsync.sync.ops import Mutation, OpContext, Outcome
from gridsync.sync.sources import SourceChange, SourceContext


def read(ctx: OpContext, m: Mutation, data: NoticeRead) -> Outcome:
    if data.notice_id is not None and data.notice_id != m.id:
        raise Invalid(
            f"data.notice_id {data.notice_id!r} is not the mutation's id {m.id!r}",
            field="data.notice_id",
        )
    changed = inbox.mark_read(ctx.db, ctx.principal.person_id, m.id, ctx.received_ms)
    return Outcome() if changed else Outcome(status="duplicate")


def notice_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    since = ctx.now_ms - NOTICE_VISIBLE_DAYS * DAY_MS
    return [
        SourceChange(seq, notice.id, "put", notice)
        for seq, notice in inbox.changed_notices(
            ctx.db, ctx.scope.person_id, after_seq, upto_seq, limit, since_ms=since
        )
    ]

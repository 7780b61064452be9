"""Wire types of the outbox as operators read it (``GET /api/v1/outbox``)."""

from __future__ import annotations

from typing import Literal

import msgspec

OutboxState = Literal["queued", "sending", "sent", "failed"]


class OutboxEntry(msgspec.Struct, kw_only=True):
    """One notification and its delivery state (no URL, no secret: ``recipient`` is a tag)."""

    id: int
    kind: str
    dedup_key: str
    recipient: str
    person_id: str | None
    locale: str
    title: str
    body: str
    cause: str | None
    state: OutboxState
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None


class OutboxPage(msgspec.Struct, kw_only=True):
    items: list[OutboxEntry]
    total: int
    limit: int
    offset: int

"""Wire types of notifications: the outbox as operators read it (``GET /api/v1/outbox``), the
inbox as phones pull it (``notice``, SPEC 3.2) and mark it read (``notice.read``, SPEC 3.1),
and who cannot be reached (``gridsync report unreachable``)."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

OutboxState = Literal["queued", "sending", "sent", "failed"]

# Bounds of a notice: a title is one line, a body a few dozen (a digest lists at most 20
# households); both are cut to these lengths when written, so what a phone receives is bounded.
MAX_NOTICE_TITLE = 200
MAX_NOTICE_BODY = 4000
MAX_NOTICE_LINK = 300
# Phones receive the notices of the last 30 days (created before the pull's "now"); a phone
# drops older ones itself (the server prunes them after ``retention_days``).
NOTICE_VISIBLE_DAYS = 30


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


class Notice(msgspec.Struct, kw_only=True):
    """One notification in a person's inbox (pull ``type: "notice"``), whether or not it was
    also delivered to a channel. ``link`` is a path relative to the server (the case or the
    list it is about, e.g. ``/console/cases/ID``); ``read_at`` is set by ``notice.read``."""

    id: Annotated[str, Meta(max_length=20)]
    kind: Annotated[str, Meta(max_length=64)]
    title: Annotated[str, Meta(max_length=MAX_NOTICE_TITLE)]
    body: Annotated[str, Meta(max_length=MAX_NOTICE_BODY)]
    link: Annotated[str, Meta(max_length=MAX_NOTICE_LINK)] | None
    created_at: str
    read_at: str | None = None


class NoticeRead(msgspec.Struct, kw_only=True, frozen=True):
    """``data`` of the push op ``notice.read`` (the mutation's ``id`` is the notice's id;
    ``notice_id``, when sent, must repeat it)."""

    notice_id: Annotated[str, Meta(min_length=1, max_length=20)] | None = None


class UnreachablePerson(msgspec.Struct, kw_only=True):
    """A person who would get alerts (a role that receives whistle alerts or digests) but has
    no channel of their own, none routed to them by the Apprise config file, and no active
    (enrolled, not revoked) device: nothing tells them of an alert but the console's inbox."""

    id: str
    name: str
    roles: list[str]
    scope: list[str]
    devices_revoked: int  # devices they had, all revoked

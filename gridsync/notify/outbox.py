"""The outbox: every notification is a row written in the same transaction as its cause.

It is also the one writer of the inbox: every person an event reaches gets a ``notices`` row
in the same transaction, whether or not they have a channel (``gridsync/notify/inbox.py``
reads and marks them; phones pull them, SPEC 3.2).

``enqueue`` renders the message (per recipient locale, from ``templates/<locale>/<kind>.txt``:
first line the title, the rest the body) and inserts one row per recipient with a UNIQUE
``dedup_key`` (event key + recipient), so a cause that is retried or re-run (a resent push, a
second sweep over the same missed deadline) never queues a message twice. Delivery is the
dispatcher's job (``gridsync/notify/dispatcher.py``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
import msgspec
import sqlite_utils

from gridsync import localtime
from gridsync.db import and_given, next_seq, paged
from gridsync.models import (
    MAX_NOTICE_BODY,
    MAX_NOTICE_LINK,
    MAX_NOTICE_TITLE,
    OutboxEntry,
    OutboxPage,
)
from gridsync.notify.routing import Recipient, Router, mask_text

TEMPLATES = Path(__file__).resolve().parent / "templates"
DEFAULT_LOCALE = "zh-CN"
LOCALES = ("zh-CN", "en")
DIGEST_KINDS = frozenset({"digest_daily", "digest_weekly", "digest_conflicts"})


# -- time in the users' zone ------------------------------------------------------------------


# One owner of local time (gridsync/localtime.py); notifications show the month and day only.
zone = localtime.zone
NOTIFY_FORMAT = "%m-%d %H:%M"


def local(ms: int | None, tz: str = localtime.DEFAULT_ZONE, fmt: str = NOTIFY_FORMAT) -> str:
    return localtime.local_text(ms, tz, fmt)


def in_quiet_hours(ms: int, quiet: tuple[int, int], tz: str) -> bool:
    start, end = quiet
    if start == end:
        return False
    hour = datetime.fromtimestamp(ms / 1000, tz=zone(tz)).hour
    return (start <= hour or hour < end) if start > end else (start <= hour < end)


def end_of_quiet_hours(ms: int, quiet: tuple[int, int], tz: str) -> int:
    """``ms`` itself outside quiet hours, else the next moment quiet hours end."""
    if not in_quiet_hours(ms, quiet, tz):
        return ms
    now = datetime.fromtimestamp(ms / 1000, tz=zone(tz))
    end = now.replace(hour=quiet[1], minute=0, second=0, microsecond=0)
    if end <= now:
        end += timedelta(days=1)
    return int(end.timestamp() * 1000)


# -- templates ----------------------------------------------------------------------------------


_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(TEMPLATES)),
    undefined=jinja2.StrictUndefined,
    autoescape=False,  # plain text for chat and SMS, not HTML
    keep_trailing_newline=False,
)


def _locale(locale: str | None) -> str:
    return locale if locale in LOCALES else DEFAULT_LOCALE


@lru_cache(maxsize=8)
def labels(locale: str) -> dict[str, Any]:
    return json.loads((TEMPLATES / _locale(locale) / "labels.json").read_text("utf-8"))


def render(kind: str, locale: str, context: dict[str, Any]) -> tuple[str, str]:
    """(title, body) of a message kind in a locale (zh-CN when the locale has no template)."""
    template = _env.get_template(f"{_locale(locale)}/{kind}.txt")
    text = template.render(**context).strip()
    title, _, body = text.partition("\n")
    return title.strip(), body.strip()


# -- queueing -----------------------------------------------------------------------------------


def case_link(case_id: str) -> str:
    """The link of a notice about a case: relative to the server, so the console (and a phone
    that knows its server) resolves it; a ``base_url`` is the reader's to prepend."""
    return f"/console/cases/{quote(case_id, safe='')}"


def enqueue(
    db: sqlite_utils.Database,
    router: Router,
    *,
    event_key: str,
    kind: str,
    tags: list[str],
    context: Any,
    now_ms: int,
    cause: str | None = None,
    not_before_ms: int | None = None,
    exclude: str | None = None,
    link: str | None = None,
) -> int:
    """Queue one event's message for everyone ``tags`` reach; returns rows newly queued.

    Call inside the write transaction of the cause. ``context`` is a dict, or a callable
    ``locale -> dict`` when the context itself depends on the language (labels). ``exclude``
    is a person not to tell (the one whose own action caused the event).

    Every person the tags stand for also gets the message as a notice in their inbox (the
    ``notices`` table, pulled by their phones), whether or not they have a channel: an alert to
    a person nobody configured WeCom for is no longer dropped. ``link`` is the notice's link
    (a relative path); by default the case ``cause`` names (:func:`case_link`), else none."""
    if link is None and cause is not None:
        link = case_link(cause)
    rendered: dict[str, tuple[str, str]] = {}

    def text(locale: str) -> tuple[str, str]:
        if locale not in rendered:
            ctx = context(locale) if callable(context) else context
            rendered[locale] = render(kind, locale, ctx)
        return rendered[locale]

    people = [p for p in router.people(db, tags) if p.person_id != exclude]
    for person in people:
        title, body = text(person.locale)
        _notice(db, f"{event_key}|{person.key}", person, kind, title, body, link, cause, now_ms)
    queued = 0
    for recipient in router.recipients(db, tags, people=people):
        if exclude is not None and recipient.person_id == exclude:
            continue
        title, body = text(recipient.locale)
        cursor = db.execute(
            """INSERT INTO outbox (dedup_key, kind, recipient, person_id, locale, title, body,
                                   cause, state, next_attempt_ms, created_ms)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?)
               ON CONFLICT(dedup_key) DO NOTHING""",
            [
                f"{event_key}|{recipient.key}",
                kind,
                recipient.key,
                recipient.person_id,
                _locale(recipient.locale),
                title,
                body,
                cause,
                not_before_ms if not_before_ms is not None else now_ms,
                now_ms,
            ],
        )
        queued += cursor.rowcount
    return queued


def _notice(
    db: sqlite_utils.Database,
    dedup_key: str,
    person: Recipient,
    kind: str,
    title: str,
    body: str,
    link: str | None,
    cause: str | None,
    now_ms: int,
) -> None:
    """One notice in a person's inbox, numbered by the change seq (a phone pulls it), cut to
    the bounds of the wire type; once per dedup key (the outbox's)."""
    if db.execute("SELECT 1 FROM notices WHERE dedup_key = ?", [dedup_key]).fetchone():
        return
    db.execute(
        """INSERT INTO notices (person_id, dedup_key, kind, title, body, link, cause,
                                created_ms, seq)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            person.person_id,
            dedup_key,
            kind,
            title[:MAX_NOTICE_TITLE],
            body[:MAX_NOTICE_BODY],
            link[:MAX_NOTICE_LINK] if link is not None else None,
            cause,
            now_ms,
            next_seq(db),
        ],
    )


# -- reading ------------------------------------------------------------------------------------

_COLS = (
    "id, kind, dedup_key, recipient, person_id, locale, title, body, cause, state, attempts, "
    "next_attempt_ms, last_error, created_ms, sent_ms"
)


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def entry_from_row(row: tuple) -> OutboxEntry:
    return OutboxEntry(
        id=row[0],
        kind=row[1],
        dedup_key=row[2],
        recipient=row[3],
        person_id=row[4],
        locale=row[5],
        title=row[6],
        body=row[7],
        cause=row[8],
        state=row[9],
        attempts=row[10],
        next_attempt_at=_iso(row[11]) if row[9] in ("queued", "sending") else None,
        last_error=mask_text(row[12]) if row[12] else None,
        created_at=_iso(row[13]) or "",
        sent_at=_iso(row[14]),
    )


def list_outbox(
    db: sqlite_utils.Database,
    *,
    state: str | None = None,
    person_id: str | None = None,
    cause: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> OutboxPage:
    where, params = and_given(
        "1",
        [],
        ("state = ?", state),
        ("person_id = ?", person_id),
        ("cause = ?", cause),
        ("kind = ?", kind),
    )
    rows, total = paged(
        db, _COLS, f"outbox WHERE {where}", params, order_by="id DESC", limit=limit, offset=offset
    )
    return OutboxPage(
        items=[entry_from_row(r) for r in rows], total=total, limit=limit, offset=offset
    )


class PendingStats(msgspec.Struct, frozen=True):
    pending: int  # queued or being sent
    oldest_created_ms: int | None


def pending_stats(db: sqlite_utils.Database) -> PendingStats:
    """The backlog an operator watches (/metrics): rows not yet delivered and the oldest one's
    age. Reads only the pending rows (through ``outbox_due``), not the delivered history."""
    row = db.execute(
        "SELECT count(*), min(created_ms) FROM outbox WHERE state IN ('queued', 'sending')"
    ).fetchone()
    return PendingStats(pending=row[0], oldest_created_ms=row[1])


def counts(db: sqlite_utils.Database) -> dict[str, int]:
    rows = db.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall()
    return {state: n for state, n in rows}

"""The inbox: every notification to a person, as notices they read on their phone (and in the
console), whether or not a channel delivered it too.

The outbox writes the notices (``gridsync/notify/outbox.py``: one writer, in the transaction
of the cause); this module reads them and marks them read. A notice belongs to one person:
only they pull it (``gridsync/sync/notices.py``, scoped by the token's person, never by the
request) and only they mark it read (``notice.read``; another person's notice is rejected
``not_your_notice``). Marking takes a new change seq, so the person's other phones pull the
notice again with ``read_at`` set. Notices are pruned with the rest of the kept state after
``retention_days`` (``gridsync/retention.py``). ``tests/test_inbox.py`` checks all of it
through the reference client.
"""

from __future__ import annotations

import sqlite_utils

from gridsync.clock import iso_ms
from gridsync.db import next_seq, paged
from gridsync.errors import Forbidden, NotFound
from gridsync.models import Notice

_COLS = "id, kind, title, body, link, created_ms, read_ms, seq"


def notice_from_row(row: tuple) -> Notice:
    return Notice(
        id=str(row[0]),
        kind=row[1],
        title=row[2],
        body=row[3],
        link=row[4],
        created_at=iso_ms(row[5]),
        read_at=iso_ms(row[6]) if row[6] is not None else None,
    )


def changed_notices(
    db: sqlite_utils.Database,
    person_id: str,
    after_seq: int,
    upto_seq: int,
    limit: int,
    *,
    since_ms: int,
) -> list[tuple[int, Notice]]:
    """(seq, notice) of a person's notices created from ``since_ms`` on whose seq is in
    ``(after_seq, upto_seq]``, by seq, at most ``limit``."""
    rows = db.execute(
        f"SELECT {_COLS} FROM notices WHERE person_id = ? AND seq > ? AND seq <= ? "
        "AND created_ms >= ? ORDER BY seq LIMIT ?",
        [person_id, after_seq, upto_seq, since_ms, limit],
    ).fetchall()
    return [(r[7], notice_from_row(r)) for r in rows]


def _row_id(notice_id: str) -> int | None:
    """The row id a wire id names (decimal digits, within SQLite's integers), else None."""
    if notice_id.isascii() and notice_id.isdigit() and len(notice_id) <= 18:
        return int(notice_id)
    return None


def mark_read(db: sqlite_utils.Database, person_id: str, notice_id: str, now_ms: int) -> bool:
    """Mark one of ``person_id``'s notices read at ``now_ms`` (the server's receipt); False
    when it was read already (no change). Raises ``unknown_notice`` (404) for an id that names
    no notice (none, or pruned) and ``not_your_notice`` (403) for another person's."""
    row_id = _row_id(notice_id)
    row = (
        db.execute("SELECT person_id, read_ms FROM notices WHERE id = ?", [row_id]).fetchone()
        if row_id is not None
        else None
    )
    if row is None:
        raise NotFound(
            f"通知 {notice_id} 不存在 (no notice {notice_id!r}: it may have been pruned)",
            code="unknown_notice",
        )
    if row[0] != person_id:
        raise Forbidden(
            f"通知 {notice_id} 不是您的 (notice {notice_id} belongs to someone else)",
            code="not_your_notice",
        )
    if row[1] is not None:
        return False
    db.execute(
        "UPDATE notices SET read_ms = ?, seq = ? WHERE id = ?", [now_ms, next_seq(db), row_id]
    )
    return True


def list_notices(
    db: sqlite_utils.Database,
    person_id: str,
    *,
    unread: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Notice], int]:
    """A person's notices, newest first (the console's inbox); ``unread``: only those not
    yet read."""
    where = "person_id = ?" + (" AND read_ms IS NULL" if unread else "")
    rows, total = paged(
        db,
        _COLS,
        f"notices WHERE {where}",
        [person_id],
        order_by="id DESC",
        limit=limit,
        offset=offset,
    )
    return [notice_from_row(r) for r in rows], total

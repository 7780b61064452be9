"""Delivers queued outbox rows through Apprise, with retries and exponential backoff.

Delivery guarantee: **at least once, duplicates only after a crash.** A row is claimed in its own
write (state ``sending``, ``attempts + 1``, a lease in ``next_attempt_ms``), sent, and then
marked in its own write: each URL that accepted the message is added to ``delivered`` at once
(so a retry goes only to the URLs that failed), and the row becomes ``sent`` when every URL has
it. If the process dies between Apprise's send and that mark, the lease runs out and the row is
sent again. The other choice (mark first, send after) would lose an alert on a crash; for
deadline alerts a duplicate is the cheaper mistake, and the window is one HTTP call wide.
A crash *before* the send (after the cause's transaction queued the row) loses nothing: the row
is still ``queued`` when the process comes back.

Apprise is synchronous and may block on the network: the dispatcher runs on a worker thread
(never on the event loop), and every Apprise plugin gets the configured socket timeouts.
URLs are secrets: errors are stored and logged only through :func:`routing.mask_text`, and
Apprise's own log lines pass through the same masking (``routing.REDACTION``, installed on the
``apprise`` logger when this module imports ``routing``), with the secret parts of the URL being
sent masked as well.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import apprise
import msgspec
import sqlite_utils

from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.notify.outbox import DIGEST_KINDS, end_of_quiet_hours, in_quiet_hours
from gridsync.notify.routing import (
    REDACTION,
    Router,
    mask_text,
    mask_url,
    router_for,
    url_id,
    url_secrets,
)

log = logging.getLogger("gridsync.notify")

_list_decoder = msgspec.json.Decoder(list[str])


@dataclass
class Claimed:
    id: int
    kind: str
    recipient: str
    person_id: str | None
    title: str
    body: str
    attempts: int
    delivered: list[str]


@dataclass
class DispatchResult:
    sent: int = 0
    retrying: int = 0
    failed: int = 0
    postponed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "sent": self.sent,
            "retrying": self.retrying,
            "failed": self.failed,
            "postponed": self.postponed,
        }


def backoff_ms(settings: Settings, attempts: int) -> int:
    """Delay before attempt ``attempts + 1``: base * 2^(attempts-1), capped."""
    n = settings.notify
    delay = n.retry_base_seconds * (2 ** max(attempts - 1, 0))
    return int(min(delay, n.retry_max_seconds) * 1000)


def _claim(
    db: sqlite_utils.Database, now_ms: int, lease_ms: int, limit: int, settings: Settings
) -> tuple[list[Claimed], int]:
    """Claim due rows (and rows whose previous claim's lease ran out: a crashed sender)."""
    rows = db.execute(
        "SELECT id, kind, recipient, person_id, title, body, attempts, delivered FROM outbox "
        "WHERE state IN ('queued', 'sending') AND next_attempt_ms <= ? "
        "ORDER BY next_attempt_ms, id LIMIT ?",
        [now_ms, limit],
    ).fetchall()
    quiet = settings.notify.quiet_hours
    tz = settings.timezone
    claimed, postponed = [], 0
    for r in rows:
        if r[1] in DIGEST_KINDS and in_quiet_hours(now_ms, quiet, tz):
            db.execute(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = ? WHERE id = ?",
                [end_of_quiet_hours(now_ms, quiet, tz), r[0]],
            )
            postponed += 1
            continue
        db.execute(
            "UPDATE outbox SET state = 'sending', attempts = attempts + 1, "
            "next_attempt_ms = ? WHERE id = ?",
            [now_ms + lease_ms, r[0]],
        )
        claimed.append(
            Claimed(r[0], r[1], r[2], r[3], r[4], r[5], r[6] + 1, _list_decoder.decode(r[7]))
        )
    return claimed, postponed


def _mark_delivered(db: sqlite_utils.Database, row_id: int, delivered: list[str]) -> None:
    db.execute(
        "UPDATE outbox SET delivered = ? WHERE id = ?",
        [msgspec.json.encode(delivered).decode(), row_id],
    )


def _finish(
    db: sqlite_utils.Database,
    row_id: int,
    *,
    done: bool,
    error: str | None,
    now_ms: int,
    next_ms: int | None,
) -> None:
    if done:
        db.execute("UPDATE outbox SET state = 'sent', sent_ms = ? WHERE id = ?", [now_ms, row_id])
    elif next_ms is None:
        db.execute(
            "UPDATE outbox SET state = 'failed', last_error = ? WHERE id = ?", [error, row_id]
        )
    else:
        db.execute(
            "UPDATE outbox SET state = 'queued', next_attempt_ms = ?, last_error = ? WHERE id = ?",
            [next_ms, error, row_id],
        )


def send_one(url: str, title: str, body: str, timeout: float) -> str | None:
    """Send through one Apprise URL; None on success, else a masked error."""
    secrets = url_secrets(url)
    with REDACTION.guard([url]):
        server = apprise.Apprise.instantiate(url)
    if server is None:
        return f"{mask_url(url)}: not a valid Apprise URL"
    server.socket_connect_timeout = timeout
    server.socket_read_timeout = timeout
    if "format=" not in url:  # our messages are plain text; keep their lines (e-mail too)
        server.notify_format = apprise.NotifyFormat.TEXT
    with REDACTION.guard([url]) as notes:  # Apprise's log lines about it are masked too
        try:
            ok = server.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT)
        except Exception as exc:  # a plugin bug must not stop the dispatcher
            ok = False
            notes.append((logging.ERROR, f"the Apprise plugin raised {type(exc).__name__}"))
    if ok:
        return None
    reason = notes[-1][1].strip() if notes else "delivery failed"
    return f"{mask_url(url)}: {mask_text(reason, secrets)}"


def _no_progress(_n: int) -> None:
    pass


class Dispatcher:
    """Delivers due outbox rows. ``run_once`` is synchronous: call it from a worker thread."""

    def __init__(
        self, store: Store, settings: Settings, clock: Clock, router: Router | None = None
    ):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.router = router or router_for(settings.notify.apprise_config, settings.notify.locale)
        self.workers = max(1, settings.notify.delivery_workers)
        self._lock = threading.Lock()  # guards the shared DispatchResult counters

    def run_once(
        self,
        limit: int = 200,
        steps: Callable[[str, int], Callable[[int], None]] | None = None,
    ) -> DispatchResult:
        """Deliver what is due, ``limit`` rows a claim, until nothing due is left. ``steps``
        (label, total) -> advance: a progress bar for ``gridsync sweep`` on a terminal."""
        result = DispatchResult()
        timeout = self.settings.notify.timeout_seconds
        lease_ms = int((timeout * 4 + 60) * 1000)
        advance: Callable[[int], None] = _no_progress
        if steps is not None:
            due = self.store.read(
                lambda db: db.execute(
                    "SELECT count(*) FROM outbox WHERE state IN ('queued', 'sending') "
                    "AND next_attempt_ms <= ?",
                    [self.clock.now_ms()],
                ).fetchone()[0]
            )
            advance = steps("delivery", due)
        while True:
            claimed, postponed = self.store.write(
                _claim, self.clock.now_ms(), lease_ms, limit, self.settings
            )
            result.postponed += postponed

            # URLs are looked up here, in one read: the pool's threads only talk to the network
            # and hand their writes to the writer thread (no reader connection per thread).
            def read_urls(db: sqlite_utils.Database, claimed: list = claimed) -> dict:
                return {
                    row.id: self.router.urls(db, row.recipient, row.person_id) for row in claimed
                }

            urls = self.store.read(read_urls)
            if len(claimed) <= 1 or self.workers <= 1:
                for row in claimed:
                    self._deliver(row, urls[row.id], result)
            else:
                with ThreadPoolExecutor(
                    max_workers=min(self.workers, len(claimed)),
                    thread_name_prefix="gridsync-deliver",
                ) as pool:
                    futures = [
                        pool.submit(self._deliver, row, urls[row.id], result) for row in claimed
                    ]
                    for future in futures:
                        future.result()
            advance(len(claimed) + postponed)
            if len(claimed) + postponed < limit:
                return result

    def _count(self, result: DispatchResult, name: str) -> None:
        with self._lock:
            setattr(result, name, getattr(result, name) + 1)

    def _deliver(self, row: Claimed, urls: list[str], result: DispatchResult) -> None:
        delivered = list(row.delivered)
        errors: list[str] = []
        for url in urls:
            uid = url_id(url)
            if uid in delivered:
                continue
            error = send_one(url, row.title, row.body, self.settings.notify.timeout_seconds)
            if error is None:
                delivered.append(uid)
                self.store.write(_mark_delivered, row.id, delivered)
            else:
                errors.append(error)
        now = self.clock.now_ms()
        if not urls:
            errors.append(f"no delivery channel for {row.recipient}")
            self.store.write(_finish, row.id, done=False, error=errors[0], now_ms=now, next_ms=None)
            self._count(result, "failed")
            return
        if not errors:
            self.store.write(_finish, row.id, done=True, error=None, now_ms=now, next_ms=None)
            self._count(result, "sent")
            return
        error = "; ".join(errors)[:2000]
        log.warning("outbox %s attempt %s failed: %s", row.id, row.attempts, error)
        with self._lock:
            result.errors.append(error)
        if row.attempts >= self.settings.notify.max_attempts:
            self.store.write(_finish, row.id, done=False, error=error, now_ms=now, next_ms=None)
            self._count(result, "failed")
        else:
            self.store.write(
                _finish,
                row.id,
                done=False,
                error=error,
                now_ms=now,
                next_ms=now + backoff_ms(self.settings, row.attempts),
            )
            self._count(result, "retrying")

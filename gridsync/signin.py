"""Signing in to the web console: one-time links and browser sessions (issue 16).

Nobody has a password. A link (``gridsync console link --person ID``, or
``POST /api/v1/console/links``: an admin for anyone, a phone for its own person) is a random
256-bit token in a URL, used **once**, valid :data:`LINK_MINUTES` minutes. Opening it (a POST
from the page the link shows, so a chat app's link preview cannot use it up) starts a
server-side session: a second random token, held by the browser in an HttpOnly cookie. As with
device tokens (:mod:`gridsync.auth`) only SHA-256 hashes of both are stored, so a copy of the
database signs nobody in.

A session stands for its person exactly as a phone does: :func:`authenticate_session` answers
the same :class:`~gridsync.auth.Principal` (roles and scope resolved by the same
:class:`~gridsync.auth.ScopeCache`), so every page calls the domain with the scope, masking,
audit and refusals the REST API has. The principal's ``device_id`` is ``console:<session id>``,
which is what the audit log shows. Sessions are listed beside the person's devices and revoked
like a phone (:func:`revoke_session`); sign-in and sign-out are audited.

Forms carry a CSRF token derived from the session's secret (:func:`csrf_token`): nothing more
to store, and unknowable to another site. ``tests/test_console.py`` checks all of it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.auth import Principal, ScopeCache, hash_token
from gridsync.clock import iso_ms
from gridsync.errors import Forbidden, NotFound, Unauthorized
from gridsync.models import ConsoleSession
from gridsync.org import get_person, resolve_scope

LINK_MINUTES = 15
LINK_PREFIX = "gl1_"
SESSION_PREFIX = "gc1_"
CONSOLE_DEVICE = "console:"  # the principal's device id: console:<session id>


def safe_next(path: str | None) -> str:
    """A path inside the console to land on after signing in, or "" (an open redirect to
    another site, ``//evil`` or ``/console/../x``, is dropped)."""
    if not path or len(path) > 500 or not path.startswith("/console"):
        return ""
    if "//" in path or "\\" in path or ".." in path or any(ord(c) < 32 for c in path):
        return ""
    return path


def create_link(
    db: sqlite_utils.Database,
    person_id: str,
    actor: Actor,
    *,
    now_ms: int,
    next_path: str = "",
) -> tuple[str, int]:
    """A new one-time sign-in token for ``person_id`` and when it expires (ms). Only its hash
    is kept; the token is returned once."""
    person = get_person(db, person_id)  # NotFound
    if not person.active:
        raise Forbidden(f"{person_id} is no longer active", code="person_inactive")
    token = LINK_PREFIX + secrets.token_urlsafe(32)
    expires = now_ms + LINK_MINUTES * 60_000
    db.execute(
        "INSERT INTO console_links (token_hash, person_id, created_ms, expires_ms, next_path, "
        "created_by) VALUES (?, ?, ?, ?, ?, ?)",
        [hash_token(token), person_id, now_ms, expires, safe_next(next_path), actor.person_id],
    )
    # links nobody opened are of no use a day later
    db.execute("DELETE FROM console_links WHERE expires_ms < ?", [now_ms - 86_400_000])
    audit.record(db, actor, "console.link", target=person_id, detail={"expires_ms": expires})
    return token, expires


def check_link(db: sqlite_utils.Database, token: str, *, now_ms: int) -> str:
    """The person a link would sign in (without using it up), or ``401 link_invalid``."""
    row = db.execute(
        "SELECT person_id, expires_ms, used_ms FROM console_links WHERE token_hash = ?",
        [hash_token(token)],
    ).fetchone()
    if row is None:
        raise Unauthorized("this sign-in link is unknown", code="link_invalid")
    if row[2] is not None:
        raise Unauthorized(
            "this sign-in link was used already: ask for a new one", code="link_used"
        )
    if row[1] <= now_ms:
        raise Unauthorized("this sign-in link has expired: ask for a new one", code="link_expired")
    return str(row[0])


@dataclass(frozen=True)
class Opened:
    session_id: str
    token: str  # the cookie's value, shown once
    person_id: str
    expires_ms: int
    next_path: str


def open_link(
    db: sqlite_utils.Database,
    token: str,
    *,
    now_ms: int,
    session_hours: int,
    user_agent: str = "",
) -> Opened:
    """Use a link (once) and start a session. A used, expired or unknown link is a 401 whose
    code says which."""
    person_id = check_link(db, token, now_ms=now_ms)
    used = db.execute(
        "UPDATE console_links SET used_ms = ? WHERE token_hash = ? AND used_ms IS NULL",
        [now_ms, hash_token(token)],
    ).rowcount
    if used != 1:  # pragma: no cover - one writer: check_link saw it unused in this transaction
        raise Unauthorized("this sign-in link was used already", code="link_used")
    next_path = db.execute(
        "SELECT next_path FROM console_links WHERE token_hash = ?", [hash_token(token)]
    ).fetchone()[0]
    session_id = "cs-" + secrets.token_hex(8)
    session_token = SESSION_PREFIX + secrets.token_urlsafe(32)
    expires = now_ms + session_hours * 3_600_000
    db.execute(
        "INSERT INTO console_sessions (id, person_id, token_hash, created_ms, expires_ms, "
        "last_seen_ms, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            session_id,
            person_id,
            hash_token(session_token),
            now_ms,
            expires,
            now_ms,
            user_agent[:200],
        ],
    )
    audit.record(
        db,
        Actor(person_id, CONSOLE_DEVICE + session_id),
        "console.signin",
        target=session_id,
        detail={"expires_ms": expires},
    )
    return Opened(session_id, session_token, person_id, expires, next_path)


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session's forms: an HMAC of the session's secret, so it needs no
    storage and no other site can know it."""
    return hmac.new(session_token.encode(), b"gridsync-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(session_token: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(csrf_token(session_token), str(given))


def authenticate_session(
    db: sqlite_utils.Database, token: str | None, scopes: ScopeCache | None, *, now_ms: int
) -> Principal:
    """The principal a session cookie stands for, as :func:`gridsync.auth.authenticate` answers
    for a device token; ``401 session_expired`` (or ``session_revoked``, ``invalid_token``) when
    it stands for nobody now."""
    if not token:
        raise Unauthorized("sign in with a one-time link", code="unauthorized")
    row = db.execute(
        "SELECT s.id, s.person_id, s.expires_ms, s.revoked_ms, p.roles, p.active, "
        "p.scope_version, (SELECT group_concat(unit_id, ' ') FROM person_scope x "
        "WHERE x.person_id = p.id), (SELECT max(seq) FROM org_units) FROM console_sessions s "
        "JOIN people p ON p.id = s.person_id WHERE s.token_hash = ?",
        [hash_token(token)],
    ).fetchone()
    if row is None:
        raise Unauthorized("unknown session", code="invalid_token")
    if row[3] is not None:
        raise Unauthorized("this session was signed out or revoked", code="session_revoked")
    if row[2] <= now_ms:
        raise Unauthorized("this session has expired", code="session_expired")
    if not row[5]:
        raise Unauthorized("this person is no longer active", code="person_inactive")
    scope = (
        scopes.get(db, row[1], (row[1], row[4], row[6], row[7], row[8]))
        if scopes
        else resolve_scope(db, row[1])
    )
    return Principal(
        person_id=row[1],
        device_id=CONSOLE_DEVICE + row[0],
        roles=frozenset(msgspec.json.decode(row[4])),
        scope=scope,
    )


def session_id_of(principal: Principal) -> str | None:
    if principal.device_id.startswith(CONSOLE_DEVICE):
        return principal.device_id[len(CONSOLE_DEVICE) :]
    return None


def touch(db: sqlite_utils.Database, session_id: str, now_ms: int) -> None:
    """Record when a session was last used (at most once a minute: it is a write)."""
    db.execute(
        "UPDATE console_sessions SET last_seen_ms = ? WHERE id = ? AND last_seen_ms < ?",
        [now_ms, session_id, now_ms - 60_000],
    )


def _session(row: tuple, now_ms: int) -> ConsoleSession:
    return ConsoleSession(
        id=row[0],
        person_id=row[1],
        created_at=iso_ms(row[2]),
        expires_at=iso_ms(row[3]),
        last_seen_at=iso_ms(row[4]),
        revoked_at=iso_ms(row[5]) if row[5] is not None else None,
        user_agent=row[6],
        active=row[5] is None and row[3] > now_ms,
    )


_COLS = "id, person_id, created_ms, expires_ms, last_seen_ms, revoked_ms, user_agent"


def list_sessions(
    db: sqlite_utils.Database, *, person_id: str | None, now_ms: int, limit: int = 100
) -> list[ConsoleSession]:
    """Console sessions, newest first: a person's (``person_id``) or everyone's (``None``:
    admins). Sessions ended more than a week ago are left out."""
    since = now_ms - 7 * 86_400_000
    where = "(revoked_ms IS NULL OR revoked_ms > ?) AND expires_ms > ?"
    params: list[int | str] = [since, since]
    if person_id is not None:
        where += " AND person_id = ?"
        params.append(person_id)
    rows = db.execute(
        f"SELECT {_COLS} FROM console_sessions WHERE {where} ORDER BY created_ms DESC, id LIMIT ?",
        [*params, limit],
    ).fetchall()
    return [_session(r, now_ms) for r in rows]


def revoke_session(
    db: sqlite_utils.Database, principal: Principal, session_id: str, *, now_ms: int
) -> ConsoleSession:
    """End a session: an admin any, a person their own (another's is not found, as devices
    are). Its cookie signs nobody in from now on. Signing out is revoking one's own."""
    row = db.execute(f"SELECT {_COLS} FROM console_sessions WHERE id = ?", [session_id]).fetchone()
    if row is None or (not principal.has_role("admin") and row[1] != principal.person_id):
        raise NotFound(f"no console session {session_id}")
    if row[5] is None:
        db.execute("UPDATE console_sessions SET revoked_ms = ? WHERE id = ?", [now_ms, session_id])
    own = session_id_of(principal) == session_id
    audit.record(
        db,
        principal.actor,
        "console.signout" if own else "console.revoke",
        target=session_id,
        detail={"person_id": row[1]},
    )
    row = db.execute(f"SELECT {_COLS} FROM console_sessions WHERE id = ?", [session_id]).fetchone()
    return _session(row, now_ms)


def link_url(base_url: str, token: str) -> str:
    """Where a sign-in token is opened: ``base_url`` + ``/console/login/<token>`` (the path
    alone without a ``base_url``)."""
    return base_url.rstrip("/") + "/console/login/" + token

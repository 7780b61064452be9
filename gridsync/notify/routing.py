"""Who gets a notification, and through which Apprise URLs.

Routing uses tags, the way Apprise does:

- ``member:ID`` — one person;
- ``grid:ID`` — the grid's team: the grid workers (网格员), members and branch secretaries
  working that grid;
- ``branch:ID:secretary``, ``community:ID:secretary``, ``street:ID:duty``, ``dept:ID``,
  ``district:ID:duty`` — the people holding that role in that unit.

A tag resolves to URLs in two places: the Apprise YAML config (``Settings.notify.apprise_config``,
Apprise's own ``tag:`` mechanism, e.g. a WeCom group bot for ``community:c1:secretary``) and the
people the tag stands for (``people.channels``, each person's own Apprise URLs).

At enqueue time a tag is expanded into *recipients*: one per person (key ``member:ID``, their own
locale) and one for the tag itself when the config file routes it somewhere. A person reached by
two tags of the same event gets one message. URLs are looked up again at delivery time, so the
outbox never stores a secret and channel changes apply to messages still queued.

URLs carry secrets (bot keys, passwords): :func:`mask_url` is the only form of a URL that may be
logged or shown.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import apprise
import msgspec
import sqlite_utils

ROLE_TAGS = {
    # tag pattern -> (unit kind, role)
    "branch": "branch_secretary",
    "community": "community_secretary",
    "street": "street",
    "dept": "department",
    "district": "admin",
}

_urls_decoder = msgspec.json.Decoder(list[str])


@dataclass(frozen=True)
class Recipient:
    key: str  # member:ID or an org tag routed by the config file
    person_id: str | None
    locale: str


def url_id(url: str) -> str:
    """A short stable id of a URL (for the delivered list and for masked display)."""
    return hashlib.sha256(url.encode()).hexdigest()[:10]


# A URL not already masked; it does not end in punctuation ("url: error" keeps its colon).
_URL_RE = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.\-]{1,20})://(?!\*\*\*)[^\s'\"<>]*[^\s'\"<>:;,.)]")


def mask_url(url: str) -> str:
    """``wecombot://***#1a2b3c4d5e``: the scheme and a hash, never a key, host path or password."""
    scheme = url.split("://", 1)[0] if "://" in url else "url"
    return f"{scheme}://***#{url_id(url)}"


def mask_text(text: str, secrets: list[str] = ()) -> str:  # type: ignore[assignment]
    """Mask every URL and every known secret in free text (log lines, error messages)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, mask_url(secret) if "://" in secret else "***")
    return _URL_RE.sub(lambda m: f"{m.group(1)}://***", text)


def people_for_tag(db: sqlite_utils.Database, tag: str) -> list[str]:
    """Active people a tag stands for."""
    parts = tag.split(":")
    if parts[0] == "member" and len(parts) == 2:
        row = db.execute("SELECT id FROM people WHERE id = ? AND active = 1", [parts[1]]).fetchone()
        return [row[0]] if row else []
    if parts[0] == "grid" and len(parts) == 2:
        rows = db.execute(
            """
            SELECT DISTINCT p.id FROM people p
            WHERE p.active = 1
              AND EXISTS (SELECT 1 FROM json_each(p.roles)
                          WHERE value IN ('grid_worker', 'member', 'branch_secretary'))
              AND (p.branch_id IN (SELECT id FROM org_units WHERE kind = 'branch' AND grid_id = ?)
                   OR EXISTS (SELECT 1 FROM person_scope s LEFT JOIN org_units b ON b.id = s.unit_id
                              WHERE s.person_id = p.id
                                AND (s.unit_id = ? OR (b.kind = 'branch' AND b.grid_id = ?))))
            ORDER BY p.id
            """,
            [parts[1], parts[1], parts[1]],
        ).fetchall()
        return [r[0] for r in rows]
    if parts[0] in ROLE_TAGS and len(parts) in (2, 3):
        role = ROLE_TAGS[parts[0]]
        unit = parts[1]
        rows = db.execute(
            """
            SELECT DISTINCT p.id FROM people p
            WHERE p.active = 1 AND EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = ?)
              AND (p.branch_id = ? OR EXISTS (SELECT 1 FROM person_scope s
                                              WHERE s.person_id = p.id AND s.unit_id = ?))
            ORDER BY p.id
            """,
            [role, unit, unit],
        ).fetchall()
        return [r[0] for r in rows]
    return []


def person_channels(db: sqlite_utils.Database, person_id: str) -> list[str]:
    row = db.execute("SELECT channels FROM people WHERE id = ?", [person_id]).fetchone()
    if row is None or not row[0]:
        return []
    try:
        return [u for u in _urls_decoder.decode(row[0]) if u]
    except msgspec.DecodeError:
        return []


class Router:
    """Resolves tags to recipients and URLs. Holds the parsed Apprise config file (re-read when
    the file changes)."""

    def __init__(self, config_path: str | None, default_locale: str = "zh-CN"):
        self.config_path = config_path
        self.default_locale = default_locale
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._config_urls: dict[str, list[str]] = {}

    def _config(self) -> dict[str, list[str]]:
        """Tag -> URLs of the Apprise config file (parsed by Apprise itself)."""
        if not self.config_path:
            return {}
        path = Path(self.config_path)
        try:
            mtime = path.stat().st_mtime
        except OSError:
            return {}
        with self._lock:
            if mtime != self._mtime:
                config = apprise.AppriseConfig()
                config.add(str(path))
                servers = apprise.Apprise()
                servers.add(config)
                table: dict[str, list[str]] = {}
                for server in servers:
                    for tag in server.tags:
                        table.setdefault(str(tag), []).append(server.url(privacy=False))
                self._config_urls = table
                self._mtime = mtime
            return self._config_urls

    def config_urls(self, tag: str) -> list[str]:
        return list(self._config().get(tag, []))

    def recipients(self, db: sqlite_utils.Database, tags: list[str]) -> list[Recipient]:
        """The recipients of one event addressed to ``tags`` (people de-duplicated); only those
        with somewhere to deliver to."""
        out: dict[str, Recipient] = {}
        for tag in tags:
            if self.config_urls(tag) and tag not in out:
                out[tag] = Recipient(tag, None, self.default_locale)
            for person_id in people_for_tag(db, tag):
                key = f"member:{person_id}"
                if key in out:
                    continue
                if not person_channels(db, person_id) and not self.config_urls(key):
                    continue
                row = db.execute("SELECT locale FROM people WHERE id = ?", [person_id]).fetchone()
                out[key] = Recipient(
                    key, person_id, (row[0] if row else None) or self.default_locale
                )
        return list(out.values())

    def urls(
        self, db: sqlite_utils.Database, recipient_key: str, person_id: str | None
    ) -> list[str]:
        """Where a queued message goes now: config URLs for its key plus the person's own."""
        urls = self.config_urls(recipient_key)
        if person_id:
            urls += person_channels(db, person_id)
        return list(dict.fromkeys(urls))  # de-duplicated, in order


_routers: dict[tuple[str | None, str], Router] = {}
_routers_lock = threading.Lock()


def router_for(config_path: str | None, locale: str = "zh-CN") -> Router:
    """One Router per config file per process."""
    with _routers_lock:
        key = (config_path, locale)
        if key not in _routers:
            _routers[key] = Router(config_path, locale)
        return _routers[key]

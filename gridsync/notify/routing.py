"""Who gets a notification, and through which Apprise URLs.

Routing uses tags, the way Apprise does:

- ``member:ID`` — one person;
- ``grid:ID`` — the grid's team: the grid workers (网格员), members and branch secretaries
  working that grid;
- ``branch:ID:secretary``, ``community:ID:secretary``, ``street:ID:duty``, ``dept:ID``,
  ``district:ID:duty``, ``supervisor:ID`` (a district's 督办) — the people holding that role
  in that unit.

A tag resolves to URLs in two places: the Apprise YAML config (``Settings.notify.apprise_config``,
Apprise's own ``tag:`` mechanism, e.g. a WeCom group bot for ``community:c1:secretary``) and the
people the tag stands for (``people.channels``, each person's own Apprise URLs).

At enqueue time a tag is expanded into *recipients*: one per person (key ``member:ID``, their own
locale) and one for the tag itself when the config file routes it somewhere. A person reached by
two tags of the same event gets one message. URLs are looked up again at delivery time, so the
outbox never stores a secret and channel changes apply to messages still queued.

URLs carry secrets (bot keys, passwords): :func:`mask_url` is the only form of a URL that may be
logged or shown. Apprise's own log lines go through the same masking (:class:`LogRedaction`, a
filter on the ``apprise`` logger and on urllib3's request lines, installed when this module is
imported, so before any dispatcher, router or check runs): Apprise logs the URLs it loads and
posts to, its "privacy" form keeps a key's first and last characters (``wecombot://0...f``), and
a plugin may echo a part it rejects. ``tests/test_notify.py`` delivers for real and reads every
record.

A channel URL is checked with Apprise's own parser when it is saved (:func:`check_channels`,
called by ``org.add_people``: the API and the CLI), and the Apprise config file when the server or
a sweep starts (:func:`check_config`): a URL Apprise cannot read is refused then, not found out
at the first alert.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import apprise
import msgspec
import sqlite_utils

from gridsync.errors import Invalid
from gridsync.models import MAX_CHANNELS, UnreachablePerson

log = logging.getLogger("gridsync.notify")

ROLE_TAGS = {
    # tag pattern -> (unit kind, role)
    "branch": "branch_secretary",
    "community": "community_secretary",
    "street": "street",
    "dept": "department",
    "district": "admin",
    "supervisor": "supervisor",  # supervisor:DISTRICT: the district's 督办
}
# Who ``grid:ID`` stands for (the grid's team).
GRID_TEAM_ROLES = ("grid_worker", "member", "branch_secretary")
# The roles some tag stands for: the people who would get alerts and digests
# (``gridsync report unreachable`` lists those of them nothing can reach).
ALERTED_ROLES = frozenset(GRID_TEAM_ROLES) | frozenset(ROLE_TAGS.values())

_urls_decoder = msgspec.json.Decoder(list[str])
_strings = msgspec.json.Decoder(list[str])
_json_roles = msgspec.json.encode(list(GRID_TEAM_ROLES)).decode()


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


def mask_text(text: str, secrets: Sequence[str] = ()) -> str:
    """Mask every URL and every known secret in free text (log lines, error messages)."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, mask_url(secret) if "://" in secret else "***")
    return _URL_RE.sub(lambda m: f"{m.group(1)}://***", text)


def url_secrets(url: str) -> list[str]:
    """The parts of a URL that may be secret (password, user, path segments, query values), to
    mask wherever they might be echoed (Apprise's own log lines)."""
    try:
        parts = urlsplit(url)
        found = [url, parts.password or "", parts.username or ""]
        found += [unquote(seg) for seg in parts.path.split("/")]
        found += [v for _, v in parse_qsl(parts.query)]
        if parts.scheme not in ("json", "xml", "form", "http", "https", "mailto", "mailtos"):
            found.append(parts.hostname or "")  # bot keys live in the "host" of many schemes
    except ValueError:
        return [url]
    return [s for s in found if len(s) >= 6]


# -- Apprise's log lines -----------------------------------------------------------------------

REDACTED_LOGGERS = ("apprise", "urllib3.connectionpool")  # the request line carries the path


@dataclass
class _Guard:
    secrets: tuple[str, ...] = ()
    notes: list[tuple[int, str]] | None = None  # (level, masked text) of warnings and errors
    quiet: bool = False


class LogRedaction(logging.Filter):
    """Rewrites each record of the loggers it filters through :func:`mask_text`: every URL, and
    every secret part of the URLs this thread is sending to or checking (:meth:`guard`).

    Inside :meth:`guard` it also collects the masked text of each warning and error (the reason
    a delivery failed, or why Apprise refused a URL) and, with ``quiet``, keeps them out of the
    logs (a URL refused while it is being saved is the client's mistake, answered as a 400)."""

    def __init__(self) -> None:
        super().__init__("gridsync-redaction")
        self._local = threading.local()

    def _state(self) -> _Guard:
        state = getattr(self._local, "state", None)
        if state is None:
            state = self._local.state = _Guard()
        return state

    @contextmanager
    def guard(self, urls: Iterable[str], *, quiet: bool = False) -> Iterator[list[tuple[int, str]]]:
        """Mask the secret parts of ``urls`` too while the block runs on this thread; yields
        the ``(level, text)`` of each warning and error logged meanwhile."""
        outer = self._state()
        notes: list[tuple[int, str]] = []
        secrets = tuple(s for url in urls for s in url_secrets(url))
        self._local.state = _Guard((*outer.secrets, *secrets), notes, quiet)
        try:
            yield notes
        finally:
            self._local.state = outer

    def filter(self, record: logging.LogRecord) -> bool:
        state = self._state()
        try:
            text = record.getMessage()
        except Exception:  # a plugin's bad format string: still never log it unmasked
            text = str(record.msg)
        record.msg, record.args = mask_text(text, list(state.secrets)), None
        if record.exc_info:  # formatted here, masked, and logged as text
            record.exc_text = record.exc_text or logging.Formatter().formatException(
                record.exc_info
            )
            record.exc_info = None
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text, list(state.secrets))
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info, list(state.secrets))
        if state.notes is not None and record.levelno >= logging.WARNING:
            state.notes.append((record.levelno, record.msg))
            return not state.quiet
        return True


REDACTION = LogRedaction()


def install_log_redaction() -> None:
    """Put :data:`REDACTION` on Apprise's logger and urllib3's (idempotent)."""
    for name in REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if REDACTION not in logger.filters:
            logger.addFilter(REDACTION)


install_log_redaction()


# -- checking URLs before they are saved --------------------------------------------------------


def channel_problem(url: str) -> str | None:
    """Why Apprise cannot send to ``url`` (None if it can). Parses only: nothing is sent."""
    with REDACTION.guard([url], quiet=True) as notes:
        try:
            server = apprise.Apprise.instantiate(url)
        except Exception as exc:  # a plugin bug is a URL we cannot use either
            return f"the Apprise plugin raised {type(exc).__name__}"
    if server is not None:
        return None
    reasons = dict.fromkeys(text.strip() for _, text in notes)  # in order, once each
    return "; ".join(reasons) if reasons else "Apprise cannot read it"


def check_channels(urls: list[str], field: str = "channels") -> None:
    """Refuse channel URLs Apprise cannot parse (``400 invalid_channel``, ``field`` the path of
    the first bad one, e.g. ``$.channels[1]``); the URL itself is a secret and shown masked."""
    if len(urls) > MAX_CHANNELS:
        raise Invalid(
            f"最多 {MAX_CHANNELS} 个通知渠道 (at most {MAX_CHANNELS} channels, got {len(urls)})",
            code="invalid_channel",
            field=f"$.{field}",
        )
    for i, url in enumerate(urls):
        problem = "too long" if len(url) > 500 else channel_problem(url)
        if problem is not None:
            raise Invalid(
                f"{field}[{i}] ({mask_url(url)}): 无法识别的通知地址 "
                f"(not an Apprise URL gridsync can send to: {mask_text(problem, url_secrets(url))})",
                code="invalid_channel",
                field=f"$.{field}[{i}]",
            )


def people_for_tag(db: sqlite_utils.Database, tag: str) -> list[str]:
    """Active people a tag stands for."""
    parts = tag.split(":")
    if parts[0] == "member" and len(parts) == 2:
        row = db.execute("SELECT id FROM people WHERE id = ? AND active = 1", [parts[1]]).fetchone()
        return [row[0]] if row else []
    # Candidates come from the indexes (people.branch_id, person_scope.unit_id), then the role
    # and active filters: an OR across the two made SQLite scan every person with json_each
    # (14 ms a tag in a district of 37,000 people; the weekly digest asks 1,077 tags).
    if parts[0] == "grid" and len(parts) == 2:
        rows = db.execute(
            """
            SELECT p.id FROM people p
            WHERE p.id IN (
                SELECT id FROM people WHERE branch_id IN
                    (SELECT id FROM org_units WHERE kind = 'branch' AND grid_id = ?1)
                UNION
                SELECT person_id FROM person_scope WHERE unit_id = ?1 OR unit_id IN
                    (SELECT id FROM org_units WHERE kind = 'branch' AND grid_id = ?1))
              AND p.active = 1
              AND EXISTS (SELECT 1 FROM json_each(p.roles)
                          WHERE value IN (SELECT value FROM json_each(?2)))
            ORDER BY p.id
            """,
            [parts[1], _json_roles],
        ).fetchall()
        return [r[0] for r in rows]
    if parts[0] in ROLE_TAGS and len(parts) in (2, 3):
        role = ROLE_TAGS[parts[0]]
        unit = parts[1]
        rows = db.execute(
            """
            SELECT p.id FROM people p
            WHERE p.id IN (SELECT id FROM people WHERE branch_id = ?1
                           UNION SELECT person_id FROM person_scope WHERE unit_id = ?1)
              AND p.active = 1 AND EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = ?2)
            ORDER BY p.id
            """,
            [unit, role],
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
    the file changes; a change that Apprise cannot read in full is logged as a warning)."""

    def __init__(self, config_path: str | None, default_locale: str = "zh-CN"):
        self.config_path = config_path
        self.default_locale = default_locale
        self._lock = threading.Lock()
        self._mtime: float | None = None
        self._config_urls: dict[str, list[str]] = {}
        self.problems: list[str] = []  # of the file as last read (masked)

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
                self._config_urls, self.problems = load_config(path)
                self._mtime = mtime
                if self.problems:
                    log.warning(
                        "apprise_config %s: %s (the entries Apprise could read are used)",
                        path,
                        "; ".join(self.problems),
                    )
            return self._config_urls

    def config_urls(self, tag: str) -> list[str]:
        return list(self._config().get(tag, []))

    def people(self, db: sqlite_utils.Database, tags: list[str]) -> list[Recipient]:
        """Every active person ``tags`` stand for, once each, with their locale, whether or not
        they have a channel: each gets the event in their inbox (``notices``)."""
        out: dict[str, Recipient] = {}
        for tag in tags:
            for person_id in people_for_tag(db, tag):
                key = f"member:{person_id}"
                if key in out:
                    continue
                row = db.execute("SELECT locale FROM people WHERE id = ?", [person_id]).fetchone()
                out[key] = Recipient(
                    key, person_id, (row[0] if row else None) or self.default_locale
                )
        return list(out.values())

    def recipients(
        self,
        db: sqlite_utils.Database,
        tags: list[str],
        people: list[Recipient] | None = None,
    ) -> list[Recipient]:
        """The recipients of one event addressed to ``tags`` (people de-duplicated); only those
        with somewhere to deliver to. ``people``: :meth:`people` of the same tags, when the
        caller has them already."""
        out: dict[str, Recipient] = {}
        for tag in tags:
            if self.config_urls(tag) and tag not in out:
                out[tag] = Recipient(tag, None, self.default_locale)
        for person in self.people(db, tags) if people is None else people:
            assert person.person_id is not None
            if person_channels(db, person.person_id) or self.config_urls(person.key):
                out.setdefault(person.key, person)
        return list(out.values())

    def config_people(self, db: sqlite_utils.Database) -> set[str]:
        """The people the Apprise config file routes somewhere: those a tag of the file
        stands for (``member:ID``, ``community:ID:secretary``, ...), by the one reading of a
        tag (:func:`people_for_tag`)."""
        return {p for tag in self._config() for p in people_for_tag(db, tag)}

    def urls(
        self, db: sqlite_utils.Database, recipient_key: str, person_id: str | None
    ) -> list[str]:
        """Where a queued message goes now: config URLs for its key plus the person's own."""
        urls = self.config_urls(recipient_key)
        if person_id:
            urls += person_channels(db, person_id)
        return list(dict.fromkeys(urls))  # de-duplicated, in order


def load_config(path: Path) -> tuple[dict[str, list[str]], list[str]]:
    """Tag -> URLs of an Apprise config file, and what Apprise could not read in it (its errors,
    masked: the file is full of secrets, so every URL in it is masked in Apprise's log lines
    while it is read)."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"cannot read it: {exc}"]
    with REDACTION.guard(m.group(0) for m in _URL_RE.finditer(text)) as notes:
        config = apprise.AppriseConfig()
        config.add(str(path))
        servers = apprise.Apprise()
        servers.add(config)
        table: dict[str, list[str]] = {}
        for server in servers:
            for tag in server.tags:
                table.setdefault(str(tag), []).append(server.url(privacy=False))
    errors = [text for level, text in notes if level >= logging.ERROR]
    if errors:  # the warnings say which entry: keep them with the errors
        errors = list(dict.fromkeys(text for _, text in notes))
    return table, errors


def check_config(config_path: str | None) -> None:
    """At startup (``gridsync serve``, ``gridsync sweep``): refuse an Apprise config file that is
    missing or holds an entry Apprise cannot read, rather than lose the alerts routed by it.
    Apprise loads its plugins on its first parse (about 0.2 s); parsing one URL here loads them
    now, not inside the first write transaction that saves a person's channels."""
    channel_problem("json://localhost")
    if not config_path:
        return
    path = Path(config_path)
    if not path.is_file():
        raise Invalid(
            f"找不到 Apprise 配置文件 (apprise_config {config_path}: no such file)",
            code="invalid_channel",
            field="notify.apprise_config",
        )
    _, problems = load_config(path)
    if problems:
        raise Invalid(
            f"Apprise 配置文件有无法识别的地址 (apprise_config {config_path}: "
            f"{'; '.join(problems)})",
            code="invalid_channel",
            field="notify.apprise_config",
        )


_routers: dict[tuple[str | None, str], Router] = {}
_routers_lock = threading.Lock()


def router_for(config_path: str | None, locale: str = "zh-CN") -> Router:
    """One Router per config file per process."""
    with _routers_lock:
        key = (config_path, locale)
        if key not in _routers:
            _routers[key] = Router(config_path, locale)
        return _routers[key]


def unreachable(db: sqlite_utils.Database, router: Router) -> list[UnreachablePerson]:
    """The active people with a role that receives alerts or digests (:data:`ALERTED_ROLES`)
    who have no channel of their own, none the Apprise config file routes to them, and no
    active device (enrolled and not revoked, nor being drained), by id. Their notices wait
    in their inbox until they enrol a phone or open the console."""
    by_config = router.config_people(db)
    rows = db.execute(
        """
        SELECT p.id, p.name, p.roles,
               (SELECT json_group_array(unit_id) FROM
                    (SELECT unit_id FROM person_scope s WHERE s.person_id = p.id
                     ORDER BY unit_id)),
               (SELECT count(*) FROM devices d WHERE d.person_id = p.id)
        FROM people p
        WHERE p.active = 1
          AND EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value IN
                      (SELECT value FROM json_each(?)))
          AND NOT EXISTS (SELECT 1 FROM json_each(p.channels) WHERE value <> '')
          AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.person_id = p.id
                          AND d.revoked_at IS NULL AND d.draining_since IS NULL)
        ORDER BY p.id
        """,
        [msgspec.json.encode(sorted(ALERTED_ROLES)).decode()],
    ).fetchall()
    return [
        UnreachablePerson(
            id=r[0],
            name=r[1],
            roles=_strings.decode(r[2]),
            scope=_strings.decode(r[3]),
            devices_revoked=r[4],
        )
        for r in rows
        if r[0] not in by_config
    ]

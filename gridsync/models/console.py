"""Wire types of the web console's sign-in (issue 16): one-time links and browser sessions."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta, Struct

from gridsync.models.core import Id

# A console path to land on after signing in ("/console/cases/ID"); anything else is dropped.
NextPath = Annotated[str, Meta(max_length=500, pattern=r"^(/console[^\s\\]*)?$")]


class ConsoleLinkRequest(Struct, kw_only=True, forbid_unknown_fields=True):
    """A one-time sign-in link for a person: an admin for anyone, anyone for themselves."""

    person_id: Id
    next: NextPath = ""


class ConsoleLink(Struct, kw_only=True):
    """The link (``base_url`` + ``/console/login/<token>``; a path when no ``base_url`` is
    set), single use, valid 15 minutes."""

    url: str
    expires_at: str


class ConsoleSession(Struct, kw_only=True):
    """A browser signed in to the console: listed with the person's devices, revocable."""

    id: str
    person_id: str
    created_at: str
    expires_at: str
    last_seen_at: str
    revoked_at: str | None
    user_agent: str
    active: bool


class ConsoleSessionPage(Struct, kw_only=True):
    items: list[ConsoleSession]

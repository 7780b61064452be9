"""Who reads a household's phone number in full (SPEC section 2): THE rule, the mask, and the
check that keeps a mask from being written back as a number.

A household's phone goes in full to

- an ``admin`` (the whole district);
- the ``community_secretary`` of the household's community (a community named in their scope);
- a ``grid_worker`` (网格员) of the household's grid (a grid named in their scope);
- the household's responsible member (``responsible_member_id``);

and masked (``138****1234``) to every other reader, on every surface: the REST households list
and item, the sync pull, push answers (the value a phone lost to), the conflict log, coverage
samples, violations and exports, and the CLI (an operator: masked unless ``--show-phones``).
Notification texts carry no phone numbers at all. A party member's own number in coverage
output (member rows, member violations) follows the same rule, read as a record of the member's
home grid whose responsible person is the member.

The rule is split so that bulk paths (a pull page of 500 households, an export of 300,000) pay
no query per household: :func:`view_of` computes the per-viewer part once (:class:`PhoneView`:
the grids where the viewer reads every number), and :func:`org.resolve_scope
<gridsync.org.resolve_scope>` stores it on the viewer's :class:`~gridsync.org.Scope`, so it is
cached with the scope (``auth.ScopeCache``, whose key holds every input: the person's roles,
scope units and version, and the org tree's version). The per-household part,
:func:`sees_full`, reads only values already in the household's row (grid, responsible member).

A phone shows the masked number it received, and an app that sends a whole form back would send
the mask as the number. Push therefore never stores a phone value that
:func:`~gridsync.models.is_masked` (it
holds a ``*`` or ``＊``, which no phone number has): the field is dropped from the mutation, the rest of it
applies, and the result lists it in ``ignored`` (``gridsync/sync/households.py``).
``tests/test_privacy.py`` tries every role on every surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import sqlite_utils

from gridsync.models import MASK_CHAR


@dataclass(frozen=True, slots=True)
class PhoneView:
    """The per-viewer part of the rule, computed once per scope (:func:`view_of`).

    ``grids`` is where the viewer reads every number in full: the grids of the communities
    where they are community secretary, and the grids where they are grid worker. Outside those
    (and without ``everything``) only the households they are responsible for are in full."""

    person_id: str | None
    everything: bool = False
    grids: frozenset[str] = frozenset()
    secretary_of: frozenset[str] = frozenset()  # communities (explains ``grids``)
    worker_of: frozenset[str] = frozenset()  # grids (explains ``grids``)
    roles: frozenset[str] = frozenset()  # the viewer's roles (who holds an order, sees_caller)

    @property
    def label(self) -> str:
        """How an audit record names it: ``all``, ``none`` or ``by_role``."""
        if self.everything:
            return "all"
        if not self.grids and self.person_id is None:
            return "none"
        return "by_role"


ALL_PHONES = PhoneView(None, everything=True)  # the CLI with --show-phones
NO_PHONES = PhoneView(None)  # the CLI by default, and any scope built without a viewer


def operator(show_phones: bool) -> PhoneView:
    """The CLI operator's view: every number in full only when asked (``--show-phones``)."""
    return ALL_PHONES if show_phones else NO_PHONES


def view_of(
    db: sqlite_utils.Database, person_id: str, roles: list[str] | frozenset[str]
) -> PhoneView:
    """The per-viewer part of the rule for a person with ``roles`` (two small queries)."""
    if "admin" in roles:
        return PhoneView(person_id, everything=True)
    secretary = "community_secretary" in roles
    worker = "grid_worker" in roles
    if not secretary and not worker:
        return PhoneView(person_id, roles=frozenset(roles))
    named = db.execute(
        "SELECT o.id, o.kind FROM person_scope s JOIN org_units o ON o.id = s.unit_id "
        "WHERE s.person_id = ? AND o.kind IN ('community', 'grid')",
        [person_id],
    ).fetchall()
    communities = frozenset(u for u, kind in named if kind == "community") if secretary else None
    worker_of = frozenset(u for u, kind in named if kind == "grid") if worker else frozenset()
    grids = set(worker_of)
    if communities:
        grids.update(
            r[0]
            for r in db.execute(
                "SELECT id FROM org_units WHERE kind = 'grid' "
                "AND parent_id IN (SELECT value FROM json_each(?))",
                [msgspec.json.encode(sorted(communities)).decode()],
            )
        )
    return PhoneView(
        person_id,
        grids=frozenset(grids),
        secretary_of=communities or frozenset(),
        worker_of=worker_of,
        roles=frozenset(roles),
    )


def sees_full(view: PhoneView, grid_id: str | None, responsible_member_id: str | None) -> bool:
    """THE rule: whether ``view``'s viewer reads in full the phone of a household of
    ``grid_id`` whose responsible member is ``responsible_member_id``."""
    return (
        view.everything
        or grid_id in view.grids
        or (responsible_member_id is not None and responsible_member_id == view.person_id)
    )


# The roles that answer for a level (the people its notifications reach, notify/routing.py).
LEVEL_ROLES: dict[str, frozenset[str]] = {
    "grid": frozenset({"grid_worker", "member", "branch_secretary"}),
    "community": frozenset({"community_secretary"}),
    "street": frozenset({"street"}),
    "department": frozenset({"department"}),
    "district": frozenset({"admin"}),
}


def sees_caller(
    view: PhoneView, *, grid_id: str | None, community_id: str | None, held_at: str | None
) -> bool:
    """THE rule read for the caller of a hotline order (name and phone): the readers of a
    household's number there (an admin, the secretary of the order's community, the grid
    workers of its grid), and the people who answer for the order where it is now
    (``held_at``: the level, when the viewer's scope holds the unit; they must call the caller
    back) in the role that answers for that level. Everyone else (supervisors, the platform's
    credential, a district person of another role) reads it masked."""
    return (
        sees_full(view, grid_id, None)
        or (community_id is not None and community_id in view.secretary_of)
        or (held_at is not None and bool(view.roles & LEVEL_ROLES.get(held_at, frozenset())))
    )


def mask_name(name: str) -> str:
    """A person's name as a reader without the right to it sees it: the first character (the
    family name) and one ``*`` per other character (``张**``); a one-character name is ``*``."""
    if len(name) <= 1:
        return MASK_CHAR * len(name)
    return name[0] + MASK_CHAR * (len(name) - 1)


def shown_phone(
    view: PhoneView, phone: str, grid_id: str | None, responsible_member_id: str | None
) -> str:
    """The phone as ``view``'s viewer may read it: in full or masked (:func:`sees_full`)."""
    if not phone or sees_full(view, grid_id, responsible_member_id):
        return phone
    return mask_phone(phone)


# Characters a number is written with that are not digits: they count for nothing in the mask.
_SEPARATORS = frozenset(" -()+")
MIN_HIDDEN = 4  # every mask hides at least this many digits (all of a shorter number)


def mask_phone(phone: str) -> str:
    """A phone number as a reader without the right to it sees it: at least ``MIN_HIDDEN``
    (4) digits hidden, one ``*`` per character hidden.

    The rule, on the number's *signs* (every character but the separators `` -()+``, so that
    ``0532-8888 1234`` hides as many digits as ``053288881234``), ``n`` of them:

    - keep the last ``min(4, n - 4)`` signs (none when ``n <= 4``), so that at least 4 stay
      hidden; ``88881234`` -> ``****1234``, ``8888123`` -> ``****123``, ``12345`` -> ``****5``;
    - keep the first 3 signs too only when 4 or more are still hidden between them and the
      end: a mobile number (11 digits) -> ``138****5678``, ``053288886666`` ->
      ``053*****6666``; a 9 or 10-digit number keeps no head (``*****8881``).

    Everything between the kept head and tail, separators included, becomes ``*``. A 10-digit
    number masked as ``138****5678`` would have hidden 3 digits (a thousand guesses), an
    8-digit landline as ``888*1234`` one (ten guesses): issue 12's review."""
    if not phone:
        return phone
    signs = [i for i, c in enumerate(phone) if c not in _SEPARATORS]
    n = len(signs)
    tail = max(0, min(4, n - MIN_HIDDEN))
    head = 3 if n - tail - 3 >= MIN_HIDDEN else 0
    start = signs[head] if n else 0  # the first hidden character (only separators: all)
    end = signs[n - tail] if tail else len(phone)  # the first kept character of the tail
    return phone[:start] + MASK_CHAR * (end - start) + phone[end:]

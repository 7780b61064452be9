"""Who is a member, and who may serve a grid: the two rules of the "1" of 1-5-N, written once.

- A *member* is an active person with the ``member`` role (:func:`member_sql` in SQL,
  :func:`standing` in Python). Reports count them (``tallying.py``), assignments and the
  import accept only them, the benchmarks pick them. Migrations keep their own frozen copy
  (``0005_coverage_aggregates``), as a migration must.
- A member *may serve* a grid (be responsible for its households) when the grid is in their
  scope as :func:`gridsync.org.resolve_scope` resolves it: a grid assigned to them, a grid under
  a unit assigned to them, or the grid of a branch assigned to them (an admin's scope holds
  every grid). Their party branch alone does not make them serve its grid.

Why the scope and not the branch: the scope is what the member's phone receives and may write.
A member responsible for a household outside their scope would never see it on their phone,
could not log a visit to it (the push refuses it: ``out_of_scope``), and would be overdue by a
rule they cannot meet. Until issue 14 ``gridsync assign`` also accepted a member whose branch
maps to the grid while the import refused the same member (``member_out_of_grid``); now assign,
the import preview, rebalancing and the API all ask :func:`standing` (and
``tests/test_honest_figures.py`` holds them to one answer).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
import sqlite_utils

from gridsync.errors import Invalid, NotFound
from gridsync.org import Scope, resolve_scope

# Who may be a household's responsible member (the "1" of 1-5-N), and who counts as a member.
RESPONSIBLE_ROLE = "member"
# 党建指导员: visits and raises cases like a member, never a household's responsible member
# (and never also holds the member role: ``gridsync.org.check_person``).
INSTRUCTOR_ROLE = "instructor"
_ROLE_JSON = msgspec.json.encode(RESPONSIBLE_ROLE).decode()  # '"member"'


def member_sql(alias: str = "") -> str:
    """SQL true for a row of ``people`` (``alias``: its table alias) that is a member. Roles are
    a JSON array of role names, so the quoted name cannot match a longer role's name."""
    p = f"{alias}." if alias else ""
    return f"({p}active = 1 AND instr({p}roles, '{_ROLE_JSON}') > 0)"


@dataclass(frozen=True, slots=True)
class Standing:
    """A person as a possible responsible member: ``problem`` is None for a member, else the
    refusal's code (``unknown_member``, ``not_a_member``, ``member_inactive``); ``scope`` is
    the member's resolved scope (None unless a member)."""

    person_id: str
    problem: str | None
    scope: Scope | None = None

    def serves(self, grid_id: str | None) -> bool:
        """Whether this member may be responsible for households of ``grid_id``."""
        return self.scope is not None and self.scope.allows_grid(grid_id)


def standing(db: sqlite_utils.Database, person_id: str) -> Standing:
    """The one judgement of a person as a responsible member (a query and a scope resolution;
    callers judging many households cache it per person)."""
    row = db.execute("SELECT roles, active FROM people WHERE id = ?", [person_id]).fetchone()
    if row is None:
        return Standing(person_id, "unknown_member")
    roles, active = row
    role_names = msgspec.json.decode(roles)
    if INSTRUCTOR_ROLE in role_names:
        return Standing(person_id, "instructor_not_responsible")
    if RESPONSIBLE_ROLE not in role_names:
        return Standing(person_id, "not_a_member")
    if not active:
        return Standing(person_id, "member_inactive")
    return Standing(person_id, None, resolve_scope(db, person_id))


def require_may_serve(
    db: sqlite_utils.Database, person_id: str, grid_id: str, household_id: str
) -> Standing:
    """:func:`standing`, raising the refusal an assignment answers (field ``member_id``)."""
    s = standing(db, person_id)
    if s.problem == "unknown_member":
        raise NotFound(f"no person {person_id}", field="member_id")
    if s.problem == "instructor_not_responsible":
        raise Invalid(
            f"{person_id} is a party-building instructor (党建指导员): instructors visit and "
            "raise cases but are never a household's responsible member",
            code="instructor_not_responsible",
            field="member_id",
        )
    if s.problem == "not_a_member":
        raise Invalid(
            f"{person_id} is not a party member (role '{RESPONSIBLE_ROLE}')",
            code="not_a_member",
            field="member_id",
        )
    if s.problem == "member_inactive":
        raise Invalid(
            f"member {person_id} is not active", code="member_inactive", field="member_id"
        )
    if not s.serves(grid_id):
        raise Invalid(
            f"member {person_id} may not serve grid {grid_id} of household {household_id}: "
            "the grid is not in their scope",
            code="member_out_of_grid",
            field="member_id",
        )
    return s

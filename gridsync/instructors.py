"""The instructors' report (issue 18): what each party-building instructor (党建指导员) has
done to date, the figures a district gives for them ("visited about 400 households, solved
more than 50 problems").

An instructor is an active person with the ``instructor`` role, scoped to one or more
communities (``gridsync.org.check_person``); they visit and raise cases like a member but are
never a household's responsible member (``gridsync/coverage/members.py``). A report lists the
instructors with a community within the reader's scope (or ``unit_id``), each with
(:class:`gridsync.models.InstructorRow`):

- ``households_visited``: distinct households of their non-voided visits, a group visit
  (楼栋会) counting for each of its households (``visit_households``);
- ``visits`` and ``group_visits``: their non-voided visit records;
- ``cases_raised`` and ``cases_resolved``: whistle cases they raised, and of those the ones
  ``resolved`` or ``closed``;
- ``communities`` (their scope's) and ``communities_covered``: how many of those hold a
  household they visited.

Visits are read by the grids of the instructors' communities (``visits_grid_seq``): the visits
table has no index by person.
"""

from __future__ import annotations

import msgspec
import sqlite_utils

from gridsync import coverage
from gridsync.clock import iso_ms
from gridsync.models import InstructorReport, InstructorRow
from gridsync.org import Scope

INSTRUCTOR_ROLE = "instructor"
RESOLVED_STATES = ("resolved", "closed")
_ids = msgspec.json.Decoder(list[str])


def instructors(
    db: sqlite_utils.Database, scope: Scope, unit_id: str | None = None, *, now_ms: int
) -> InstructorReport:
    """The instructors of a unit (default: the reader's scope) and their figures to date."""
    idx = coverage.OrgIndex.of(db)
    scoped = coverage.report_units(idx, scope, unit_id)
    people: list[tuple[str, str, list[str]]] = []
    for pid, name, units in db.execute(
        """SELECT p.id, p.name, (SELECT json_group_array(s.unit_id) FROM person_scope s
                                 WHERE s.person_id = p.id)
           FROM people p
           WHERE p.active = 1 AND EXISTS (SELECT 1 FROM json_each(p.roles) WHERE value = ?)
           ORDER BY p.id""",
        [INSTRUCTOR_ROLE],
    ):
        communities = sorted(u for u in _ids.decode(units) if idx.kind.get(u) == "community")
        if any(c in scoped.units for c in communities):
            people.append((pid, name, communities))
    ids = [pid for pid, _, _ in people]
    encoded_ids = msgspec.json.encode(ids).decode()
    grids = sorted({g for _, _, cs in people for c in cs for g in idx.below(c) if g in idx.grids()})
    encoded_grids = msgspec.json.encode(grids).decode()

    visited: dict[str, set[str]] = {pid: set() for pid in ids}
    visits = dict.fromkeys(ids, 0)
    groups = dict.fromkeys(ids, 0)
    # their visit records, in their communities' grids
    for pid, hid, size in db.execute(
        """SELECT v.member_id, v.household_id, v.group_size FROM visits v
           WHERE v.grid_id IN (SELECT value FROM json_each(?)) AND v.voided = 0
             AND v.member_id IN (SELECT value FROM json_each(?))""",
        [encoded_grids, encoded_ids],
    ):
        visits[pid] += 1
        visited[pid].add(hid)
        if size > 1:
            groups[pid] += 1
    # every household of their group visits (the first household is the visit's own)
    for pid, hid in db.execute(
        """SELECT v.member_id, l.household_id FROM visit_households l
           CROSS JOIN visits v ON v.id = l.visit_id
           WHERE v.voided = 0
             AND v.member_id IN (SELECT value FROM json_each(?))""",
        [encoded_ids],
    ):
        visited[pid].add(hid)
    community_of: dict[str, str | None] = {}
    all_visited = sorted({h for hs in visited.values() for h in hs})
    for hid, grid in db.execute(
        "SELECT id, grid_id FROM households WHERE id IN (SELECT value FROM json_each(?))",
        [msgspec.json.encode(all_visited).decode()],
    ):
        community_of[hid] = idx.community_of(grid)
    cases: dict[str, tuple[int, int]] = {}
    for pid, raised, resolved in db.execute(
        """SELECT raised_by, count(*), count(*) FILTER (WHERE state IN (SELECT value FROM
                  json_each(?)))
           FROM whistle_cases WHERE raised_by IN (SELECT value FROM json_each(?))
           GROUP BY raised_by""",
        [msgspec.json.encode(RESOLVED_STATES).decode(), encoded_ids],
    ):
        cases[pid] = (raised, resolved)

    rows = []
    for pid, name, communities in people:
        reached = {community_of.get(h) for h in visited[pid]}
        raised, resolved = cases.get(pid, (0, 0))
        rows.append(
            InstructorRow(
                person_id=pid,
                name=name,
                communities=communities,
                communities_covered=sum(1 for c in communities if c in reached),
                households_visited=len(visited[pid]),
                visits=visits[pid],
                group_visits=groups[pid],
                cases_raised=raised,
                cases_resolved=resolved,
            )
        )
    return InstructorReport(scope_id=unit_id, at=iso_ms(now_ms), rows=rows)

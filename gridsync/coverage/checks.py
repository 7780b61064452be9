"""Recorded checks (抽检, SPEC section 4): checks nobody can game.

``gridsync coverage sample --seed`` lets anyone, the person assessed included, draw a sample
first and prepare those households. A recorded check is drawn by a role *above* the assessed
unit, with a seed the server makes (``secrets``), and is stored at once: who drew it, when, the
seed, the households (:func:`~gridsync.coverage.sampling.draw`, the sample's own draw, so
``coverage sample --scope S --n N --seed SEED`` shows the same households while they are the
same) with the last visit each had when drawn. The checker then records an outcome per
household; the check's verified rate is confirmed of reached (``verified.py``), and the roll-up
shows each unit's latest beside its contact rate (``rows.with_verified``).

Who may draw, record and read a check: one function, :func:`require_checker`. The assessed
unit's own people are refused (``403 check_forbidden``), reading included: a check read while it
is under way would tell them which households to prepare.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import msgspec
import sqlite_utils

from gridsync import audit
from gridsync.audit import Actor
from gridsync.clock import SYSTEM_CLOCK, Clock, iso_ms, uuid7
from gridsync.coverage.org_index import OrgIndex, report_units
from gridsync.coverage.rows import rate
from gridsync.coverage.sampling import draw, last_visits
from gridsync.coverage.verified import check_counts
from gridsync.errors import CheckForbidden, Invalid, NotFound, OutOfScope
from gridsync.models import (
    MAX_CHECK_HOUSEHOLDS,
    Check,
    CheckedHousehold,
    CheckedVisit,
    CheckResult,
)
from gridsync.org import Scope, checked

# How high a role stands, and how high a unit (a role may check a unit strictly below it): the
# street checks its communities (and their grids and branches), a community secretary their
# grids and branches, an admin anything. Roles not named stand below every unit.
ROLE_RANK = {"street": 4, "community_secretary": 3}
UNIT_RANK = {"district": 5, "street": 4, "community": 3, "grid": 2, "branch": 2}
ANYTHING = "admin"

_visit_decoder = msgspec.json.Decoder(CheckedVisit)


def require_checker(
    db: sqlite_utils.Database,
    person_id: str | None,
    roles: Iterable[str],
    scope: Scope,
    unit_id: str,
    idx: OrgIndex | None = None,
) -> None:
    """The one rule of who may draw, record and read a check of ``unit_id``: an admin, or a
    person whose scope holds the unit, with a role above it (:data:`ROLE_RANK` over
    :data:`UNIT_RANK`), who is not one of the unit's own people (their party branch, or a
    unit their scope names, lies within it). ``not_found``/``out_of_scope`` as every report;
    ``403 check_forbidden`` otherwise."""
    idx = idx or OrgIndex.of(db)
    roles = set(roles)
    if ANYTHING in roles:
        if unit_id not in idx.kind:
            raise NotFound(f"no org unit {unit_id}")
        return
    units = report_units(idx, scope, unit_id).units
    kind = idx.kind[unit_id]
    rank = max((ROLE_RANK.get(r, 0) for r in roles), default=0)
    if rank <= UNIT_RANK.get(kind, rank):
        raise CheckForbidden(
            f"a check of a {kind} is drawn, recorded and read from above it (a street for a "
            "community, a community secretary for a grid or branch, an admin for anything); "
            "the people it assesses may not"
        )
    places = set(units) | {b for b, g in idx.branch_grid.items() if g in units}
    own = db.execute(
        "SELECT branch_id FROM people WHERE id = ? UNION "
        "SELECT unit_id FROM person_scope WHERE person_id = ?",
        [person_id, person_id],
    ).fetchall()
    if any(r[0] in places for r in own):
        raise CheckForbidden(
            f"you belong to {unit_id} (your branch or your scope lies within it): its own "
            "people may not check it"
        )


def draw_check(
    db: sqlite_utils.Database,
    actor: Actor,
    roles: Iterable[str],
    scope: Scope,
    unit_id: str,
    n: int,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> Check:
    """Draw and store a check of ``n`` households of ``unit_id`` with a fresh server seed;
    audited (``coverage.check.draw``, the seed and the households)."""
    if not 1 <= n <= MAX_CHECK_HOUSEHOLDS:
        raise Invalid(f"n must be 1..{MAX_CHECK_HOUSEHOLDS}", field="n")
    require_checker(db, actor.person_id, roles, scope, unit_id)
    seed = secrets.token_hex(8)
    chosen, population = draw(db, scope, unit_id, n, seed)
    if not chosen:
        raise Invalid(
            f"{unit_id} has no active household to check", code="check_empty", field="scope"
        )
    check_id, now_ms = uuid7(), clock.now_ms()
    db.execute(
        "INSERT INTO coverage_checks (id, scope_id, n, seed, population, drawn_by, "
        "drawn_device, drawn_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [check_id, unit_id, n, seed, population, actor.person_id, actor.device_id, now_ms],
    )
    rows = []
    for position, hid in enumerate(chosen):
        newest = last_visits(db, hid, 1)
        last = None
        if newest:
            v = newest[0]
            last = CheckedVisit(
                id=v.id, at=v.at, member_id=v.member_id, channel=v.channel, kinds=list(v.kinds)
            )
        encoded = None if last is None else msgspec.json.encode(last).decode()
        rows.append((check_id, hid, position, encoded))
    db.conn.executemany(
        "INSERT INTO coverage_check_households (check_id, household_id, position, last_visit) "
        "VALUES (?, ?, ?, ?)",
        rows,
    )
    audit.record(
        db,
        actor,
        "coverage.check.draw",
        target=check_id,
        detail={"scope": unit_id, "n": n, "seed": seed, "households": chosen},
        clock=clock,
    )
    return _read(db, check_id)


def record_result(
    db: sqlite_utils.Database,
    actor: Actor,
    roles: Iterable[str],
    scope: Scope,
    check_id: str,
    household_id: str,
    result: CheckResult,
    *,
    clock: Clock = SYSTEM_CLOCK,
) -> Check:
    """The checker's outcome for one household of a check (a second call replaces it);
    audited (``coverage.check.result``). The check as it now stands."""
    result = checked(msgspec.to_builtins(result), CheckResult, "outcome")  # the wire's bounds
    require_checker(db, actor.person_id, roles, scope, _scope_of(db, check_id))
    cursor = db.execute(
        "UPDATE coverage_check_households SET outcome = ?, note = ?, recorded_by = ?, "
        "recorded_ms = ? WHERE check_id = ? AND household_id = ?",
        [result.outcome, result.note, actor.person_id, clock.now_ms(), check_id, household_id],
    )
    if cursor.rowcount == 0:
        raise NotFound(f"household {household_id} is not in check {check_id}")
    audit.record(
        db,
        actor,
        "coverage.check.result",
        target=check_id,
        detail={"household_id": household_id, "outcome": result.outcome},
        clock=clock,
    )
    return _read(db, check_id)


def get_check(
    db: sqlite_utils.Database,
    person_id: str | None,
    roles: Iterable[str],
    scope: Scope,
    check_id: str,
) -> Check:
    """A check, its outcomes and its verified rate, for those who may check its unit."""
    require_checker(db, person_id, roles, scope, _scope_of(db, check_id))
    return _read(db, check_id)


def recent_checks(
    db: sqlite_utils.Database,
    person_id: str | None,
    roles: Iterable[str],
    scope: Scope,
    *,
    limit: int = 20,
) -> list[Check]:
    """The newest checks (at most ``limit``) that this caller may read, by
    :func:`require_checker` (the console's 抽检 page); looks at the newest 500 checks."""
    idx = OrgIndex.of(db)
    out: list[Check] = []
    for check_id, unit_id in db.execute(
        "SELECT id, scope_id FROM coverage_checks ORDER BY drawn_ms DESC, id DESC LIMIT 500"
    ).fetchall():
        try:
            require_checker(db, person_id, roles, scope, unit_id, idx)
        except (CheckForbidden, NotFound, OutOfScope):
            continue
        out.append(_read(db, check_id))
        if len(out) >= limit:
            break
    return out


def _scope_of(db: sqlite_utils.Database, check_id: str) -> str:
    row = db.execute("SELECT scope_id FROM coverage_checks WHERE id = ?", [check_id]).fetchone()
    if row is None:
        raise NotFound(f"no check {check_id}")
    return str(row[0])


def _read(db: sqlite_utils.Database, check_id: str) -> Check:
    row = db.execute(
        "SELECT id, scope_id, n, seed, drawn_by, drawn_ms FROM coverage_checks WHERE id = ?",
        [check_id],
    ).fetchone()
    if row is None:
        raise NotFound(f"no check {check_id}")
    households = [
        CheckedHousehold(
            household_id=hid,
            last_visit=None if last is None else _visit_decoder.decode(last),
            outcome=outcome,
            note=note,
        )
        for hid, last, outcome, note in db.execute(
            "SELECT household_id, last_visit, outcome, note FROM coverage_check_households "
            "WHERE check_id = ? ORDER BY position",
            [check_id],
        )
    ]
    confirmed, reached = check_counts(db, check_id)
    return Check(
        id=row[0],
        scope=row[1],
        n=row[2],
        seed=row[3],
        drawn_by=row[4],
        drawn_at=iso_ms(row[5]),
        households=households,
        verified_rate=rate(confirmed, reached),
    )

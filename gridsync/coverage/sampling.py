"""The assessors' sample (SPEC section 4): N random active households of a unit with their last
visits, drawn from a seed, reproducibly. :func:`draw` is the one draw: the sample and the
recorded checks (``checks.py``) both take their households from it, so ``gridsync coverage
sample --seed`` with a check's seed shows the households that check drew."""

from __future__ import annotations

import random

import sqlite_utils

from gridsync.coverage.org_index import OrgIndex, report_units
from gridsync.coverage.tallying import grid_filter
from gridsync.errors import Invalid
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.models import Sample, SampledHousehold, Visit
from gridsync.org import Scope


def draw(
    db: sqlite_utils.Database, scope: Scope, unit_id: str | None, n: int, seed: str
) -> tuple[list[str], int]:
    """The ids of ``n`` random active households of a unit (within ``scope``), in the order
    drawn, and how many there were to draw from.

    Reproducible: ``random.Random(seed)`` draws from the household ids in id order, so the same
    seed over the same households gives the same households."""
    if n < 1:
        raise Invalid("n must be at least 1", field="n")
    idx = OrgIndex.of(db)
    grid_set = report_units(idx, scope, unit_id).grids
    cond, params = grid_filter(None if grid_set == idx.grids() else sorted(grid_set))
    ids = [
        r[0]
        for r in db.execute(
            f"SELECT id FROM households WHERE status = 'active' AND {cond} ORDER BY id", params
        )
    ]
    return random.Random(str(seed)).sample(ids, min(n, len(ids))), len(ids)


def last_visits(db: sqlite_utils.Database, household_id: str, visits: int) -> list[Visit]:
    """A household's newest ``visits`` non-voided visits, newest first."""
    return [
        visit_from_row(r)
        for r in db.execute(
            f"SELECT {VISIT_SELECT} FROM visits v WHERE v.household_id = ? AND v.voided = 0 "
            "ORDER BY v.at_ms DESC, v.id DESC LIMIT ?",
            [household_id, visits],
        )
    ]


def sample(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    n: int,
    seed: str,
    *,
    visits: int = 3,
) -> Sample:
    """``n`` random active households of a unit (:func:`draw`) with their last ``visits``
    non-voided visits, phones as ``scope.phones`` may read them."""
    chosen, population = draw(db, scope, unit_id, n, seed)
    items = []
    for hid in chosen:
        row = db.execute(
            f"SELECT {HOUSEHOLD_SELECT} FROM households h WHERE h.id = ?", [hid]
        ).fetchone()
        household = household_from_row(row, scope.phones)
        items.append(
            SampledHousehold(household=household, last_visits=last_visits(db, hid, visits))
        )
    return Sample(scope_id=unit_id, seed=str(seed), n=n, population=population, items=items)

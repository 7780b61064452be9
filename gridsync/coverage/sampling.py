"""The assessors' sample (SPEC section 4): N random active households of a unit with their last
visits, drawn from a seed, reproducibly."""

from __future__ import annotations

import random

import sqlite_utils

from gridsync.coverage.org_index import OrgIndex, report_units
from gridsync.coverage.tallying import grid_filter
from gridsync.errors import Invalid
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.models import Sample, SampledHousehold
from gridsync.org import Scope


def sample(
    db: sqlite_utils.Database,
    scope: Scope,
    unit_id: str | None,
    n: int,
    seed: str,
    *,
    visits: int = 3,
) -> Sample:
    """``n`` random active households of a unit with their last ``visits`` non-voided visits,
    phones as ``scope.phones`` may read them.

    Reproducible: ``random.Random(seed)`` draws from the household ids in id order, so the same
    seed over the same households gives the same sample."""
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
    chosen = random.Random(str(seed)).sample(ids, min(n, len(ids)))
    items = []
    for hid in chosen:
        row = db.execute(
            f"SELECT {HOUSEHOLD_SELECT} FROM households h WHERE h.id = ?", [hid]
        ).fetchone()
        household = household_from_row(row, scope.phones)
        last = [
            visit_from_row(r)
            for r in db.execute(
                f"SELECT {VISIT_SELECT} FROM visits v WHERE v.household_id = ? AND v.voided = 0 "
                "ORDER BY v.at_ms DESC, v.id DESC LIMIT ?",
                [hid, visits],
            )
        ]
        items.append(SampledHousehold(household=household, last_visits=last))
    return Sample(scope_id=unit_id, seed=str(seed), n=n, population=len(ids), items=items)

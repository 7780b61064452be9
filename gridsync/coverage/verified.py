"""What a recorded check verified (抽检核实): a household is *reached* when the checker's
outcome is ``confirmed`` or ``denied`` (``unreachable`` and no outcome yet are not reached), and a
check's verified rate is confirmed of reached. The roll-up shows, beside the contact rate, the
newest check of each unit that has a verified rate (``rows.with_verified``); the check itself
(``checks.py``) shows its own. Both count here; the rate is rounded by ``rows.rate`` like every
rate of a report."""

from __future__ import annotations

from typing import NamedTuple

import sqlite_utils

REACHED = ("confirmed", "denied")  # the outcomes that reached the household


class Verified(NamedTuple):
    check_id: str
    drawn_ms: int
    confirmed: int
    reached: int


_IS_REACHED = "h.outcome IN (" + ", ".join(f"'{o}'" for o in REACHED) + ")"
_COUNTS = f"count(*) FILTER (WHERE h.outcome = 'confirmed'), count(*) FILTER (WHERE {_IS_REACHED})"


def check_counts(db: sqlite_utils.Database, check_id: str) -> tuple[int, int]:
    """(confirmed, reached) of one check."""
    row = db.execute(
        f"SELECT {_COUNTS} FROM coverage_check_households h WHERE h.check_id = ?", [check_id]
    ).fetchone()
    return row[0], row[1]


def latest_verified(db: sqlite_utils.Database, now_ms: int) -> dict[str, Verified]:
    """Org unit id -> its newest check drawn at or before ``now_ms`` that reached at least one
    household (the newest by draw time, then id). Checks are few (people draw them by hand),
    so every unit's is read at once."""
    out: dict[str, Verified] = {}
    for scope_id, check_id, drawn_ms, confirmed, reached in db.execute(
        f"""SELECT c.scope_id, c.id, c.drawn_ms, {_COUNTS}
            FROM coverage_checks c JOIN coverage_check_households h ON h.check_id = c.id
            WHERE c.drawn_ms <= ?
            GROUP BY c.id
            HAVING count(*) FILTER (WHERE {_IS_REACHED}) > 0
            ORDER BY c.scope_id, c.drawn_ms DESC, c.id DESC""",
        [now_ms],
    ):
        if scope_id not in out:
            out[scope_id] = Verified(check_id, drawn_ms, confirmed, reached)
    return out

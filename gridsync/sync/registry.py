"""Every push op and every pull source of the sync protocol, listed as data.

Push (``gridsync/sync/push.py``) looks ops up in :data:`OPS`; pull (``gridsync/sync/pull.py``)
asks the sources of :data:`SOURCES`. Each area keeps its ops and sources side by side in its
module of ``sync/`` (``households.py``, ``whistle.py``, ``org.py``, ``policy.py``, ``notices.py``); this module
imports them by name, so the dependency is visible to a reader and to ``lint-imports``. No
decorator registers anything at import time and no module is imported by its name in a string:
adding an op or a source is a line here.
"""

from __future__ import annotations

from gridsync.models import (
    ChangeType,
    HouseholdCreate,
    HouseholdMoveOut,
    NoticeRead,
    VisitCreate,
    VisitVoid,
    WhistleAct,
    WhistleRaise,
)
from gridsync.sync import households, notices, org, policy, whistle
from gridsync.sync.ops import OpSpec, batch_op, by_name, op
from gridsync.sync.sources import Source

OPS: dict[str, OpSpec] = by_name(
    op("household.create", households.household_create, data_type=HouseholdCreate, new_id=True),
    batch_op("household.update", households.household_update_batch),
    op("household.move_out", households.household_move_out, data_type=HouseholdMoveOut),
    batch_op(
        "visit.create",
        households.visit_create_batch,
        data_type=VisitCreate,
        own_record=True,
        new_id=True,
    ),
    op("visit.void", households.visit_void, data_type=VisitVoid),
    op("whistle.raise", whistle.raise_case, data_type=WhistleRaise, new_id=True),
    op("whistle.act", whistle.act, data_type=WhistleAct),
    op("notice.read", notices.read, data_type=NoticeRead),
)

# Change type -> source, in the order pull asks them; the bulk ones (:data:`BULK`) are asked
# last, with ``upto_seq`` already narrowed to what the other sources' rows leave room for.
SOURCES: dict[ChangeType, Source] = {
    "org_unit": org.org_unit_changes,
    "person": org.person_changes,
    "household": households.household_changes,
    "policy": policy.policy_changes,
    "whistle": whistle.whistle_changes,
    "notice": notices.notice_changes,
    "visit": households.visit_changes,
}
BULK: frozenset[str] = frozenset({"visit"})


def ordered_sources() -> list[tuple[ChangeType, Source]]:
    """The sources in the order pull asks them: bulk ones last (read at each call, so a test
    may wrap one)."""
    return sorted(SOURCES.items(), key=lambda item: item[0] in BULK)

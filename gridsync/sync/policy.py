"""Coverage policies on the phone path: the pull source ``policy`` (listed in
``gridsync/sync/registry.py``): one ``put`` per community of the scope, id = community id,
data = its effective :class:`~gridsync.models.Policy` (the district default with the
community's override). Phones do not write policies, so this area has no push ops.
"""

from __future__ import annotations

from gridsync import coverage
from gridsync.sync.sources import SourceChange, SourceContext


def policy_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    """See :func:`gridsync.coverage.changed_policies` for which communities and which seq."""
    return [
        SourceChange(seq, community_id, "put", policy)
        for seq, community_id, policy in coverage.changed_policies(
            ctx.db, ctx.scope, after_seq, upto_seq, limit
        )
    ]

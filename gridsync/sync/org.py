"""The organisation on the phone path: the pull sources ``org_unit`` and ``person`` (listed in
``gridsync/sync/registry.py``). Phones do not write the organisation (admins do, through the
API or the CLI), so this area has no push ops.

Each source lists the changes of its type in the reader's scope with ``after_seq < seq <=
upto_seq``, ordered by ``seq``, at most ``limit``.
"""

from __future__ import annotations

from gridsync import org
from gridsync.models import OrgUnit
from gridsync.sync.sources import SourceChange, SourceContext


def org_unit_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    cond, params = ctx.scope.unit_filter("id")
    rows = ctx.db.execute(
        f"SELECT id, kind, name, parent_id, grid_id, seq FROM org_units "
        f"WHERE seq > ? AND seq <= ? AND {cond} ORDER BY seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    return [
        SourceChange(
            r[5], r[0], "put", OrgUnit(id=r[0], kind=r[1], name=r[2], parent_id=r[3], grid_id=r[4])
        )
        for r in rows
    ]


def person_changes(
    ctx: SourceContext, after_seq: int, upto_seq: int, limit: int
) -> list[SourceChange]:
    cond, params = org._people_scope_filter(ctx.scope)
    rows = ctx.db.execute(
        f"SELECT {org._PERSON_COLS}, p.seq FROM people p "
        f"WHERE p.seq > ? AND p.seq <= ? AND {cond} ORDER BY p.seq LIMIT ?",
        [after_seq, upto_seq, *params, limit],
    ).fetchall()
    people = org._people_with_scope(ctx.db, [r[:-1] for r in rows])
    return [SourceChange(r[-1], p.id, "put", p) for r, p in zip(rows, people)]

"""Migrations are frozen SQL (gridsync/migrations.py): a backfill does not call the live code
that keeps the same tables later. While both exist, they must agree on the same data: migration
0007's backfill and ``visits.recount_kinds`` give the same kept kinds on a database with visits
of every shape (several kinds, none, voided, the same key in several visits, two members)."""

from __future__ import annotations

from datetime import date

from gridsync import demo, migrations, visits
from gridsync.db import Store
from tests.test_service_kinds import kept


def test_the_frozen_kinds_backfill_equals_the_live_recount(tmp_path):
    scale = demo.Scale(
        "tiny", streets=1, communities=2, grids=4, households=200, members=30, days=20
    )
    with Store(tmp_path / "d.db") as store:
        demo.build(store, scale, seed=3, as_of=date(2026, 11, 23))

        def shapes(db):
            # voided visits (the newest of a key among them), visits without kinds, one kind
            # listed twice: the cases where a recount could go wrong
            db.execute(
                "UPDATE visits SET voided = 1 WHERE id IN (SELECT id FROM visits "
                "ORDER BY at_ms DESC LIMIT 40)"
            )
            db.execute(
                "UPDATE visits SET kinds = '[]' WHERE id IN (SELECT id FROM visits "
                "WHERE voided = 0 ORDER BY id LIMIT 30)"
            )
            db.execute(
                'UPDATE visits SET kinds = \'["policy", "policy", "safety"]\' WHERE id IN '
                "(SELECT id FROM visits WHERE voided = 0 ORDER BY id DESC LIMIT 30)"
            )

        store.write(shapes)
        store.write(visits.recount_kinds)
        live = store.read(kept)
        store.write(lambda db: db.execute("DELETE FROM coverage_member_kinds"))
        store.write(lambda db: db.execute("UPDATE coverage_grid_kinds SET last_ms = 0"))
        store.write(migrations.backfill_0007)
        frozen = store.read(kept)
    grids, members = live
    assert len(grids) >= 4 * 3 and len(members) > 30  # something to compare
    assert frozen == live

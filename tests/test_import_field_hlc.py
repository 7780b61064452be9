"""An import writes ``households.field_hlc`` through the merge's own writer, so that phones can
edit imported households; migration ``0009_field_hlc_shape`` repairs rows an older importer
left in a shape the merge could not read (every phone edit of them answered 500)."""

from __future__ import annotations

import csv
import json
import sqlite3
import time

from litestar.testing import TestClient

from gridsync import importer
from gridsync.app import create_app
from gridsync.clock import FixedClock
from gridsync.db import Store
from gridsync.sync.client import DeviceClient
from tests.conftest import CLI
from tests.sync_helpers import Phone

HEADER = ["外部编号", "网格", "户主姓名", "标签", "备注"]


def write_csv(path, rows) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([HEADER, *rows])
    return str(path)


def import_file(store, path, clock=None) -> importer.Preview:
    kwargs = {"clock": clock} if clock else {}
    return store.write(importer.import_households, importer.read_file(path), CLI, **kwargs)


def household(store, household_id) -> dict:
    row = store.read(
        lambda db: db.execute(
            "SELECT tags, notes, field_hlc, seq FROM households WHERE id = ?", [household_id]
        ).fetchone()
    )
    return {"tags": json.loads(row[0]), "notes": row[1], "field_hlc": row[2], "seq": row[3]}


def test_a_phone_edits_a_household_whose_tags_an_import_changed(store, tiny, client, tmp_path):
    hid = importer.household_id_for("T-1")
    import_file(store, write_csv(tmp_path / "a.csv", [["T-1", "g1", "甲", "独居老人", "一"]]))
    changed = import_file(
        store, write_csv(tmp_path / "b.csv", [["T-1", "g1", "甲", "低保；残疾", "二"]])
    )
    assert changed.changed == 1
    stored = household(store, hid)
    assert stored["tags"] == ["disabled", "low_income"]
    stamps = json.loads(stored["field_hlc"])
    # the merge's shape: a field -> [hlc, seq, device, person]; tags -> {tag: stamp}
    assert stamps["notes"][1:] == [stored["seq"], "cli", None]
    assert set(stamps["tags"]) == {"disabled", "low_income"}
    assert all(s[1:] == [stored["seq"], "cli", None] for s in stamps["tags"].values())
    assert set(stamps["tags_removed"]) == {"elderly_alone"}

    # a raw push through the real app: 200 and applied, not a 500
    phone = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    r = phone.push(
        [
            phone.mutation(
                "household.update",
                hid,
                base_seq=stored["seq"],
                fields={"notes": "三"},
                tags_add=["renter"],
                tags_remove=["disabled"],
            )
        ]
    )
    assert r.status_code == 200, r.text
    assert [x["status"] for x in r.json()["results"]] == ["applied"]
    after = household(store, hid)
    assert (after["tags"], after["notes"]) == (["low_income", "renter"], "三")

    # the reference client: sync, edit the imported household, sync again: applied
    clock = FixedClock(int(time.time() * 1000))
    device = DeviceClient(
        client,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        person_id="m1",
        clock=clock,
        sleep=lambda _s: None,
    )
    import_file(store, write_csv(tmp_path / "c.csv", [["T-1", "g1", "甲", "低保", "四"]]))
    device.sync()
    device.update_household(hid, fields={"notes": "五"}, tags_add=["elderly_alone"])
    report = device.sync()
    assert (report.push.applied, report.push.rejected, report.push.merged) == (1, 0, 0)
    assert device.outcomes() == []
    final = household(store, hid)
    assert (final["tags"], final["notes"]) == (["elderly_alone", "low_income"], "五")

    # an import the phone has not seen is a value the merge keeps: the phone's edit a minute
    # later wins by its HLC, and the imported value goes to the conflict log
    import_file(store, write_csv(tmp_path / "d.csv", [["T-1", "g1", "甲", "低保", "六"]]), clock)
    clock.advance(minutes=1)
    device.update_household(hid, fields={"notes": "七"})
    report = device.sync()
    assert (report.push.merged, report.push.rejected) == (1, 0)
    assert [(x["field"], x["value"], x["winner"]) for x in report.push.lost] == [
        ("notes", "六", "七")
    ]
    assert household(store, hid)["notes"] == "七"


def test_an_import_that_moves_a_household_moves_its_visits(store, tiny, client, tmp_path):
    """The merge's writer also carries a household's visits to its new grid (as a phone's grid
    edit does); the old importer left them in the old grid."""
    hid = importer.household_id_for("T-2")
    import_file(store, write_csv(tmp_path / "a.csv", [["T-2", "g1", "乙", "", ""]]))
    phone = Phone(client, tiny.tokens["sec"], tiny.devices["sec"])
    r = phone.push([phone.visit(hid)])
    assert r.json()["results"][0]["status"] == "applied", r.text
    import_file(store, write_csv(tmp_path / "b.csv", [["T-2", "g2", "乙", "", ""]]))
    grids = store.read(
        lambda db: db.execute("SELECT grid_id FROM visits WHERE household_id = ?", [hid]).fetchall()
    )
    assert grids == [("g2",)]


# -- migration 0009_field_hlc_shape ----------------------------------------------------------

BAD_SHAPES = {
    # what the old importer wrote: bare HLCs, the tag set's HLC as one string
    "imported": (
        '{"notes":"001763860000000:00000:import","tags":"001763860000000:00000:import"}',
        ["elderly_alone"],
    ),
    "not json": ("{oops", []),
    "not an object": ('["a"]', []),
    "short list and odd values": (
        '{"phone":["001763860000000:00001:dev-m1"],"size":7,'
        '"tags":{"renter":"001763860000000:00002:dev-m1"},"tags_removed":"x"}',
        ["renter"],
    ),
}


def test_migration_rewrites_bad_field_hlc_into_the_merge_shape(db_path, store, tiny, settings):
    ids = tiny.households["g1"]
    store.close()
    conn = sqlite3.connect(db_path)
    with conn:
        good = '{"phone":["001763860000000:00003:dev-m2",5,"dev-m2","m2"]}'
        conn.execute("UPDATE households SET field_hlc = ? WHERE id = 'hh-g2-1'", [good])
        for hid, (text, tags) in zip(ids, BAD_SHAPES.values()):
            conn.execute(
                "UPDATE households SET field_hlc = ?, tags = ? WHERE id = ?",
                [text, json.dumps(tags), hid],
            )
        conn.execute(
            "DELETE FROM _sqlite_migrations WHERE migration_set = 'gridsync' AND name = ?",
            ["0009_field_hlc_shape"],
        )
    seqs = dict(conn.execute("SELECT id, seq FROM households").fetchall())
    conn.close()

    with Store(db_path) as reopened:  # applies the migration again
        rows = reopened.read(
            lambda db: db.execute(
                "SELECT id, field_hlc, seq FROM households WHERE grid_id = 'g1'"
            ).fetchall()
        )
        by_id = {r[0]: (json.loads(r[1]), r[2]) for r in rows}
        s0, s3 = seqs[ids[0]], seqs[ids[3]]
        assert by_id[ids[0]][0] == {
            "notes": ["001763860000000:00000:import", s0, None, None],
            "tags": {"elderly_alone": ["001763860000000:00000:import", s0, None, None]},
        }
        assert by_id[ids[1]][0] == {} and by_id[ids[2]][0] == {}
        assert by_id[ids[3]][0] == {
            "phone": ["001763860000000:00001:dev-m1", s3, None, None],
            "size": ["", s3, None, None],
            "tags": {"renter": ["001763860000000:00002:dev-m1", s3, None, None]},
        }
        assert reopened.read(  # a row in the merge's shape is left alone
            lambda db: db.execute(
                "SELECT field_hlc FROM households WHERE id = 'hh-g2-1'"
            ).fetchone()
        ) == (good,)
        assert all(by_id[i][1] == seqs[i] for i in ids)  # no new change seq: not on the wire

        # the real app now applies a phone's edit of every repaired household
        with TestClient(app=create_app(settings, store=reopened)) as client:
            phone = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
            r = phone.push(
                [
                    phone.mutation(
                        "household.update",
                        hid,
                        base_seq=seqs[hid],
                        fields={"notes": "修复后"},
                        tags_add=["low_income"],
                        tags_remove=["elderly_alone", "renter"],
                    )
                    for hid in ids
                ]
            )
            assert r.status_code == 200, r.text
            assert [x["status"] for x in r.json()["results"]] == ["applied"] * len(ids)

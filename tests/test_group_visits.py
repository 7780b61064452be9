"""Group visits (楼栋会, issue 18): ``visit.create`` with ``household_ids`` is ONE visit record
counted as a contact of each household, pushed by the reference client through the real push
endpoint; coverage marks the group contacts, and the policy decides whether one satisfies a
priority household's cycle (default: no); void and move apply to all; the visits export marks
it (read back with openpyxl)."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime, timedelta

import openpyxl
import pytest

from gridsync import coverage, org
from gridsync.coverage.assignments import ASSIGNER_ROLES
from gridsync.models import PolicyOverride
from gridsync.sync.client import DeviceClient
from tests.conftest import CLI, bearer
from tests.sync_helpers import Phone

G1 = ["hh-g1-1", "hh-g1-2", "hh-g1-3", "hh-g1-4"]  # hh-g1-1 is elderly_alone: a priority tag


def phone(client, tiny, person="m1"):
    from gridsync.clock import FixedClock

    return DeviceClient(
        client,
        token=tiny.tokens[person],
        device_id=tiny.devices[person],
        person_id=person,
        clock=FixedClock(int(time.time() * 1000)),
        sleep=lambda _s: None,
    )


@pytest.fixture
def assigned(store, settings, tiny):
    admin = store.read(org.resolve_scope, "admin")
    for hid in G1:
        store.write(coverage.assign, settings, CLI, frozenset(ASSIGNER_ROLES), admin, hid, "m1")
    return G1


def kept(store, hid):
    return store.read(
        lambda db: db.execute(
            "SELECT last_visit_ms, last_responsible_visit_ms, last_single_visit_ms "
            "FROM households WHERE id = ?",
            [hid],
        ).fetchone()
    )


def grid_row(client, tiny, grid="g1"):
    r = client.get(
        "/api/v1/coverage/", params={"scope_id": grid}, headers=bearer(tiny.tokens["admin"])
    )
    assert r.status_code == 200, r.text
    return next(row for row in r.json()["rows"] if row["unit_id"] == grid)


def test_one_record_is_a_contact_of_each_household(client, tiny, store, assigned):
    m1 = phone(client, tiny)
    m1.sync()
    queued = m1.log_group_visit(G1, "door", ["policy"], "3号楼楼栋会")
    m1.sync()
    assert m1.rejected() == []
    rows = store.read(
        lambda db: db.execute(
            "SELECT id, household_id, group_size FROM visits WHERE note = '3号楼楼栋会'"
        ).fetchall()
    )
    assert len(rows) == 1 and rows[0][2] == 4 and rows[0][1] == G1[0]
    links = store.read(
        lambda db: sorted(
            r[0]
            for r in db.execute(
                "SELECT household_id FROM visit_households WHERE visit_id = ?", [rows[0][0]]
            )
        )
    )
    assert links == G1
    for hid in G1:
        last, by_responsible, single = kept(store, hid)
        assert last is not None and by_responsible == last and single is None

    # another phone (the secretary's) pulls the one visit with every household
    sec = phone(client, tiny, "sec")
    sec.sync()
    visit = sec.visits()[queued.id]
    assert visit["household_ids"] == G1 and visit["household_id"] == G1[0]
    # and the member's own view lists it under each household
    assert all(queued.id in m1.visits(h) for h in G1)

    # coverage: contacted, marked as group contacts; the priority household is still overdue
    row = grid_row(client, tiny)
    assert row["contacted"] == 4 and row["contacted_by_responsible"] == 4
    assert row["group_contacted"] == 4
    assert row["priority_households"] == 1 and row["priority_overdue"] == 1
    violations = client.get(
        "/api/v1/coverage/violations",
        params={"scope_id": "g1", "kind": "priority_overdue"},
        headers=bearer(tiny.tokens["admin"]),
    ).json()
    assert [v["id"] for v in violations["items"]] == ["hh-g1-1"]

    # a visit of its own satisfies it, and leaves three group-only contacts
    m1.log_visit("hh-g1-1", "door", [], "单独走访")
    m1.sync()
    row = grid_row(client, tiny)
    assert row["priority_overdue"] == 0 and row["group_contacted"] == 3


def test_the_policy_may_let_a_group_contact_satisfy_a_priority_cycle(
    client, tiny, store, settings, assigned
):
    m1 = phone(client, tiny)
    m1.sync()
    m1.log_group_visit(G1, "door", [], "楼栋会")
    m1.sync()
    assert grid_row(client, tiny)["priority_overdue"] == 1
    store.write(
        coverage.set_policy,
        settings,
        CLI,
        "c1",
        PolicyOverride(group_contact_counts_for_priority=True),
    )
    assert grid_row(client, tiny)["priority_overdue"] == 0
    # the unit path (from the kept aggregates) agrees with the member path
    r = client.get(
        "/api/v1/coverage/",
        params={"scope_id": "c1", "level": "community"},
        headers=bearer(tiny.tokens["admin"]),
    ).json()
    community = next(x for x in r["rows"] if x["unit_id"] == "c1")
    assert community["priority_overdue"] == 0 and community["group_contacted"] == 4


def test_void_and_move_apply_to_every_household(client, tiny, store, assigned):
    m1 = phone(client, tiny)
    m1.sync()
    queued = m1.log_group_visit(G1[:3], "door", [], "楼栋会")
    m1.sync()
    # the admin moves hh-g1-2 to g2: its place in the group visit follows it
    admin = Phone(client, tiny.tokens["admin"], tiny.devices["admin"])
    r = admin.push(
        [admin.mutation("household.update", "hh-g1-2", fields={"grid_id": "g2"}, base_seq=0)]
    )
    assert r.status_code == 200, r.text
    grid = store.read(
        lambda db: db.execute(
            "SELECT grid_id FROM visit_households WHERE household_id = 'hh-g1-2'"
        ).fetchone()[0]
    )
    assert grid == "g2"
    assert kept(store, "hh-g1-2")[0] is not None
    m1.void_visit(queued.id)
    m1.sync()
    assert m1.rejected() == []
    for hid in G1[:3]:
        assert kept(store, hid) == (None, None, None)


def test_refusals_store_nothing(client, tiny, store):
    p = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    at = "2026-11-20T09:30:00+08:00"

    def create(**data):
        return p.mutation("visit.create", f"v-{len(data)}-{time.time_ns()}", data=data)

    both = create(household_id="hh-g1-1", household_ids=["hh-g1-2"], at=at, channel="door")
    neither = create(at=at, channel="door")
    twice = create(household_ids=["hh-g1-1", "hh-g1-1"], at=at, channel="door")
    outside = create(household_ids=["hh-g1-1", "hh-g2-1"], at=at, channel="door")
    unknown = create(household_ids=["hh-g1-1", "nope"], at=at, channel="door")
    r = p.push([both, neither, twice, outside, unknown])
    assert r.status_code == 200, r.text
    codes = [res.get("code") for res in r.json()["results"]]
    assert codes == [
        "validation_error",
        "validation_error",
        "validation_error",
        "out_of_scope",
        "not_found",
    ]
    assert store.read(lambda db: db.execute("SELECT count(*) FROM visits").fetchone()[0]) == 0
    assert (
        store.read(lambda db: db.execute("SELECT count(*) FROM visit_households").fetchone()[0])
        == 0
    )
    # more than 50 households: refused by the wire type before any work
    many = create(household_ids=[f"h{i}" for i in range(51)], at=at, channel="door")
    r = p.push([many])
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert result["code"] == "validation_error" and "length <= 50" in result["message"]


def test_the_visits_export_marks_the_group_contact(client, tiny, store, assigned):
    m1 = phone(client, tiny)
    m1.sync()
    m1.log_group_visit(G1, "door", [], "楼栋会")
    m1.log_visit("hh-g1-2", "phone", [], "电话")
    m1.sync()
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    r = client.get(
        "/api/v1/exports/visits",
        params={"format": "xlsx", "since": since},
        headers=bearer(tiny.tokens["admin"]),
    )
    assert r.status_code == 200, r.text
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    header, *rows = [list(x) for x in ws.iter_rows(values_only=True)]
    recs = [dict(zip(header, x)) for x in rows]
    group = next(x for x in recs if x["备注"] == "楼栋会")
    single = next(x for x in recs if x["备注"] == "电话")
    assert group["集体走访"] == "是" and group["集体走访住户"] == ",".join(G1)
    assert single["集体走访"] == "否" and not single["集体走访住户"]


def test_the_coverage_export_counts_group_only_contacts(client, tiny, store, assigned):
    m1 = phone(client, tiny)
    m1.sync()
    m1.log_group_visit(G1[:3], "door", [], "楼栋会")
    m1.log_visit(G1[0], "door", [], "单独走访")
    m1.sync()
    r = client.get(
        "/api/v1/exports/coverage",
        params={"format": "xlsx"},
        headers=bearer(tiny.tokens["admin"]),
    )
    assert r.status_code == 200, r.text
    ws = openpyxl.load_workbook(io.BytesIO(r.content))["网格"]
    header, *rows = list(ws.iter_rows(values_only=True))
    g1 = next(dict(zip(header, row)) for row in rows if row[0] == "g1")
    assert g1["已走访"] == 3 and g1["仅集体走访户数"] == 2


def test_a_group_visit_reaches_the_phones_of_every_grid_it_names(client, tiny, store):
    sec = phone(client, tiny, "sec")  # community c1: both grids
    sec.sync()
    queued = sec.log_group_visit(["hh-g1-1", "hh-g2-1", "hh-g2-2"], "door", [], "跨网格楼栋会")
    sec.sync()
    assert sec.rejected() == []
    m2 = phone(client, tiny, "m2")  # grid g2 only; the visit's own grid is g1
    m2.sync()
    assert m2.visits()[queued.id]["household_ids"] == ["hh-g1-1", "hh-g2-1", "hh-g2-2"]
    assert queued.id in m2.visits("hh-g2-2")
    # and its void reaches them too
    sec.void_visit(queued.id)
    sec.sync()
    m2.sync()
    assert m2.visits()[queued.id]["voided"] is True


def test_each_households_visits_list_the_group_visit(client, tiny):
    m1 = phone(client, tiny)
    m1.sync()
    queued = m1.log_group_visit(G1[:2], "door", [], "楼栋会")
    m1.sync()
    for hid in G1[:2]:
        r = client.get(f"/api/v1/households/{hid}/visits", headers=bearer(tiny.tokens["sec"]))
        assert r.status_code == 200, r.text
        assert [v["id"] for v in r.json()["items"]] == [queued.id]
        assert r.json()["items"][0]["household_ids"] == G1[:2]


def test_the_digest_and_the_rollup_judge_a_group_contact_by_the_one_rule(
    client, tiny, store, settings, assigned
):
    """One owner (issues 14/18): a priority household visited only by a group visit of its
    responsible member is due in the member's daily digest AND priority overdue in the
    roll-up while the policy says a group contact does not satisfy a priority cycle; neither
    once it does."""
    from gridsync import digests

    m1 = phone(client, tiny)
    m1.sync()
    m1.log_group_visit(G1, "door", [], "楼栋会")
    m1.sync()
    assert m1.rejected() == []

    def digest():
        overdue, due, _ = store.read(digests.member_due, "m1", int(time.time() * 1000), settings)
        return {h.id for h in overdue + due}

    # kept: the member's own contact counts the group visit, their own visit alone is none
    own, own_single = store.read(
        lambda db: db.execute(
            "SELECT last_responsible_visit_ms, last_responsible_single_visit_ms "
            "FROM households WHERE id = 'hh-g1-1'"
        ).fetchone()
    )
    assert own is not None and own_single is None

    # policy off (the default): due to the member, and priority overdue in the roll-up
    assert "hh-g1-1" in digest()
    assert not {"hh-g1-2", "hh-g1-3", "hh-g1-4"} & digest()  # ordinary cycle: contacted
    assert grid_row(client, tiny)["priority_overdue"] == 1

    # policy on: neither
    store.write(
        coverage.set_policy,
        settings,
        CLI,
        "c1",
        PolicyOverride(group_contact_counts_for_priority=True),
    )
    assert "hh-g1-1" not in digest()
    assert grid_row(client, tiny)["priority_overdue"] == 0

    # policy off again, then the member's own visit alone satisfies both
    store.write(
        coverage.set_policy,
        settings,
        CLI,
        "c1",
        PolicyOverride(group_contact_counts_for_priority=False),
    )
    assert "hh-g1-1" in digest() and grid_row(client, tiny)["priority_overdue"] == 1
    m1.log_visit("hh-g1-1", "door", [], "单独走访")
    m1.sync()
    assert "hh-g1-1" not in digest() and grid_row(client, tiny)["priority_overdue"] == 0

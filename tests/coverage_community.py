"""A small hand-built district whose every coverage figure is known in advance.

Policy (settings): min 2, max 3 households per member, cycle 30 days, priority 7 days.
NOW = 2026-11-20 12:00 UTC. ``d`` = days before NOW of a household's last visit.

    d1 区 > s1 街道 > c1 社区 > g1 (branch b1), g2 (branch b2)
                    > c2 社区 > g3 (branch b3)

    g1  h1  m1  1号楼 101  elderly_alone  visits d3 [policy, safety]
        h2  m1  1号楼 102  disabled       d10 [opinion]          -> priority overdue
        h3  m1  1号楼 103                 d40 [hardship]         -> overdue
        h4  m1  1号楼 104  renter         never                  -> overdue
        h5  m2  2号楼 101                 d1 [environment]; a voided d2 [dispute]
        h6  --  2号楼 102  low_income     never                  -> unassigned
        h7  --  1号楼 201                 d5 [policy] by m2      -> unassigned
        h8  m1  moved_out (never counted)
    g2  h9  m3  2号楼 101                 d20 [dispute]
        h10 m3  1号楼 101                 d25 []
        h12 --  2号楼 102                 never                  -> unassigned
    g3  h13 m5  1号楼 101                 d2 [policy]
        h14 m5  1号楼 102  elderly_alone  never                  -> overdue, priority overdue

    members: m1 (b1, load 4: over cap), m2 (b1, load 1: under min), m3 (b2, load 2),
             m4 (b2, load 0: under min), m5 (b3, load 2), mx (b1, inactive: not counted)
    people:  admin; sec1 community_secretary of c1; bs1 branch_secretary of b1;
             street1 street of s1
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from gridsync import auth, org, visits
from gridsync.audit import Actor
from gridsync.clock import FixedClock, iso_ms, uuid7
from gridsync.config import CoveragePolicy, Settings
from gridsync.db import Store, next_seq
from gridsync.models import OrgUnit

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
CLI = Actor.cli()

POLICY = CoveragePolicy(
    min_households_per_member=2, max_households_per_member=3, cycle_days=30, priority_cycle_days=7
)


def coverage_settings(db_path: str) -> Settings:
    return Settings(db=db_path, coverage=POLICY)


@dataclass
class Community:
    tokens: dict[str, str] = field(default_factory=dict)
    clock: FixedClock = field(default_factory=lambda: FixedClock(NOW))


UNITS = [
    OrgUnit(id="d1", kind="district", name="市南区"),
    OrgUnit(id="s1", kind="street", name="八大峡街道", parent_id="d1"),
    OrgUnit(id="c1", kind="community", name="出头社区", parent_id="s1"),
    OrgUnit(id="c2", kind="community", name="团岛社区", parent_id="s1"),
    OrgUnit(id="g1", kind="grid", name="第一网格", parent_id="c1"),
    OrgUnit(id="g2", kind="grid", name="第二网格", parent_id="c1"),
    OrgUnit(id="g3", kind="grid", name="第三网格", parent_id="c2"),
    OrgUnit(id="b1", kind="branch", name="第一网格党支部", parent_id="c1", grid_id="g1"),
    OrgUnit(id="b2", kind="branch", name="第二网格党支部", parent_id="c1", grid_id="g2"),
    OrgUnit(id="b3", kind="branch", name="第三网格党支部", parent_id="c2", grid_id="g3"),
]

PEOPLE = [
    org.NewPerson(id="admin", name="区管理员", roles=["admin"], scope=["d1"], phone="13900000000"),
    org.NewPerson(id="street1", name="街道干部", roles=["street"], scope=["s1"]),
    org.NewPerson(id="sec1", name="王书记", roles=["community_secretary"], scope=["c1"]),
    org.NewPerson(id="bs1", name="刘支书", roles=["branch_secretary"], scope=["b1"]),
    org.NewPerson(
        id="m1", name="张伟", roles=["member"], scope=["g1"], branch_id="b1", phone="13811110001"
    ),
    org.NewPerson(
        id="m2", name="李娜", roles=["member"], scope=["g1"], branch_id="b1", phone="13811110002"
    ),
    org.NewPerson(
        id="m3", name="王芳", roles=["member"], scope=["g2"], branch_id="b2", phone="13811110003"
    ),
    org.NewPerson(
        id="m4", name="赵磊", roles=["member"], scope=["g2"], branch_id="b2", phone="13811110004"
    ),
    org.NewPerson(
        id="m5", name="陈静", roles=["member"], scope=["g3"], branch_id="b3", phone="13811110005"
    ),
    org.NewPerson(id="mx", name="退休党员", roles=["member"], scope=["g1"], branch_id="b1"),
]

# id, grid, building, room, tags, responsible member, status
HOUSEHOLDS = [
    ("h1", "g1", "1号楼", "101", ["elderly_alone"], "m1", "active"),
    ("h2", "g1", "1号楼", "102", ["disabled"], "m1", "active"),
    ("h3", "g1", "1号楼", "103", [], "m1", "active"),
    ("h4", "g1", "1号楼", "104", ["renter"], "m1", "active"),
    ("h5", "g1", "2号楼", "101", [], "m2", "active"),
    ("h6", "g1", "2号楼", "102", ["low_income"], None, "active"),
    ("h7", "g1", "1号楼", "201", [], None, "active"),
    ("h8", "g1", "3号楼", "101", [], "m1", "moved_out"),
    ("h9", "g2", "2号楼", "101", [], "m3", "active"),
    ("h10", "g2", "1号楼", "101", [], "m3", "active"),
    ("h12", "g2", "2号楼", "102", [], None, "active"),
    ("h13", "g3", "1号楼", "101", [], "m5", "active"),
    ("h14", "g3", "1号楼", "102", ["elderly_alone"], "m5", "active"),
]

# household, member, days before NOW, kinds, voided
VISITS = [
    ("h1", "m1", 3, ["policy", "safety"], False),
    ("h2", "m1", 10, ["opinion"], False),
    ("h3", "m1", 40, ["hardship"], False),
    ("h5", "m2", 1, ["environment"], False),
    ("h5", "m2", 2, ["dispute"], True),
    ("h7", "m2", 5, ["policy"], False),
    ("h9", "m3", 20, ["dispute"], False),
    ("h10", "m3", 25, [], False),
    ("h13", "m5", 2, ["policy"], False),
]


def insert_visit(
    db, household_id: str, member_id: str, at_ms: int, kinds: list[str], voided: bool = False
) -> str:
    """A visit through the one writer of visits (``gridsync.visits``), as sync's visit.create
    stores it, with all that is kept from it."""
    import json

    grid = db.execute("SELECT grid_id FROM households WHERE id = ?", [household_id]).fetchone()[0]
    vid = uuid7()
    row = visits.NewVisit(
        vid,
        household_id,
        grid,
        member_id,
        None,
        iso_ms(at_ms),
        at_ms,
        "door",
        json.dumps(sorted(kinds)),
        "",
        None,
        next_seq(db),
        iso_ms(at_ms),
        int(voided),
    )
    visits.insert(db, [row])
    return vid


def build_community(store: Store) -> Community:
    import json

    def load(db):
        org.add_units(db, UNITS)
        org.add_people(db, PEOPLE, CLI)
        db.execute("UPDATE people SET active = 0 WHERE id = 'mx'")
        created = iso_ms(NOW_MS - 400 * DAY_MS)
        for hid, grid, building, room, tags, member, status in HOUSEHOLDS:
            db.execute(
                "INSERT INTO households (id, grid_id, building, unit, room, head_name, phone, "
                "tags, responsible_member_id, status, seq, created_at, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    hid,
                    grid,
                    building,
                    "1单元",
                    room,
                    f"户主{hid}",
                    f"1370000{hid[1:]:0>4}",
                    json.dumps(sorted(tags)),
                    member,
                    status,
                    next_seq(db),
                    created,
                    created,
                ],
            )
        for hid, member, days, kinds, voided in VISITS:
            insert_visit(db, hid, member, NOW_MS - days * DAY_MS, kinds, voided)

    store.write(load)
    community = Community()
    for person in PEOPLE:
        if person.id == "mx":
            continue
        enrolled = store.write(auth.enroll, person.id, CLI, device_id=f"dev-{person.id}")
        community.tokens[person.id] = enrolled.token
    return community


# -- fixtures (import them into a test module) --------------------------------------------------

import pytest  # noqa: E402
from litestar.testing import TestClient  # noqa: E402

from gridsync.app import create_app  # noqa: E402


@pytest.fixture
def cov_settings(db_path) -> Settings:
    return coverage_settings(db_path)


@pytest.fixture
def comm(store) -> Community:
    return build_community(store)


@pytest.fixture
def cov_client(store, cov_settings, comm):
    with TestClient(app=create_app(cov_settings, store=store, clock=comm.clock)) as c:
        yield c

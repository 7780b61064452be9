"""Issue 14, "one owner per rule" and "contact by the responsible member":

- the weekly digest states the roll-up's numbers (same scope, same instant, each community's
  own policy), on a community where the digest's old SQL disagreed with the roll-up;
- one eligibility rule: ``gridsync assign`` and the import preview agree on a member whose
  branch maps to the grid but whose scope does not, and rebalancing never suggests them;
- a visit by someone else moves ``contacted`` and not ``contacted_by_responsible``; the
  household is listed as ``contacted_by_others_only``; voids and reassignments keep it exact;
- nothing in the package but ``gridsync/visits.py`` (and frozen migrations) writes visits or
  what is kept from them, and migration 0016's frozen backfill equals ``visits.recount``.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from click.testing import CliRunner

from gridsync import coverage, digests, migrations, org, visits
from gridsync.audit import Actor
from gridsync.cli import cli
from gridsync.clock import iso_ms, uuid7
from gridsync.db import next_seq
from gridsync.notify.routing import Router
from gridsync.org import Scope, resolve_scope
from tests.conftest import bearer
from tests.coverage_community import DAY_MS, NOW_MS, insert_visit
from tests.sync_helpers import Phone

CLI = Actor.cli()
ADMIN = Scope("admin", True, frozenset(), frozenset(), 0)
PACKAGE = Path(__file__).resolve().parent.parent / "gridsync"


# -- the digest is the roll-up ----------------------------------------------------------------


def _old_digest_overdue(db, grids: list[str], cycle: int, priority_cycle: int, tags) -> int:
    """What the digest's own SQL counted as overdue until issue 14: every active household of
    the grids, assigned or not, not visited within its cycle (priority households by the
    priority cycle). Kept here only to show the community below makes the two disagree."""
    n = 0
    for grid, raw, last in db.execute(
        "SELECT grid_id, tags, last_visit_ms FROM households WHERE status = 'active'"
    ):
        if grid in grids:
            days = priority_cycle if set(json.loads(raw)) & set(tags) else cycle
            n += (last or 0) < NOW_MS - days * DAY_MS
    return n


def test_the_weekly_digest_states_the_rollups_figures(store, cov_settings, comm):
    # c2 works by its own policy (what the district default would judge differently), and a
    # household of m1 is visited by another member only
    store.write(
        coverage.set_policy,
        cov_settings,
        CLI,
        "c2",
        coverage.PolicyOverride(cycle_days=60, priority_cycle_days=1, min_households_per_member=3),
    )
    store.write(insert_visit, "h4", "m2", NOW_MS - 2 * DAY_MS, ["policy"])

    def channels(db):
        for pid in ("sec1", "bs1"):
            db.execute(
                "UPDATE people SET channels = ? WHERE id = ?",
                [json.dumps(["json://127.0.0.1:9/digest"]), pid],
            )

    store.write(channels)
    queued = store.write(
        lambda db: digests.weekly_digests(
            db, now_ms=NOW_MS, settings=cov_settings, router=Router(None)
        )
    )
    assert queued == 2  # the secretary of c1 and the branch secretary of b1
    bodies = dict(
        store.read(
            lambda db: db.execute(
                "SELECT person_id, body FROM outbox WHERE kind = 'digest_weekly'"
            ).fetchall()
        )
    )
    figures = store.read(digests.weekly_figures, cov_settings, NOW_MS)
    assert set(figures) == {"c1", "c2", "b1", "b2", "b3"}
    for person, unit, level in (("sec1", "c1", "community"), ("bs1", "b1", "branch")):
        # the roll-up as the secretary reads it (`gridsync coverage`, GET /api/v1/coverage)
        scope = store.read(resolve_scope, person)
        (row,) = store.read(
            coverage.rollup, cov_settings, scope, unit, now_ms=NOW_MS, levels=[level]
        ).rows
        pct = round(100 * row.contact_rate)
        by_own = round(100 * row.compliance_rate)
        assert (
            f"住户 {row.households} 户，已落实联系党员 {row.assigned} 户，未落实 {row.unassigned} 户。"
            in bodies[person]
        )
        assert (
            f"本周期已走访 {row.contacted} 户（{pct}%），其中责任党员走访 "
            f"{row.contacted_by_responsible} 户（{by_own}%）；逾期未走访 {row.overdue} 户，"
            f"重点户逾期 {row.priority_overdue} 户。" in bodies[person]
        )
        assert f"不足2户的党员 {row.members_under_min} 人" in bodies[person]
        assert f"超过3户的 {row.members_over_cap} 人" in bodies[person]
    # every unit's figures are its roll-up row, each community under its own policy
    rows = {
        r.unit_id: r
        for r in store.read(
            coverage.rollup,
            cov_settings,
            ADMIN,
            None,
            now_ms=NOW_MS,
            levels=["branch", "community"],
        ).rows
    }
    for unit, f in figures.items():
        r = rows[unit]
        assert (f["households"], f["assigned"], f["contacted"], f["overdue"]) == (
            r.households,
            r.assigned,
            r.contacted,
            r.overdue,
        )
        assert (f["contacted_by_responsible"], f["priority_overdue"]) == (
            r.contacted_by_responsible,
            r.priority_overdue,
        )
        assert (f["under_min"], f["over_cap"]) == (r.members_under_min, r.members_over_cap)
    assert figures["c2"]["min_households"] == 3 and figures["c1"]["min_households"] == 2
    # the community makes the old SQL disagree: to it h6 and h12 (unassigned) and h2 (priority,
    # visited 10 days ago) were overdue beside h3; c2 under its 60-day policy has h14 only
    old = store.read(_old_digest_overdue, ["g1", "g2"], 30, 7, ["elderly_alone", "disabled"])
    assert (figures["c1"]["overdue"], old) == (1, 4)
    assert figures["c1"]["contacted"] - figures["c1"]["contacted_by_responsible"] == 2  # h4, h7
    assert figures["c2"]["overdue"] == 1


def test_the_demo_summary_is_the_engines(tmp_path):
    from datetime import date, datetime

    from gridsync import demo
    from gridsync.config import Settings
    from gridsync.db import Store

    scale = demo.Scale(
        "tiny", streets=1, communities=2, grids=4, households=200, members=30, days=40
    )
    now = int(datetime(2026, 11, 23, tzinfo=demo.CHINA).timestamp() * 1000)  # the history's end
    with Store(tmp_path / "d.db") as store:
        summary = demo.build(store, scale, seed=5, as_of=date(2026, 11, 23))
        (top,) = store.read(
            coverage.rollup, Settings(), ADMIN, None, now_ms=now, levels=["district"]
        ).rows
    assert summary["overdue_households"] == top.overdue
    assert summary["unassigned_households"] == top.unassigned
    assert summary["members_under_minimum"] == top.members_under_min
    others = top.assigned - top.overdue - top.contacted_by_responsible
    assert summary["contacted_by_others_only"] == others > 0  # the demo has such visits


# -- one eligibility rule ---------------------------------------------------------------------


def test_assign_import_and_rebalance_agree_on_who_may_serve_a_grid(
    store, cov_settings, comm, db_path, tmp_path
):
    # mz's branch b1 maps to g1, but their scope is g2 only: their phone never sees g1
    store.write(
        org.add_people,
        [org.NewPerson(id="mz", name="周敏", roles=["member"], scope=["g2"], branch_id="b1")],
        CLI,
    )
    assert not store.read(coverage.standing, "mz").serves("g1")
    assert store.read(coverage.standing, "mz").serves("g2")
    runner = CliRunner()

    def assign(household: str) -> tuple[int, str]:
        r = runner.invoke(cli, ["assign", household, "--member", "mz", "--db", db_path])
        return r.exit_code, r.output

    def preview(grid: str) -> list[tuple[int, str]]:
        file = tmp_path / f"{grid}.csv"
        with open(file, "w", newline="", encoding="utf-8-sig") as f:
            csv.writer(f).writerows(
                [["外部编号", "网格", "户主姓名", "负责党员"], ["X-1", grid, "甲", "mz"]]
            )
        r = runner.invoke(
            cli, ["import", "households", str(file), "--dry-run", "--json", "--db", db_path]
        )
        return [(e["row"], e["code"]) for e in json.loads(r.stdout)["errors"]]

    code, output = assign("h6")  # g1, unassigned
    assert code == 1 and "member_out_of_grid" in output
    assert preview("g1") == [(2, "member_out_of_grid")]
    # where their scope holds the grid, both accept
    assert preview("g2") == []
    code, output = assign("h12")  # g2, unassigned
    assert code == 0, output
    # rebalancing suggests members by the same rule: mz (the least loaded of b1) is never
    # suggested for g1's unassigned households
    plan = store.read(coverage.rebalance, cov_settings, ADMIN, None, now_ms=NOW_MS)
    assert {s.household_id for s in plan.suggestions} == {"h6", "h7"}
    assert all(s.member_id != "mz" for s in plan.suggestions)


def test_is_a_member_is_written_once():
    """The role test of a member appears in SQL nowhere but coverage/members.py (migrations
    keep their own frozen copy)."""
    pattern = re.compile(
        r"""'\\?"member\\?"'|value = 'member'|roles LIKE '[^']*member|"member" (?:not )?in (?:msgspec|json|roles)"""
    )
    found = []
    for path in [*PACKAGE.rglob("*.py"), *(PACKAGE.parent / "bench").rglob("*.py")]:
        if path.name == "migrations.py" or path.parts[-2:] == ("coverage", "members.py"):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}")
    assert found == [], "\n".join(found)


# -- contact by the responsible member --------------------------------------------------------


def _member_row(store, settings, member: str, now_ms: int):
    report = store.read(coverage.rollup, settings, ADMIN, None, now_ms=now_ms, levels=["member"])
    return next(r for r in report.rows if r.unit_id == member)


def _others_only(store, settings, now_ms: int) -> list[str]:
    page = store.read(
        coverage.violations,
        settings,
        ADMIN,
        None,
        now_ms=now_ms,
        kinds=["contacted_by_others_only"],
    )
    assert page.total == len(page.items)
    return [v.id for v in page.items]


def test_a_visit_by_someone_else_is_contact_but_not_the_members(client, tiny, store, settings):
    """Through the real push (the app's clock is the real one): figures of member m1 and the
    violations list after each write."""
    import time

    def assign(member: str) -> None:
        store.write(
            coverage.assign,
            settings,
            CLI,
            frozenset({"admin"}),
            ADMIN,
            "hh-g1-2",
            member,
            replace=True,
        )

    assign("m1")
    sec = Phone(client, tiny.tokens["sec"], tiny.devices["sec"])
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])

    def figures() -> tuple[int, int, float | None, list[str]]:
        now_ms = int(time.time() * 1000) + 60_000
        row = _member_row(store, settings, "m1", now_ms)
        return (
            row.contacted,
            row.contacted_by_responsible,
            row.compliance_rate,
            _others_only(store, settings, now_ms),
        )

    assert figures() == (0, 0, 0.0, [])
    # the community secretary visits m1's household: contacted, not by m1
    r = sec.push([sec.visit("hh-g1-2", kinds=["policy"])])
    assert r.json()["results"][0]["status"] == "applied", r.text
    assert figures() == (1, 0, 0.0, ["hh-g1-2"])
    # m1's own visit: by the responsible member too
    own = m1.visit("hh-g1-2", kinds=["safety"])
    r = m1.push([own])
    assert r.json()["results"][0]["status"] == "applied", r.text
    assert figures() == (1, 1, 1.0, [])
    # m1 voids it: back to contacted by others only
    r = m1.push([m1.mutation("visit.void", own["id"])])
    assert r.json()["results"][0]["status"] == "applied", r.text
    assert figures() == (1, 0, 0.0, ["hh-g1-2"])

    # a new responsible member takes their own earlier visit along (migration 0016's trigger
    # recounts from the visits), and the next one starts from theirs
    store.write(
        org.add_people,
        [org.NewPerson(id="m9", name="孙丽", roles=["member"], scope=["g1"], branch_id="b1")],
        CLI,
    )
    at = int(time.time() * 1000) - DAY_MS
    store.write(insert_visit, "hh-g1-2", "m9", at, [])

    def kept(db):
        return db.execute(
            "SELECT responsible_member_id, last_responsible_visit_ms, "
            "last_responsible_single_visit_ms FROM households WHERE id = 'hh-g1-2'"
        ).fetchone()

    # (the newest visit alone by the responsible member follows too: migration 0027)
    assert store.read(kept) == ("m1", None, None)  # m9's visit is not m1's
    assign("m9")
    assert store.read(kept) == ("m9", at, at)
    assign("m1")
    assert store.read(kept) == ("m1", None, None)


# -- one writer of visits ---------------------------------------------------------------------

_KEPT = ("visits", "visit_households", "coverage_grid_kinds", "coverage_member_kinds")
_KEPT_COLUMNS = (
    "last_visit_ms",
    "last_responsible_visit_ms",
    "last_single_visit_ms",
    "last_responsible_single_visit_ms",
)
_AGGREGATES = ("coverage_members", "coverage_grid_counts", "coverage_load_histogram")


def test_nothing_but_visits_py_writes_visits_or_what_is_kept_from_them():
    writes = re.compile(
        r"(INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?(\w+)",
        re.IGNORECASE,
    )
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name in ("migrations.py",) or path == PACKAGE / "visits.py":
            continue
        text = path.read_text(encoding="utf-8")
        for m in writes.finditer(text):
            table = m.group(2)
            line = text[: m.start()].count("\n") + 1
            statement = text[m.start() : m.start() + 400]
            if table in _KEPT or table in _AGGREGATES:
                found.append(f"{path.name}:{line}: writes {table}")
            elif table == "households" and m.group(1).upper() == "UPDATE":
                set_part = statement.split("WHERE")[0]
                for column in _KEPT_COLUMNS:
                    if re.search(rf"\b{column}\s*=", set_part):
                        found.append(f"{path.name}:{line}: writes households.{column}")
    assert found == [], "\n".join(found)


def test_migration_0016s_frozen_backfill_equals_the_live_recount(store, cov_settings, comm):
    store.write(insert_visit, "h4", "m2", NOW_MS - 2 * DAY_MS, ["policy"])  # not m1's own
    store.write(insert_visit, "h9", "m3", NOW_MS - 3 * DAY_MS, [], True)  # voided

    def kept(db):
        return db.execute(
            "SELECT id, last_visit_ms, last_responsible_visit_ms FROM households ORDER BY id"
        ).fetchall()

    live = store.read(kept)
    assert any(row[2] is not None for row in live) and any(
        row[1] != row[2] for row in live
    )  # something to compare
    store.write(lambda db: db.execute("UPDATE households SET last_responsible_visit_ms = 0"))
    store.write(migrations.backfill_0016)
    assert store.read(kept) == live
    store.write(lambda db: db.execute("UPDATE households SET last_responsible_visit_ms = 0"))
    store.write(visits.recount)
    assert store.read(kept) == live


def test_migration_0027s_frozen_backfill_equals_the_live_recount(store, cov_settings, comm):
    def group_visit(db, member_id, at_ms):
        """A group visit (楼栋会) of two of ``member_id``'s households, through the writer."""
        rows = db.execute(
            "SELECT id, grid_id FROM households WHERE responsible_member_id = ? "
            "ORDER BY id LIMIT 2",
            [member_id],
        ).fetchall()
        vid = uuid7()
        at = iso_ms(at_ms)
        row = visits.NewVisit(
            vid, rows[0][0], rows[0][1], member_id, None, at, at_ms, "door", "[]", "楼栋会",
            None, next_seq(db), at, 0, len(rows),
        )  # fmt: skip
        visits.insert(db, [row], [visits.GroupLink(vid, hid, grid) for hid, grid in rows])

    store.write(insert_visit, "h4", "m2", NOW_MS - 2 * DAY_MS, ["policy"])  # not m1's own
    store.write(insert_visit, "h9", "m3", NOW_MS - 3 * DAY_MS, [], True)  # voided
    store.write(group_visit, "m1", NOW_MS - DAY_MS)  # newer than their visits alone

    def kept(db):
        return db.execute(
            "SELECT id, last_responsible_visit_ms, last_responsible_single_visit_ms "
            "FROM households ORDER BY id"
        ).fetchall()

    live = store.read(kept)
    # something to compare: a contact alone kept, and a group contact newer than it
    assert any(row[2] is not None for row in live)
    assert any(row[1] is not None and row[1] != row[2] for row in live)
    store.write(lambda db: db.execute("UPDATE households SET last_responsible_single_visit_ms = 0"))
    store.write(migrations.backfill_0027)
    assert store.read(kept) == live
    store.write(lambda db: db.execute("UPDATE households SET last_responsible_single_visit_ms = 0"))
    store.write(visits.recount)
    assert store.read(kept) == live


def test_the_api_shows_both_figures_and_applies_the_one_rule(cov_client, comm, store):
    store.write(insert_visit, "h4", "m2", NOW_MS - 2 * DAY_MS, ["policy"])  # m1's, by m2
    store.write(
        org.add_people,
        [org.NewPerson(id="mz", name="周敏", roles=["member"], scope=["g2"], branch_id="b1")],
        CLI,
    )
    h = bearer(comm.tokens["sec1"])
    r = cov_client.get("/api/v1/coverage", params={"scope": "c1", "level": "grid"}, headers=h)
    assert r.status_code == 200, r.text
    g1 = next(row for row in r.json()["rows"] if row["unit_id"] == "g1")
    # h1, h2, h4 (by m2), h5, h7 (unassigned, by m2): 5 contacted; h1, h2, h5 by their member
    assert (g1["contacted"], g1["contacted_by_responsible"]) == (5, 3)
    assert g1["compliance_rate"] == round(3 / 7, 4) and g1["contact_rate"] == round(5 / 7, 4)
    r = cov_client.get(
        "/api/v1/coverage/violations",
        params={"scope": "c1", "kind": "contacted_by_others_only"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert [(v["id"], v["member_id"]) for v in r.json()["items"]] == [("h4", "m1")]
    r = cov_client.post(
        "/api/v1/coverage/assignments", json={"household_id": "h6", "member_id": "mz"}, headers=h
    )
    assert r.status_code == 400 and r.json()["code"] == "member_out_of_grid", r.text


def test_the_daily_digest_counts_the_members_own_visits(store, cov_settings, comm):
    """h4 (m1's) visited by m2 is contacted for the roll-up, and still overdue to m1; h3
    (m1's own visit 40 days ago) is overdue; h1 (m1, 3 days ago) and h2 (priority, 10 days
    ago: past its 7 days) as the engine's due_ms judges them."""
    store.write(insert_visit, "h4", "m2", NOW_MS - 2 * DAY_MS, ["policy"])
    overdue, due, policy = store.read(digests.member_due, "m1", NOW_MS, cov_settings)
    assert {h.id: h.last_visit_ms for h in overdue} == {
        "h2": NOW_MS - 10 * DAY_MS,
        "h3": NOW_MS - 40 * DAY_MS,
        "h4": None,  # not by m1
    }
    assert [h.id for h in overdue] == ["h2", "h4", "h3"]  # priority first, never visited next
    assert due == []  # h1: due in 4 days (priority, 7-day cycle), past the 3 days shown
    assert policy.cycle_days == 30
    row = _member_row(store, cov_settings, "m1", NOW_MS)
    assert (row.contacted, row.contacted_by_responsible, row.overdue) == (3, 2, 1)

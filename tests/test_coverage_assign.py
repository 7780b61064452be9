"""Assignments (each refusal code, the cap override and its log), rebalancing, the policy API and
pull source, and the assessors' sample."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

import gridsync
from gridsync import audit, coverage
from gridsync.db import current_seq
from gridsync.org import Scope, resolve_scope
from gridsync.sync import policy as sync_policy
from gridsync.sync.sources import SourceContext
from tests.conftest import bearer
from tests.coverage_community import DAY_MS, NOW_MS, insert_visit

ADMIN = Scope("admin", True, frozenset(), frozenset(), 0)
ROOT = Path(gridsync.__file__).resolve().parent.parent


def _assign(client, token, **body):
    return client.post("/api/v1/coverage/assignments", json=body, headers=bearer(token))


def _household(store, hid):
    return store.read(
        lambda db: db.execute(
            "SELECT responsible_member_id, seq, updated_at FROM households WHERE id = ?", [hid]
        ).fetchone()
    )


@pytest.mark.parametrize(
    "who, body, status, code",
    [
        ("m1", {"household_id": "h6", "member_id": "m2"}, 403, "forbidden"),
        ("sec1", {"household_id": "nope", "member_id": "m2"}, 404, "not_found"),
        ("bs1", {"household_id": "h12", "member_id": "m3"}, 403, "out_of_scope"),
        ("sec1", {"household_id": "h13", "member_id": "m5"}, 403, "out_of_scope"),
        ("sec1", {"household_id": "h8", "member_id": "m2"}, 409, "household_inactive"),
        ("sec1", {"household_id": "h6", "member_id": "nobody"}, 404, "not_found"),
        ("sec1", {"household_id": "h6", "member_id": "bs1"}, 400, "not_a_member"),
        ("sec1", {"household_id": "h6", "member_id": "mx"}, 400, "member_inactive"),
        ("sec1", {"household_id": "h12", "member_id": "m1"}, 400, "member_out_of_grid"),
        ("sec1", {"household_id": "h1", "member_id": "m2"}, 409, "already_assigned"),
        ("sec1", {"household_id": "h6", "member_id": "m1"}, 409, "over_cap"),
        ("sec1", {"household_id": "h6", "member_id": "m2", "extra": 1}, 400, "validation_error"),
    ],
)
def test_each_refusal_code(store, cov_client, comm, who, body, status, code):
    before = store.read(current_seq)
    r = _assign(cov_client, comm.tokens[who], **body)
    assert r.status_code == status, r.text
    assert r.json()["code"] == code
    assert r.json()["message"]
    assert store.read(current_seq) == before  # nothing written
    assert _household(store, "h6")[0] is None


def test_already_assigned_names_the_current_member(cov_client, comm):
    r = _assign(cov_client, comm.tokens["sec1"], household_id="h1", member_id="m2")
    assert r.json()["current_member_id"] == "m1"


def test_assign_bumps_seq_and_is_audited(store, cov_client, comm):
    seq_before = _household(store, "h6")[1]
    r = _assign(cov_client, comm.tokens["bs1"], household_id="h6", member_id="m2")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == {
        "household_id": "h6",
        "member_id": "m2",
        "previous_member_id": None,
        "status": "assigned",
        "seq": body["seq"],
        "load": 2,
        "cap": 3,
        "override_cap": False,
    }
    member, seq, updated_at = _household(store, "h6")
    assert member == "m2" and seq == body["seq"] > seq_before
    assert updated_at.startswith("2026-11-20T12:00:00")  # the injected clock
    entry = store.read(audit.entries, action="household.assign")[0]
    assert (entry["person_id"], entry["device_id"], entry["target"]) == ("bs1", "dev-bs1", "h6")
    # the same assignment again changes nothing
    again = _assign(cov_client, comm.tokens["bs1"], household_id="h6", member_id="m2").json()
    assert again["status"] == "unchanged" and _household(store, "h6")[1] == seq


def test_move_needs_replace(store, cov_client, comm):
    r = _assign(
        cov_client,
        comm.tokens["sec1"],
        household_id="h5",
        member_id="m1",
        replace=True,
        override_cap=True,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["previous_member_id"]) == ("moved", "m2")
    log = store.read(coverage.assignment_log, "h5")[0]
    assert (log["previous_member_id"], log["member_id"]) == ("m2", "m1")


def test_cap_override_is_logged(store, cov_client, comm):
    r = _assign(
        cov_client,
        comm.tokens["sec1"],
        household_id="h6",
        member_id="m1",
        override_cap=True,
        reason="邻居，熟悉情况",
    )
    assert r.status_code == 200, r.text
    assert (r.json()["load"], r.json()["cap"], r.json()["override_cap"]) == (5, 3, True)
    log = store.read(coverage.assignment_log, "h6")
    assert len(log) == 1
    assert (
        log[0]["override_cap"],
        log[0]["load_after"],
        log[0]["cap"],
        log[0]["person_id"],
        log[0]["reason"],
    ) == (1, 5, 3, "sec1", "邻居，熟悉情况")
    entry = store.read(audit.entries, action="household.assign")[0]
    assert entry["detail"]["override_cap"] is True
    # an assignment within the cap is logged without the flag
    _assign(cov_client, comm.tokens["sec1"], household_id="h7", member_id="m2")
    assert store.read(coverage.assignment_log, "h7")[0]["override_cap"] == 0


def test_cli_assign(db_path, store, comm, tmp_path):
    config = tmp_path / "gridsync.toml"
    config.write_text("[coverage]\nmin_households_per_member = 2\nmax_households_per_member = 3\n")

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "gridsync", *args, "--db", db_path, "--config", str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    refused = cli("assign", "h1", "--member", "m2")
    assert refused.returncode == 1
    assert "already_assigned" in refused.stderr and "Traceback" not in refused.stderr
    over = cli("assign", "h6", "--member", "m1")
    assert over.returncode == 1 and "over_cap" in over.stderr
    done = cli("assign", "h6", "--member", "m1", "--override-cap", "--json")
    assert done.returncode == 0, done.stderr
    assert '"override_cap":true' in done.stdout
    moved = cli("assign", "h1", "--member", "m2", "--move")
    assert moved.returncode == 0, moved.stderr
    assert _household(store, "h1")[0] == "m2"
    assert store.read(coverage.assignment_log, "h6")[0]["device_id"] == "cli"


# -- rebalancing ----------------------------------------------------------------------------------


def test_rebalance_neighbours_first_then_least_loaded(store, cov_settings, comm):
    plan = store.read(coverage.rebalance, cov_settings, ADMIN, None, now_ms=NOW_MS)
    got = [(s.household_id, s.member_id, s.reason, s.member_load) for s in plan.suggestions]
    # m1 is full (4 > cap 3). h7 (1号楼): m2 has nothing there -> least loaded; h6 (2号楼):
    # m2 already holds h5 there -> neighbour. h12 (g2, 2号楼): m3 holds h9 there, so m3 wins
    # although m4 holds nothing.
    assert got == [
        ("h7", "m2", "least_loaded", 1),
        ("h6", "m2", "neighbour", 2),
        ("h12", "m3", "neighbour", 2),
    ]
    assert plan.unplaced == []
    # nothing is written by a suggestion
    assert _household(store, "h7")[0] is None


def test_rebalance_respects_capacity(store, cov_settings, comm):
    for hid in ("h20", "h21"):
        store.write(
            lambda db, hid=hid: db.execute(
                "INSERT INTO households (id, grid_id, building, room, seq, created_at, updated_at) "
                "VALUES (?, 'g1', '9号楼', ?, 999, 'x', 'x')",
                [hid, hid],
            )
        )
    plan = store.read(coverage.rebalance, cov_settings, ADMIN, "g1", now_ms=NOW_MS)
    assert [s.member_id for s in plan.suggestions] == ["m2", "m2"]  # m2 reaches the cap of 3
    assert plan.unplaced == ["h20", "h21"]


def test_rebalance_applied_only_on_confirmation(store, cov_client, comm):
    h = bearer(comm.tokens["sec1"])
    plan = cov_client.get("/api/v1/coverage/rebalance", params={"scope": "c1"}, headers=h)
    assert plan.status_code == 200, plan.text
    picks = [
        {"household_id": s["household_id"], "member_id": s["member_id"]}
        for s in plan.json()["suggestions"]
    ]
    picks.append({"household_id": "h1", "member_id": "m2"})  # someone else's household
    r = cov_client.post("/api/v1/coverage/rebalance", json={"items": picks}, headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["applied"], body["refused"]) == (3, 1)
    assert body["items"][-1]["code"] == "already_assigned"
    assert [_household(store, hid)[0] for hid in ("h7", "h6", "h12")] == ["m2", "m2", "m3"]
    logs = store.read(coverage.assignment_log)
    assert {log["reason"] for log in logs} == {"rebalance"}
    forbidden = cov_client.post(
        "/api/v1/coverage/rebalance", json={"items": picks[:1]}, headers=bearer(comm.tokens["m1"])
    )
    assert forbidden.status_code == 403


# -- policy ---------------------------------------------------------------------------------------


def test_policy_api_validates_and_is_admin_only(cov_client, comm):
    admin = bearer(comm.tokens["admin"])
    r = cov_client.put(
        "/api/v1/coverage/policies/c2", json={"min_households_per_member": 3}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["policy"]["min_households_per_member"] == 3
    assert r.json()["policy"]["max_households_per_member"] == 3  # the district default
    assert r.json()["overridden"] == ["min_households_per_member"]
    for body, field in [
        ({"min_households_per_member": 9}, "min_households_per_member"),
        ({"cycle_days": 0}, "cycle_days"),
        ({"service_kinds": []}, "service_kinds"),
        ({"service_kinds": ["a", "a"]}, "service_kinds"),
        ({"colour": "red"}, None),
    ]:
        bad = cov_client.put("/api/v1/coverage/policies/c1", json=body, headers=admin)
        assert bad.status_code == 400, body
        assert bad.json()["code"] == "validation_error"
        if field:
            assert bad.json().get("field", "").endswith(field), bad.json()
    assert cov_client.put("/api/v1/coverage/policies/g1", json={}, headers=admin).status_code == 404
    assert (
        cov_client.put(
            "/api/v1/coverage/policies/c1",
            json={"cycle_days": 9},
            headers=bearer(comm.tokens["sec1"]),
        ).status_code
        == 403
    )
    seen = cov_client.get("/api/v1/coverage/policies/c2", headers=bearer(comm.tokens["sec1"]))
    assert seen.status_code == 404  # c2 is not in sec1's scope
    cleared = cov_client.delete("/api/v1/coverage/policies/c2", headers=admin)
    assert cleared.status_code == 200 and cleared.json()["overridden"] == []


def policy_changes(db, scope, after_seq, upto_seq, limit):
    """The pull source ``policy``, given its context as pull builds it."""
    return sync_policy.policy_changes(SourceContext(db, scope, NOW_MS), after_seq, upto_seq, limit)


def test_policy_pull_source(store, cov_settings, comm):
    store.write(coverage.publish_default, cov_settings.coverage, coverage.Actor.cli())
    first = store.read(policy_changes, ADMIN, 0, store.read(current_seq), 100)
    assert sorted(c.id for c in first) == ["c1", "c2"]
    assert all(c.op == "put" and c.data.max_households_per_member == 3 for c in first)
    cursor = store.read(current_seq)
    store.write(
        coverage.set_policy,
        cov_settings,
        coverage.Actor.cli(),
        "c2",
        coverage.PolicyOverride(max_households_per_member=8),
    )
    changes = store.read(policy_changes, ADMIN, cursor, store.read(current_seq), 100)
    assert [(c.id, c.data.max_households_per_member) for c in changes] == [("c2", 8)]
    # a member's phone gets the policy of the community holding its grid, and only that one
    m5 = store.read(resolve_scope, "m5")
    m1 = store.read(resolve_scope, "m1")
    assert [c.id for c in store.read(policy_changes, m5, 0, 10**9, 100)] == ["c2"]
    assert [c.id for c in store.read(policy_changes, m1, cursor, 10**9, 100)] == []
    cursor = store.read(current_seq)
    store.write(coverage.clear_policy, cov_settings, coverage.Actor.cli(), "c2")
    (cleared,) = store.read(policy_changes, ADMIN, cursor, 10**9, 100)
    assert cleared.data.max_households_per_member == 3
    assert store.read(coverage.policy_for, cov_settings, "c2").max_households_per_member == 3
    assert len(store.read(policy_changes, ADMIN, 0, 10**9, 1)) == 1  # limit
    # a new district default in the configuration reaches every community's phones
    cursor = store.read(current_seq)
    new_default = msgspec.structs.replace(cov_settings.coverage, cycle_days=21)
    assert store.write(coverage.publish_default, new_default, coverage.Actor.cli())
    assert not store.write(coverage.publish_default, new_default, coverage.Actor.cli())
    changed = store.read(policy_changes, ADMIN, cursor, 10**9, 100)
    assert sorted((c.id, c.data.cycle_days) for c in changed) == [("c1", 21), ("c2", 21)]


def test_policy_source_is_registered():
    from gridsync.sync.registry import SOURCES

    assert SOURCES["policy"] is sync_policy.policy_changes


# -- the assessors' sample ------------------------------------------------------------------------


def test_sample_same_seed_same_sample_other_seed_differs(store, comm):
    def ids(seed, n=5, unit=None):
        return [i.household.id for i in store.read(coverage.sample, ADMIN, unit, n, seed).items]

    assert ids("2026-Q4") == ids("2026-Q4")
    assert ids("2026-Q4") != ids("another")
    assert len(set(ids("x"))) == 5
    assert set(ids("x", n=50, unit="g2")) == {"h9", "h10", "h12"}  # n above the population
    assert "h8" not in ids("x", n=50)  # moved out


def test_sample_last_visits_and_masking(store, cov_client, comm):
    for days in (4, 6, 8):
        store.write(insert_visit, "h5", "m2", NOW_MS - days * DAY_MS, ["safety"])
    r = cov_client.get(
        "/api/v1/coverage/sample",
        params={"scope": "g1", "n": 10, "seed": "s1"},
        headers=bearer(comm.tokens["bs1"]),
    )
    assert r.status_code == 200, r.text
    items = {i["household"]["id"]: i for i in r.json()["items"]}
    assert r.json()["population"] == 7
    h5 = items["h5"]["last_visits"]
    assert len(h5) == 3 and all(not v["voided"] for v in h5)
    assert [v["at"][:10] for v in h5] == ["2026-11-19", "2026-11-16", "2026-11-14"]
    assert items["h5"]["household"]["phone"] == "137****0005"  # branch secretary: masked
    full = cov_client.get(
        "/api/v1/coverage/sample",
        params={"scope": "g1", "n": 10, "seed": "s1"},
        headers=bearer(comm.tokens["sec1"]),
    ).json()
    assert [i["household"]["id"] for i in full["items"]] == list(items)  # same seed, same draw
    assert {i["household"]["phone"] for i in full["items"]} >= {"13700000005"}
    entry = store.read(audit.entries, action="read.coverage.sample")[0]
    assert entry["detail"]["seed"] == "s1" and len(entry["detail"]["households"]) == 7


def test_cli_sample_is_reproducible(db_path, comm):
    def run(seed):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "gridsync",
                "coverage",
                "sample",
                "--scope",
                "c1",
                "--n",
                "4",
                "--seed",
                seed,
                "--json",
                "--db",
                db_path,
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        import json

        return [i["household"]["id"] for i in json.loads(out.stdout)["items"]]

    assert run("7") == run("7") != run("8")


@pytest.mark.parametrize(
    "lang, texts",
    [
        ("zh", ["户），种子 7", "同楼栋", "负荷", "条建议", "--apply"]),
        ("en", ["households, seed 7", "neighbour", "load", "suggestions", "--apply"]),
    ],
)
def test_cli_sample_and_rebalance_speak_chinese_by_default(db_path, comm, lang, texts):
    from click.testing import CliRunner

    from gridsync.cli import cli

    extra = [] if lang == "zh" else ["--lang", "en"]
    runner = CliRunner()
    sample = runner.invoke(
        cli,
        ["coverage", "sample", "--scope", "c1", "--n", "2", "--seed", "7", "--db", db_path, *extra],
    )
    plan = runner.invoke(cli, ["coverage", "rebalance", "--scope", "c1", "--db", db_path, *extra])
    assert sample.exit_code == 0 and plan.exit_code == 0, sample.output + plan.output
    out = sample.output + plan.output
    for text in texts:
        assert text in out, out

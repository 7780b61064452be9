"""A member leaves (issue 18): ``gridsync people deactivate`` and ``POST /api/v1/people/{id}/
deactivate`` mark them inactive with a reason, unassign their households through the assignment
function (logged), put those households into the rebalancing suggestions, revoke their devices
(with --drain after one last push through the reference client) and keep their history; they no
longer count as members nor receive notifications."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from gridsync import auth, coverage, lifecycle, org
from gridsync.cli import cli
from gridsync.errors import Invalid
from gridsync.sync.client import DeviceDrainedError
from tests.conftest import CLI, bearer
from tests.test_client import FlakyTransport
from tests.test_device_revoke import device_row, phone, visits_on_server


def assign(store, settings, household_id, member_id):
    from gridsync.coverage.assignments import ASSIGNER_ROLES

    admin = store.read(org.resolve_scope, "admin")
    store.write(
        coverage.assign,
        settings,
        CLI,
        frozenset(ASSIGNER_ROLES),
        admin,
        household_id,
        member_id,
    )


@pytest.fixture
def held(store, settings, tiny):
    """m1 responsible for the four households of g1; m3, a second member of g1, for none."""
    store.write(
        org.add_people,
        [org.NewPerson(id="m3", name="陈静", roles=["member"], scope=["g1"], branch_id="b1")],
        CLI,
    )
    for hid in tiny.households["g1"]:
        assign(store, settings, hid, "m1")
    return tiny.households["g1"]


def deactivate(client, tiny, person_id, who="admin", **body):
    return client.post(
        f"/api/v1/people/{person_id}/deactivate", headers=bearer(tiny.tokens[who]), json=body
    )


def responsible(store, household_id):
    return store.read(
        lambda db: db.execute(
            "SELECT responsible_member_id FROM households WHERE id = ?", [household_id]
        ).fetchone()[0]
    )


def test_the_api_deactivates_a_member_and_unassigns_their_households(client, tiny, store, held):
    m1 = phone(client, tiny)
    m1.sync()
    m1.log_visit(held[0], "door", [], "离开前的走访")
    m1.push()

    r = deactivate(client, tiny, "m1", reason="moved_away")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "deactivated" and body["reason"] == "moved_away"
    assert sorted(body["unassigned"]) == sorted(held)
    assert body["devices"] == [tiny.devices["m1"]]
    assert all(responsible(store, h) is None for h in held)

    # the assignment log names no member for each, with the reason, and the audit log has it
    log = store.read(coverage.assignment_log, None, 100)
    unassigned = [e for e in log if e["member_id"] is None]
    assert sorted(e["household_id"] for e in unassigned) == sorted(held)
    assert all(e["previous_member_id"] == "m1" and "迁出" in e["reason"] for e in unassigned)
    actions = store.read(
        lambda db: [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    )
    assert actions.count("household.unassign") == 4 and "people.deactivate" in actions

    # the person reads back inactive with the reason; their device is revoked; history stays
    person = client.get("/api/v1/people/m1", headers=bearer(tiny.tokens["admin"])).json()
    assert person["active"] is False and person["inactive_reason"] == "moved_away"
    assert person["inactive_since"]
    assert device_row(store, tiny.devices["m1"]).revoked_at is not None
    assert visits_on_server(store, "离开前的走访") == 1
    r = client.get("/api/v1/me", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code in (401, 410) and r.json()["code"] in ("device_revoked", "person_inactive")

    # the households are in the rebalancing suggestions, for the remaining member of g1
    plan = client.get("/api/v1/coverage/rebalance", headers=bearer(tiny.tokens["admin"])).json()
    suggested = {s["household_id"]: s["member_id"] for s in plan["suggestions"]}
    assert {h: suggested.get(h) for h in held} == {h: "m3" for h in held}

    # a second deactivation changes nothing
    again = deactivate(client, tiny, "m1", reason="other").json()
    assert again["status"] == "unchanged" and again["reason"] == "moved_away"


def test_an_inactive_member_is_not_counted_nor_notified(store, settings, held):
    def members(db):
        return db.execute(f"SELECT count(*) FROM people WHERE {coverage.member_sql()}").fetchone()[
            0
        ]

    before = store.read(members)
    store.write(lifecycle.deactivate, settings, "m1", "去世", CLI)
    assert store.read(members) == before - 1
    # an assignment to them is refused by the one eligibility rule
    with pytest.raises(Invalid) as info:
        assign(store, settings, held[0], "m1")
    assert info.value.code == "member_inactive"


def test_the_api_refuses_bad_reasons_non_admins_and_unknown_people(client, tiny):
    assert deactivate(client, tiny, "m1", reason="fired").status_code == 400
    assert deactivate(client, tiny, "m1").status_code == 400
    assert deactivate(client, tiny, "m1", reason="other", extra=1).status_code == 400
    r = deactivate(client, tiny, "m2", who="sec", reason="other")
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = deactivate(client, tiny, "nobody", reason="other")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = deactivate(client, tiny, "admin", reason="other")
    assert r.status_code == 409 and r.json()["code"] == "last_admin_device"


def test_cli_deactivate_with_drain_lets_the_phone_push_once(client, tiny, store, held, db_path):
    net = FlakyTransport(client)
    m1 = phone(net, tiny)
    m1.sync()
    m1.log_visit(held[1], "door", [], "最后一次走访")  # queued, not pushed

    out = CliRunner().invoke(
        cli, ["people", "deactivate", "m1", "--reason", "转出", "--drain", "--db", db_path]
    )
    assert out.exit_code == 0, out.output
    assert "4 households unassigned" in out.output and "draining" in out.output
    assert device_row(store, tiny.devices["m1"]).draining_since is not None

    with pytest.raises(DeviceDrainedError):
        m1.sync()
    assert visits_on_server(store, "最后一次走访") == 1
    assert device_row(store, tiny.devices["m1"]).revoked_at is not None
    # the visit counts for the household (history), but its responsible member stays none
    assert responsible(store, held[1]) is None

    listed = CliRunner().invoke(cli, ["people", "--json", "--db", db_path])
    people = {p["id"]: p for p in json.loads(listed.output)}
    assert people["m1"]["active"] is False and people["m1"]["inactive_reason"] == "transferred"


def test_cli_json_and_reactivate(store, tiny, db_path, held):
    out = CliRunner().invoke(
        cli, ["people", "deactivate", "m2", "--reason", "other", "--json", "--db", db_path]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["status"] == "deactivated"
    assert store.read(auth.get_device, tiny.devices["m2"]).revoked_at is not None
    out = CliRunner().invoke(cli, ["people", "reactivate", "m2", "--db", db_path])
    assert out.exit_code == 0, out.output
    assert store.read(org.get_person, "m2").active is True
    bad = CliRunner().invoke(cli, ["people", "deactivate", "m2", "--reason", "x", "--db", db_path])
    assert bad.exit_code == 2


def test_an_inactive_member_gets_no_notifications(store, settings, held):
    from gridsync.notify.routing import people_for_tag

    assert "m1" in store.read(people_for_tag, "grid:g1")
    assert store.read(people_for_tag, "member:m1") == ["m1"]
    store.write(lifecycle.deactivate, settings, "m1", "moved_away", CLI)
    assert "m1" not in store.read(people_for_tag, "grid:g1")
    assert store.read(people_for_tag, "member:m1") == []

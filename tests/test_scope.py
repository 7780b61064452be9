"""A person reads only inside their scope, on every read endpoint."""

from __future__ import annotations

import pytest

from gridsync import org
from tests.conftest import bearer

G1 = {f"hh-g1-{i}" for i in range(1, 5)}
G2 = {f"hh-g2-{i}" for i in range(1, 5)}


def _ids(client, path, token, **params):
    r = client.get(path, headers=bearer(token), params=params)
    assert r.status_code == 200, r.text
    return {item["id"] for item in r.json()["items"]}


@pytest.mark.parametrize(
    "who, expected",
    [
        ("m1", G1),
        ("m2", G2),
        ("sec", G1 | G2),
        ("admin", G1 | G2),
        ("resp", set()),
    ],
)
def test_household_list_is_scoped(client, tiny, who, expected):
    assert _ids(client, "/api/v1/households", tiny.tokens[who]) == expected


def test_member_cannot_read_another_grids_households(client, tiny):
    token = tiny.tokens["m1"]
    r = client.get("/api/v1/households", headers=bearer(token), params={"grid_id": "g2"})
    assert r.status_code == 403 and r.json()["code"] == "out_of_scope"
    for hid in G2:
        r = client.get(f"/api/v1/households/{hid}", headers=bearer(token))
        assert r.status_code == 404 and r.json()["code"] == "not_found"
        r = client.get(f"/api/v1/households/{hid}/visits", headers=bearer(token))
        assert r.status_code == 404
    # filters cannot widen the scope
    assert _ids(client, "/api/v1/households", token, tag="elderly_alone") == {"hh-g1-1"}
    assert _ids(client, "/api/v1/households", token, status="active") == G1
    # and the own grid reads fine
    r = client.get("/api/v1/households/hh-g1-2", headers=bearer(token))
    assert r.status_code == 200 and r.json()["grid_id"] == "g1"
    assert set(r.json()) == {
        "id",
        "grid_id",
        "building",
        "unit",
        "room",
        "head_name",
        "phone",
        "size",
        "tags",
        "notes",
        "responsible_member_id",
        "status",
    }


def test_org_units_are_scoped(client, tiny):
    assert _ids(client, "/api/v1/org-units", tiny.tokens["m1"]) == {"g1"}
    assert _ids(client, "/api/v1/org-units", tiny.tokens["sec"]) == {"c1", "g1", "g2", "b1", "b2"}
    assert "dept1" in _ids(client, "/api/v1/org-units", tiny.tokens["admin"])
    r = client.get("/api/v1/org-units/g2", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 404
    r = client.get("/api/v1/org-units/g1", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 200 and r.json()["name"] == "第一网格"


def test_people_are_scoped(client, tiny):
    assert _ids(client, "/api/v1/people", tiny.tokens["m1"]) == {"m1"}
    assert _ids(client, "/api/v1/people", tiny.tokens["sec"]) == {"sec", "m1", "m2"}
    assert _ids(client, "/api/v1/people", tiny.tokens["admin"]) == {
        "admin",
        "sec",
        "m1",
        "m2",
        "resp",
    }
    assert _ids(client, "/api/v1/people", tiny.tokens["sec"], role="member") == {"m1", "m2"}
    r = client.get("/api/v1/people/m2", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 404
    r = client.get("/api/v1/people/m2", headers=bearer(tiny.tokens["sec"]))
    assert r.status_code == 200 and r.json()["branch_id"] == "b2"


def test_visits_are_scoped(client, tiny, store):
    def add_visit(db):
        db.execute(
            "INSERT INTO visits (id, household_id, grid_id, member_id, device_id, at, at_ms,"
            " channel, kinds, seq, received_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            [
                "v1",
                "hh-g2-1",
                "g2",
                "m2",
                "dev-m2",
                "2026-11-20T09:30:00+08:00",
                1763602200000,
                "door",
                '["policy"]',
                999,
                "2026-11-20T01:30:00+00:00",
            ],
        )

    store.write(add_visit)
    r = client.get("/api/v1/households/hh-g2-1/visits", headers=bearer(tiny.tokens["m2"]))
    assert r.status_code == 200 and [v["id"] for v in r.json()["items"]] == ["v1"]
    assert r.json()["items"][0]["kinds"] == ["policy"]
    r = client.get("/api/v1/households/hh-g2-1/visits", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 404


def test_scope_follows_reassignment(client, tiny, store):
    from gridsync.audit import Actor

    store.write(org.set_scope, "m1", ["g2"], Actor.cli())
    assert _ids(client, "/api/v1/households", tiny.tokens["m1"]) == G2
    me = client.get("/api/v1/me", headers=bearer(tiny.tokens["m1"])).json()
    assert me["grid_ids"] == ["g2"]


def test_bulk_reads_are_audited(client, tiny, store):
    client.get("/api/v1/households", headers=bearer(tiny.tokens["sec"]))
    from gridsync import audit

    entries = store.read(audit.entries, action="read.households")
    assert entries and entries[0]["person_id"] == "sec"
    assert entries[0]["device_id"] == tiny.devices["sec"]
    assert entries[0]["detail"]["count"] == 8


def test_me_carries_the_policy_of_the_persons_community(client, tiny, store):
    from gridsync import coverage
    from gridsync.audit import Actor
    from gridsync.config import Settings

    store.write(
        coverage.set_policy,
        Settings(),
        Actor.cli(),
        "c1",
        coverage.PolicyOverride(cycle_days=14, priority_cycle_days=5),
    )
    me = client.get("/api/v1/me", headers=bearer(tiny.tokens["m1"])).json()
    assert (me["policy"]["cycle_days"], me["policy"]["priority_cycle_days"]) == (14, 5)
    assert (
        client.get("/api/v1/me", headers=bearer(tiny.tokens["sec"])).json()["policy"]["cycle_days"]
        == 14
    )
    assert (
        client.get("/api/v1/me", headers=bearer(tiny.tokens["admin"])).json()["policy"][
            "cycle_days"
        ]
        == 30
    )

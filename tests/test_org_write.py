"""Admin API writes of org units, people and scopes: what `gridsync units add` / `people add` do
on the CLI, for an admin UI; everyone else is refused."""

from __future__ import annotations

from tests.conftest import bearer
from tests.sync_helpers import Phone


def admin(tiny) -> dict[str, str]:
    return bearer(tiny.tokens["admin"])


def test_an_admin_creates_and_renames_org_units(client, tiny, store):
    r = client.put(
        "/api/v1/org-units/c2",
        headers=admin(tiny),
        json={"kind": "community", "name": "新村社区", "parent_id": "s1"},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "c2",
        "kind": "community",
        "name": "新村社区",
        "parent_id": "s1",
        "grid_id": None,
    }
    grid = client.put(
        "/api/v1/org-units/c2-g1",
        headers=admin(tiny),
        json={"kind": "grid", "name": "第一网格", "parent_id": "c2"},
    )
    assert grid.status_code == 200, grid.text
    renamed = client.put(
        "/api/v1/org-units/c2-g1",
        headers=admin(tiny),
        json={"kind": "grid", "name": "东区网格", "parent_id": "c2"},
    )
    assert renamed.json()["name"] == "东区网格"
    assert client.get("/api/v1/org-units/c2-g1", headers=admin(tiny)).json()["name"] == "东区网格"
    actions = store.read(
        lambda db: [
            r[0]
            for r in db.execute(
                "SELECT action FROM audit_log WHERE device_id = ? ORDER BY id",
                [tiny.devices["admin"]],
            )
        ]
    )
    assert actions.count("org_units.upsert") == 3


def test_org_unit_writes_are_checked(client, tiny):
    cases = [
        ({"kind": "grid", "name": "x", "parent_id": "nowhere"}, 400, "parent_id"),
        ({"kind": "grid", "name": "x", "parent_id": "s1"}, 400, "parent_id"),  # not a community
        ({"kind": "grid", "name": "x"}, 400, "parent_id"),
        ({"kind": "grid", "name": "", "parent_id": "c1"}, 400, None),
        ({"kind": "hamlet", "name": "x", "parent_id": "c1"}, 400, None),
        ({"kind": "grid", "name": "x", "parent_id": "c1", "colour": "red"}, 400, None),
    ]
    for body, status, field in cases:
        r = client.put("/api/v1/org-units/g9", headers=admin(tiny), json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["code"] and r.json()["message"]
        if field:
            assert r.json().get("field") == field, (body, r.json())
    kind = client.put(
        "/api/v1/org-units/g1",
        headers=admin(tiny),
        json={"kind": "branch", "name": "x", "parent_id": "c1", "grid_id": "g2"},
    )
    assert kind.status_code == 409 and kind.json()["code"] == "kind_change"
    bad_id = client.put(
        "/api/v1/org-units/a b",
        headers=admin(tiny),
        json={"kind": "grid", "name": "x", "parent_id": "c1"},
    )
    assert bad_id.status_code == 400
    for person in ("sec", "m1"):
        r = client.put(
            "/api/v1/org-units/g9",
            headers=bearer(tiny.tokens[person]),
            json={"kind": "grid", "name": "x", "parent_id": "c1"},
        )
        assert r.status_code == 403 and r.json()["code"] == "forbidden"


def test_an_admin_adds_a_person_and_changes_their_scope(client, tiny, store):
    body = {
        "name": "赵敏",
        "roles": ["member"],
        "scope": ["g1"],
        "branch_id": "b1",
        "phone": "13900001111",
    }
    r = client.put("/api/v1/people/m3", headers=admin(tiny), json=body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": "m3",
        "name": "赵敏",
        "roles": ["member"],
        "scope": ["g1"],
        "branch_id": "b1",
        "active": True,
    }
    enrolled = client.post("/api/v1/devices", headers=admin(tiny), json={"person_id": "m3"}).json()
    m3 = Phone(client, enrolled["token"], enrolled["device_id"])
    first = {c["id"] for c in m3.pull_all() if c["type"] == "household"}
    assert first == set(tiny.households["g1"])
    moved = client.put("/api/v1/people/m3/scope", headers=admin(tiny), json={"units": ["g2"]})
    assert moved.status_code == 200 and moved.json()["scope"] == ["g2"]
    changes = m3.pull_all()  # the phone follows: removes for g1, puts for g2
    assert {c["id"] for c in changes if c["op"] == "remove"} == set(tiny.households["g1"])
    assert {c["id"] for c in changes if c["type"] == "household" and c["op"] == "put"} == set(
        tiny.households["g2"]
    )
    actions = store.read(
        lambda db: [
            r[0]
            for r in db.execute(
                "SELECT action FROM audit_log WHERE device_id = ? ORDER BY id",
                [tiny.devices["admin"]],
            )
        ]
    )
    assert "people.upsert" in actions and "people.set_scope" in actions


def test_person_writes_are_checked(client, tiny):
    base = {"name": "赵敏", "roles": ["member"]}
    for body, field in [
        ({**base, "roles": []}, None),
        ({**base, "roles": ["king"]}, None),
        ({**base, "branch_id": "g1"}, "branch_id"),
        ({**base, "scope": ["nowhere"]}, "scope"),
        ({**base, "locale": "fr"}, None),
    ]:
        r = client.put("/api/v1/people/m3", headers=admin(tiny), json=body)
        assert r.status_code == 400, (body, r.text)
        if field:
            assert r.json()["field"] == field
    assert (
        client.put(
            "/api/v1/people/nobody/scope", headers=admin(tiny), json={"units": ["g1"]}
        ).status_code
        == 404
    )
    unknown = client.put(
        "/api/v1/people/m1/scope", headers=admin(tiny), json={"units": ["nowhere"]}
    )  # a bad body, as in PUT /people/{id}
    assert unknown.status_code == 400 and unknown.json()["field"] == "scope"
    r = client.put(
        "/api/v1/people/m1/scope", headers=bearer(tiny.tokens["sec"]), json={"units": ["g2"]}
    )
    assert r.status_code == 403
    assert client.get("/api/v1/people/m3", headers=admin(tiny)).status_code == 404

"""Admin API writes of org units, people and scopes: what `gridsync units add` / `people add` do
on the CLI, for an admin UI; everyone else is refused."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gridsync import auth, org
from gridsync.cli import cli
from gridsync.db import Store
from gridsync.errors import Invalid
from gridsync.models import OrgUnit
from tests.conftest import CLI, bearer
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
        "inactive_reason": None,
        "inactive_since": None,
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


# -- issue 12's review: a repeated unit, ids REST cannot address, control characters ----------


def test_a_unit_named_twice_in_a_scope_counts_once(client, tiny, store, db_path):
    """A scope is a set: a repeated unit is dropped (order kept), on every surface; it was an
    IntegrityError of person_scope's key, a 500 (REST) or a traceback (CLI)."""
    body = {"name": "新党员", "roles": ["member"], "scope": ["g1", "g2", "g1"], "branch_id": "b1"}
    r = client.put("/api/v1/people/p9", headers=admin(tiny), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == ["g1", "g2"]
    r = client.put("/api/v1/people/m1/scope", headers=admin(tiny), json={"units": ["g2", "g2"]})
    assert r.status_code == 200 and r.json()["scope"] == ["g2"], r.text
    rows = store.read(
        lambda db: db.execute(
            "SELECT person_id, unit_id FROM person_scope WHERE person_id IN ('p9', 'm1') "
            "ORDER BY 1, 2"
        ).fetchall()
    )
    assert rows == [("m1", "g2"), ("p9", "g1"), ("p9", "g2")]
    store.close()
    args = ["people", "add", "--db", db_path, "p10", "--name", "党员", "--role", "member"]
    done = CliRunner().invoke(cli, [*args, "--scope", "g1", "--scope", "g1"])
    assert done.exit_code == 0, done.output
    with Store(db_path) as again:
        assert again.read(org.get_person, "p10").scope == ["g1"]


BAD_IDS = ["张伟 的手机", "a b", "a\n", "", "x" * 65, "a/b"]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_the_cli_refuses_ids_the_api_could_not_address(store, tiny, db_path, bad):
    """Ids are checked inside the domain functions (auth.enroll, org.add_units,
    org.add_people) against models.Id, so the CLI meets the API's rule: a device id with a
    space could never push (its HLCs fail the pattern), a unit id with a slash no URL names."""
    store.close()
    people_add = ["people", "add", "--db", db_path]
    runs = {
        "device": ["device", "enroll", "--db", db_path, "--person", "m1", "--device-id", bad],
        "unit": [
            "units",
            "add",
            "--db",
            db_path,
            bad,
            "--kind",
            "grid",
            "--name",
            "x",
            "--parent=c1",
        ],
        "person": [*people_add, bad, "--name", "x", "--role", "member"],
        "scope": [*people_add, "p9", "--name", "x", "--role", "member", "--scope", bad],
    }
    for what, args in runs.items():
        done = CliRunner().invoke(cli, args)
        assert done.exit_code == 1, (what, done.output)
        assert isinstance(done.exception, SystemExit), (what, repr(done.exception))
        assert "validation_error" in done.stderr and "is refused" in done.stderr, done.stderr
    with Store(db_path) as again:
        assert again.read(
            lambda db: db.execute(
                "SELECT (SELECT count(*) FROM devices), (SELECT count(*) FROM org_units), "
                "(SELECT count(*) FROM people)"
            ).fetchone()
        ) == (5, 8, 5)  # tiny's: nothing was added


def test_domain_functions_refuse_bad_ids_whoever_calls(store, tiny):
    with pytest.raises(Invalid) as exc:
        store.write(auth.enroll, "m1", CLI, device_id="张伟 的手机")
    assert exc.value.extra["field"] == "device_id"
    with pytest.raises(Invalid):
        store.write(org.add_units, [OrgUnit(id="g 3", kind="grid", name="x", parent_id="c1")])
    with pytest.raises(Invalid):
        store.write(org.add_people, [org.NewPerson(id="p 9", name="x", roles=["member"])], CLI)


CONTROL = ["a\x07b", "张\x1b[31m伟", "a\nb", "a\tb", "a\x7fb", "a\x85b", "a\r"]


@pytest.mark.parametrize("text", CONTROL)
def test_names_and_phones_with_control_characters_are_refused(client, tiny, store, text):
    """One text rule (models.core SHORT_TEXT_PATTERN): a name, a unit name, a phone, a channel
    URL, a device label is one line of visible text, over REST as through the CLI."""
    puts = [
        ("/api/v1/people/p9", {"name": text, "roles": ["member"]}),
        ("/api/v1/people/p9", {"name": "x", "roles": ["member"], "phone": f"138{text}"}),
        ("/api/v1/people/p9", {"name": "x", "roles": ["member"], "channels": [f"json://{text}"]}),
        ("/api/v1/org-units/g9", {"kind": "grid", "name": text, "parent_id": "c1"}),
    ]
    for path, body in puts:
        r = client.put(path, headers=admin(tiny), json=body)
        assert r.status_code == 400, (path, body, r.text)
        assert r.json()["code"] == "validation_error"
    r = client.post("/api/v1/devices", headers=admin(tiny), json={"person_id": "m1", "label": text})
    assert r.status_code == 400, r.text
    with pytest.raises(Invalid, match="control character"):
        store.write(org.add_people, [org.NewPerson(id="p9", name=text, roles=["member"])], CLI)
    with pytest.raises(Invalid, match="control character"):
        store.write(org.add_units, [OrgUnit(id="g9", kind="grid", name=text, parent_id="c1")])
    with pytest.raises(Invalid, match="control character"):
        store.write(auth.enroll, "m1", CLI, label=text)


def test_visible_text_passes_the_text_rule(client, tiny):
    for name in ["张伟", "O'Brien-Smith (老张)", "第 1 网格 · 东区", "🙂"]:
        r = client.put(
            "/api/v1/people/p9", headers=admin(tiny), json={"name": name, "roles": ["member"]}
        )
        assert r.status_code == 200, r.text
    r = client.post(
        "/api/v1/devices/dev-m1/revoke",
        headers=admin(tiny),
        json={"reason": "换手机\n旧手机交回社区"},  # a reason is a long text: lines are fine
    )
    assert r.status_code == 200, r.text

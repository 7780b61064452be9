"""Party-building instructors (党建指导员, issue 18): the ``instructor`` role, scoped to
communities; they sync, visit (group visits too) and raise cases like a member through the
reference client and the real push endpoint, are never a household's responsible member, and
have their own figures in ``gridsync report instructors`` (JSON, table, XLSX read back) and
``GET /api/v1/reports/instructors``."""

from __future__ import annotations

import json

import openpyxl
import pytest
from click.testing import CliRunner

from gridsync import auth, org
from gridsync.cli import cli
from tests.conftest import CLI, bearer
from tests.test_group_visits import phone


def put_person(client, tiny, person_id, **body):
    return client.put(
        f"/api/v1/people/{person_id}", headers=bearer(tiny.tokens["admin"]), json=body
    )


@pytest.fixture
def instructor(client, tiny, store):
    r = put_person(client, tiny, "ins1", name="刘指导", roles=["instructor"], scope=["c1"])
    assert r.status_code == 200, r.text
    enrolled = store.write(auth.enroll, "ins1", CLI, device_id="dev-ins1")
    tiny.tokens["ins1"] = enrolled.token
    tiny.devices["ins1"] = enrolled.device_id
    return "ins1"


def test_an_instructor_is_scoped_to_communities_and_never_a_member(client, tiny):
    r = put_person(client, tiny, "ins2", name="王指导", roles=["instructor"], scope=["g1"])
    assert r.status_code == 400 and r.json()["code"] == "instructor_scope"
    r = put_person(client, tiny, "ins2", name="王指导", roles=["instructor"])
    assert r.status_code == 400 and r.json()["code"] == "instructor_scope"
    r = put_person(
        client, tiny, "ins2", name="王指导", roles=["instructor", "member"], scope=["c1"]
    )
    assert r.status_code == 400 and r.json()["code"] == "instructor_member"


def test_an_instructor_is_never_a_households_responsible_member(client, tiny, instructor):
    r = client.post(
        "/api/v1/coverage/assignments",
        headers=bearer(tiny.tokens["admin"]),
        json={"household_id": "hh-g1-1", "member_id": instructor},
    )
    assert r.status_code == 400 and r.json()["code"] == "instructor_not_responsible"


def test_the_people_import_maps_the_chinese_role(tmp_path, db_path, store, tiny):
    file = tmp_path / "people.csv"
    file.write_text("编号,姓名,角色,范围\nins9,赵指导,党建指导员,c1\n", encoding="utf-8")
    out = CliRunner().invoke(cli, ["import", "people", str(file), "--db", db_path])
    assert out.exit_code == 0, out.output
    assert store.read(org.get_person, "ins9").roles == ["instructor"]


def test_instructor_figures_from_real_pushes(client, tiny, store, instructor, db_path, tmp_path):
    ins = phone(client, tiny, instructor)
    ins.sync()
    # their scope is community c1: both grids' households reach their phone
    assert ins.household("hh-g1-1") is not None and ins.household("hh-g2-1") is not None
    ins.log_group_visit(["hh-g1-1", "hh-g1-2", "hh-g2-1"], "door", [], "楼栋会")
    ins.log_visit("hh-g1-2", "door", [], "回访")
    ins.log_visit("hh-g1-3", "phone", [], "电话")
    ins.enqueue("whistle.raise", "case-ins-1", data={"category": "漏水", "grid_id": "g1"})
    ins.enqueue("whistle.raise", "case-ins-2", data={"category": "噪音", "grid_id": "g2"})
    ins.sync()
    assert ins.rejected() == [], ins.rejected()
    # the community secretary takes case 1 through to resolved
    sec = phone(client, tiny, "sec")
    sec.sync()
    sec.enqueue("whistle.act", "case-ins-1", data={"action": "accept"})
    sec.enqueue("whistle.act", "case-ins-1", data={"action": "resolve", "note": "已修好"})
    sec.sync()
    assert sec.rejected() == [], sec.rejected()

    expected = {
        "person_id": "ins1",
        "name": "刘指导",
        "communities": ["c1"],
        "communities_covered": 1,
        "households_visited": 4,  # hh-g1-1, hh-g1-2, hh-g2-1 (group), hh-g1-3
        "visits": 3,
        "group_visits": 1,
        "cases_raised": 2,
        "cases_resolved": 1,
    }
    r = client.get("/api/v1/reports/instructors", headers=bearer(tiny.tokens["admin"]))
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [expected]
    # a member may not read it; the secretary of c1 may
    assert (
        client.get("/api/v1/reports/instructors", headers=bearer(tiny.tokens["m1"])).status_code
        == 403
    )
    r = client.get("/api/v1/reports/instructors", headers=bearer(tiny.tokens["sec"]))
    assert r.json()["rows"] == [expected]

    runner = CliRunner()
    out = runner.invoke(cli, ["report", "instructors", "--json", "--db", db_path])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["rows"] == [expected]
    xlsx = tmp_path / "instructors.xlsx"
    out = runner.invoke(cli, ["report", "instructors", "-o", str(xlsx), "--db", db_path])
    assert out.exit_code == 0, out.output
    assert "刘指导" in out.stdout
    ws = openpyxl.load_workbook(xlsx)["党建指导员"]
    header, row = [list(x) for x in ws.iter_rows(values_only=True)]
    assert header[:5] == ["人员编号", "姓名", "联系社区", "已走访社区数", "走访户数"]
    assert row == ["ins1", "刘指导", "c1", 1, 4, 3, 1, 2, 1]

    # an inactive instructor leaves the report; their records stay
    out = runner.invoke(cli, ["people", "deactivate", "ins1", "--reason", "转出", "--db", db_path])
    assert out.exit_code == 0, out.output
    r = client.get("/api/v1/reports/instructors", headers=bearer(tiny.tokens["admin"]))
    assert r.json()["rows"] == []


def test_the_household_import_refuses_an_instructor_as_responsible(tmp_path, db_path, instructor):
    file = tmp_path / "households.csv"
    file.write_text("外部编号,网格,户主姓名,负责党员\nx1,g1,陈,ins1\n", encoding="utf-8")
    out = CliRunner().invoke(
        cli, ["import", "households", str(file), "--dry-run", "--json", "--db", db_path]
    )
    errors = json.loads(out.stdout)["errors"]
    assert [(e["row"], e["code"]) for e in errors] == [(2, "instructor_not_responsible")]

"""Every record out (issue 18): exports of visits, cases with their timelines, the assignment
log, the conflict log and the audit log, read back from real files (openpyxl for XLSX); the
audit log read by the CLI and the API; ``households list``, ``cases raise`` and the priority
tag check. Over the hand-built community of ``tests/coverage_community.py``."""

from __future__ import annotations

import csv
import io
import json

import openpyxl
import pytest
from click.testing import CliRunner

from gridsync.cli import cli
from tests.conftest import bearer
from tests.coverage_community import NOW_MS, VISITS


def export(client, token, kind, fmt="xlsx", **params):
    return client.get(
        f"/api/v1/exports/{kind}", params={"format": fmt, **params}, headers=bearer(token)
    )


def sheet_dicts(ws) -> list[dict]:
    rows = list(ws.iter_rows(values_only=True))
    return [dict(zip(rows[0], row)) for row in rows[1:]]


def run(db_path, *args):
    return CliRunner().invoke(cli, [*args, "--db", db_path])


def test_visits_xlsx_chinese_headers_scope_and_masking(cov_client, comm):
    r = export(cov_client, comm.tokens["admin"], "visits")
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == 'attachment; filename="visits-all-20261120.xlsx"'
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["走访记录"]
    rows = sheet_dicts(wb["走访记录"])
    assert len(rows) == len(VISITS)
    assert list(rows[0])[:6] == ["编号", "走访时间", "网格", "住户编号", "地址", "户主姓名"]
    h1 = next(r for r in rows if r["住户编号"] == "h1")
    assert h1["联系电话"] == "13700000001"  # an admin reads every number
    assert (h1["走访人"], h1["方式"], h1["服务类别"], h1["是否负责党员"]) == (
        "张伟",
        "上门",
        "政策宣传、安全隐患排查",
        "是",
    )
    assert h1["地址"] == "1号楼1单元101"
    assert sum(1 for r in rows if r["已作废"] == "是") == 1
    by_m2 = next(r for r in rows if r["住户编号"] == "h7")
    assert by_m2["是否负责党员"] == "否"
    # a branch secretary of b1 (grid g1) reads g1's visits only, numbers masked
    r = export(cov_client, comm.tokens["bs1"], "visits", lang="en")
    rows = sheet_dicts(openpyxl.load_workbook(io.BytesIO(r.content))["visits"])
    assert {r["grid"] for r in rows} == {"g1"}
    assert all(r["phone"].startswith("137****") for r in rows)
    assert rows[0]["channel"] == "door"
    # a scope narrows; one outside the reader's scope is not found
    r = export(cov_client, comm.tokens["sec1"], "visits", fmt="json", scope="g2")
    doc = r.json()
    assert {v["grid_id"] for v in doc["visits"]} == {"g2"} and doc["kind"] == "visits"
    # the community's secretary reads them in full; oldest visit first
    assert [v["phone"] for v in doc["visits"]] == ["13700000010", "13700000009"]
    assert export(cov_client, comm.tokens["sec1"], "visits", scope="g3").status_code == 404
    assert export(cov_client, comm.tokens["m1"], "visits").status_code == 403


def test_visits_csv_and_time_bounds(cov_client, comm):
    since = "2026-11-15T00:00:00+00:00"
    r = export(cov_client, comm.tokens["admin"], "visits", fmt="csv", since=since)
    assert r.status_code == 200
    assert r.content.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][:3] == ["编号", "走访时间", "网格"]
    assert len(rows) - 1 == sum(1 for *_, days, _k, _v in VISITS if days <= 5)
    assert all(row[1] >= "2026-11-15" for row in rows[1:])


def test_cases_export_carries_the_timeline(db_path, store, cov_client, comm):
    made = run(
        db_path,
        "cases",
        "raise",
        "--by",
        "m1",
        "--category",
        "环境卫生",
        "--household",
        "h1",
        "--description",
        "=HYPERLINK(1)",
        "--json",
    )
    assert made.exit_code == 0, made.output
    case = json.loads(made.output)
    assert (case["raised_by"], case["grid_id"], case["state"]) == ("m1", "g1", "raised")
    r = cov_client.post(
        f"/api/v1/whistle/cases/{case['id']}/actions",
        json={"action": "accept", "note": "马上到"},
        headers=bearer(comm.tokens["m2"]),
    )
    assert r.status_code in (200, 201), r.text
    r = export(cov_client, comm.tokens["sec1"], "cases")
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    assert wb.sheetnames == ["吹哨案件", "案件处置记录"]
    (row,) = sheet_dicts(wb["吹哨案件"])
    assert (row["编号"], row["状态"], row["当前层级"], row["户主姓名"]) == (
        case["id"],
        "已受理",
        "网格",
        "户主h1",
    )
    assert row["联系电话"] == "13700000001" and row["处置记录条数"] == 2
    assert row["描述"] == "=HYPERLINK(1)"  # kept as text, never a formula
    events = sheet_dicts(wb["案件处置记录"])
    assert [(e["序号"], e["动作"], e["操作人"]) for e in events] == [
        (1, "上报", "m1"),
        (2, "受理", "m2"),
    ]
    csv_body = export(cov_client, comm.tokens["admin"], "cases", fmt="csv").content
    rows = list(csv.reader(io.StringIO(csv_body.decode("utf-8-sig"))))
    assert rows[1][rows[0].index("描述")] == "'=HYPERLINK(1)"
    doc = export(cov_client, comm.tokens["admin"], "cases", fmt="json").json()
    assert [e["action"] for e in doc["cases"][0]["history"]] == ["raise", "accept"]
    # a member of another community's grid sees none of it
    other = export(cov_client, comm.tokens["street1"], "cases", fmt="json", scope="c2").json()
    assert other["cases"] == []
    # the CLI raises as the person would: outside their scope is refused
    refused = run(db_path, "cases", "raise", "--by", "m1", "--category", "x", "--grid", "g3")
    assert refused.exit_code == 1 and "out_of_scope" in refused.output


def test_assignment_and_conflict_logs(db_path, store, cov_settings, cov_client, comm):
    r = cov_client.post(
        "/api/v1/coverage/assignments",
        json={"household_id": "h6", "member_id": "m2", "reason": "就近"},
        headers=bearer(comm.tokens["sec1"]),
    )
    assert r.status_code == 200, r.text

    def conflict(db):
        db.execute(
            "INSERT INTO sync_conflicts (household_id, grid_id, field, value, winner, lost_hlc, "
            "lost_person_id, created_ms) VALUES ('h1', 'g1', 'phone', '\"13912345678\"', "
            "'\"13700000001\"', 'x', 'm2', ?)",
            [NOW_MS],
        )

    store.write(conflict)
    wb = openpyxl.load_workbook(
        io.BytesIO(export(cov_client, comm.tokens["sec1"], "assignments").content)
    )
    (row,) = sheet_dicts(wb["联系户分配日志"])
    assert (row["住户编号"], row["负责党员"], row["操作人"], row["原因"], row["超出上限"]) == (
        "h6",
        "m2",
        "sec1",
        "就近",
        "否",
    )
    assert export(cov_client, comm.tokens["admin"], "assignments", scope="c2").content
    none = export(cov_client, comm.tokens["admin"], "assignments", fmt="json", scope="c2").json()
    assert none["assignments"] == []
    full = export(cov_client, comm.tokens["sec1"], "conflicts", fmt="json").json()
    assert full["conflicts"][0]["value"] == "13912345678"
    masked = export(cov_client, comm.tokens["bs1"], "conflicts").content
    (row,) = sheet_dicts(openpyxl.load_workbook(io.BytesIO(masked))["同步冲突记录"])
    assert (row["字段"], row["未采用的值"], row["采用的值"]) == (
        "phone",
        "139****5678",
        "137****0001",
    )


def test_audit_log_export_cli_and_api(db_path, store, cov_client, comm, tmp_path):
    assert export(cov_client, comm.tokens["admin"], "visits", fmt="json").status_code == 200
    assert export(cov_client, comm.tokens["sec1"], "audit").status_code == 403
    r = export(cov_client, comm.tokens["admin"], "audit")
    rows = sheet_dicts(openpyxl.load_workbook(io.BytesIO(r.content))["审计日志"])
    assert any(r["动作"] == "export.visits" and r["人员"] == "admin" for r in rows)
    # the API: admins only, paged with bounds, filtered by person and action (and below it)
    admin = bearer(comm.tokens["admin"])
    page = cov_client.get(
        "/api/v1/audit", params={"action": "export", "person": "admin"}, headers=admin
    )
    assert page.status_code == 200, page.text
    actions = [e["action"] for e in page.json()["items"]]
    assert actions and set(actions) <= {"export.visits", "export.audit"}
    assert "export.audit" in actions
    assert cov_client.get("/api/v1/audit", headers=bearer(comm.tokens["sec1"])).status_code == 403
    assert cov_client.get("/api/v1/audit?limit=501", headers=admin).status_code == 400
    one = cov_client.get("/api/v1/audit", params={"limit": 1, "offset": 1}, headers=admin).json()
    assert len(one["items"]) == 1 and one["total"] > 2
    # the CLI: the same log, where every read of it is (the refused ones are not)
    out = run(db_path, "audit", "--action", "read.audit", "--json")
    assert out.exit_code == 0, out.output
    assert [e["person_id"] for e in json.loads(out.output)["items"]] == ["admin"] * 2
    out = run(db_path, "audit", "--action", "read.audit", "--json")
    assert next(e["device_id"] for e in json.loads(out.output)["items"]) == "cli"
    out = run(db_path, "audit", "--person", "sec1", "--since", "2020-01-01")
    assert out.exit_code == 0 and "coverage.assign" not in out.output
    # the CLI exports: a file with a progress bar on stderr, audited as the cli
    target = tmp_path / "audit.xlsx"
    result = run(db_path, "export", "audit", "--format", "xlsx", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert openpyxl.load_workbook(target).sheetnames == ["审计日志"]
    result = run(
        db_path,
        "export",
        "visits",
        "--format",
        "csv",
        "-o",
        str(tmp_path / "v.csv"),
        "--scope",
        "g3",
        "--lang",
        "en",
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "v.csv").read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("id,visited at,grid")
    assert "137****0013" in text and "13700000013" not in text  # masked without --show-phones
    last = run(db_path, "audit", "--action", "export.visits", "--limit", "1", "--json")
    entry = json.loads(last.output)["items"][0]
    assert (entry["device_id"], entry["target"], entry["detail"]["phones"]) == ("cli", "g3", "none")


def test_households_list_search_scope_and_masking(db_path, comm):
    out = run(db_path, "households", "list", "--scope", "g2", "--json")
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert {h["id"] for h in doc["items"]} == {"h9", "h10", "h12"} and doc["total"] == 3
    assert all("****" in h["phone"] for h in doc["items"])
    out = run(db_path, "households", "list", "--q", "户主h1", "--json")
    assert {h["id"] for h in json.loads(out.output)["items"]} == {"h1", "h10", "h12", "h13", "h14"}
    out = run(db_path, "households", "list", "--q", "2号楼1单元102", "--show-phones")
    assert "h6\tg1\t2号楼1单元102\t户主h6\t13700000006" in out.output
    assert "h12" in out.output and "2 of 2 households" in out.output
    out = run(db_path, "households", "list", "--q", "%")
    assert "0 of 0 households" in out.output  # a wildcard is a character, not a pattern
    assert run(db_path, "households", "list", "--scope", "nowhere").exit_code == 1


@pytest.mark.parametrize(
    ("tags", "ok"),
    [(["elderly_alone"], True), (["renter"], True), (["elderly_alon"], False)],
)
def test_policy_refuses_a_tag_the_district_does_not_define(db_path, comm, tags, ok):
    args = ["coverage", "policy", "set", "c1"]
    for tag in tags:
        args += ["--priority-tag", tag]
    result = run(db_path, *args)
    assert (result.exit_code == 0) is ok, result.output
    if not ok:
        assert "unknown_tag" in result.output and "elderly_alon" in result.output


def test_a_tag_some_household_carries_is_defined(store, cov_settings, cov_client, comm):
    def tag(db):
        db.execute("UPDATE households SET tags = '[\"失独\"]' WHERE id = 'h3'")

    store.write(tag)
    admin = bearer(comm.tokens["admin"])
    r = cov_client.put(
        "/api/v1/coverage/policies/c1", json={"priority_tags": ["失独"]}, headers=admin
    )
    assert r.status_code == 200, r.text
    r = cov_client.put(
        "/api/v1/coverage/policies/c1", json={"priority_tags": ["孤寡"]}, headers=admin
    )
    assert r.status_code == 400 and r.json()["code"] == "unknown_tag"
    assert r.json()["field"] == "priority_tags"


def test_an_export_beyond_the_bound_is_refused_and_narrowing_it_passes(
    cov_client, comm, monkeypatch
):
    from gridsync import record_exports

    monkeypatch.setattr(record_exports, "MAX_ROWS", 3)  # the bound, at a size a test can reach
    r = export(cov_client, comm.tokens["admin"], "visits")
    assert r.status_code == 400 and r.json()["code"] == "export_too_large"
    r = export(cov_client, comm.tokens["admin"], "visits", fmt="json", scope="g2")
    assert r.status_code == 200 and len(r.json()["visits"]) == 2

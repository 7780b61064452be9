"""The console's 覆盖, 抽检, 人员与设备, 审计 and 通知 pages over the real app (Litestar's test
client, a real SQLite file): each answers as the REST API answers (scope, roles, refusal
codes), its forms need the CSRF token, and what it writes the API reads back."""

from __future__ import annotations

import io
import re

import openpyxl
import pytest
from litestar.testing import TestClient

from gridsync.app import create_app
from gridsync.audit import entries
from gridsync.clock import FixedClock
from gridsync.config import Settings
from tests.conftest import bearer
from tests.test_console import csrf_of, sign_in

NOW = 1_796_000_000_000  # 2026-11-29


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(NOW)


@pytest.fixture
def app_settings(db_path) -> Settings:
    return Settings(db=db_path, base_url="https://grid.example.cn")


@pytest.fixture
def web(store, tiny, app_settings, clock):
    with TestClient(app=create_app(app_settings, store=store, clock=clock)) as c:
        yield c


# -- 覆盖 ---------------------------------------------------------------------------------------


def test_coverage_page_drills_down_and_shows_the_apis_figures(web, tiny, store):
    sign_in(web, tiny, "admin")
    r = web.get("/console/coverage")
    assert r.status_code == 200, r.text
    html = r.text
    assert "市南区" in html and "<svg" in html and "八大峡街道" in html
    assert 'href="/console/coverage?unit=s1"' in html
    assert "问题清单" in html and "未落实联系党员" in html
    # the API's figures for the same scope
    api = web.get("/api/v1/coverage/violations", headers=bearer(tiny.tokens["admin"])).json()
    assert f'问题清单 <span class="count">{api["total"]}</span>' in html
    # drill: street -> community -> grid (its members) -> a member's households
    assert "出头社区" in web.get("/console/coverage?unit=s1").text
    community = web.get("/console/coverage?unit=c1").text
    assert 'href="/console/coverage?unit=g1"' in community and "网格逾期占比" in community
    grid = web.get("/console/coverage?unit=g1").text
    assert 'href="/console/coverage/members/m1"' in grid
    web.post(
        "/api/v1/coverage/assignments",
        json={"household_id": "hh-g1-1", "member_id": "m1"},
        headers=bearer(tiny.tokens["admin"]),
    )
    member = web.get("/console/coverage/members/m1").text
    assert "张伟 的联系户" in member and 'href="/console/households/hh-g1-1"' in member
    actions = [e["action"] for e in store.read(entries, limit=50)]
    assert "read.coverage" in actions and "read.coverage.violations" in actions


def test_coverage_page_refuses_as_the_api(web, tiny):
    sign_in(web, tiny, "sec")
    r = web.get("/console/coverage?unit=d1")  # above the secretary's community
    api = web.get("/api/v1/coverage?scope=d1", headers=bearer(tiny.tokens["sec"]))
    assert r.status_code == api.status_code == 403
    assert api.json()["code"] in r.text
    sign_in(web, tiny, "m1")  # a member has no reports
    r = web.get("/console/coverage")
    api = web.get("/api/v1/coverage", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == api.status_code == 403 and api.json()["code"] in r.text
    assert 'href="/console/coverage"' not in web.get("/console").text  # not in the nav


def test_coverage_export_from_the_page_reads_back(web, tiny, store):
    sign_in(web, tiny, "sec")
    page = web.get("/console/coverage").text
    assert 'href="/console/coverage/export?format=xlsx"' in page
    r = web.get("/console/coverage/export?format=xlsx")
    assert r.status_code == 200
    assert "attachment" in r.headers["content-disposition"]
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    text = [str(c.value) for ws in book.worksheets for row in ws.iter_rows() for c in row]
    assert "出头社区" in text and "第一网格" in text
    csv = web.get("/console/coverage/export?format=csv&unit=g1")
    assert csv.status_code == 200 and "第一网格" in csv.content.decode("utf-8-sig")
    assert [e["action"] for e in store.read(entries, action="export.coverage")] == [
        "export.coverage",
        "export.coverage",
    ]


# -- 审计 ---------------------------------------------------------------------------------------


def test_audit_page_is_for_admins_filtered_and_paged(web, tiny, store):
    sign_in(web, tiny, "sec")
    r = web.get("/console/audit")
    assert r.status_code == 403 and "forbidden" in r.text
    sign_in(web, tiny, "admin")
    html = web.get("/console/audit?action=console").text
    assert "console.signin" in html and "read.coverage" not in html
    html = web.get("/console/audit?person=sec").text
    assert "sec" in html
    everyone = web.get("/console/audit?since=2026-11-29&until=2026-11-29")
    assert everyone.status_code == 200
    assert web.get("/console/audit?since=29.11.2026").status_code == 400
    assert store.read(entries, action="read.audit")


# -- 通知 ---------------------------------------------------------------------------------------


def add_notice(store, person: str, title: str) -> str:
    def go(db):
        db.execute(
            "INSERT INTO notices (person_id, dedup_key, kind, title, body, link, created_ms, seq) "
            "VALUES (?, ?, 'case.raised', ?, '正文', '/console/cases/x', ?, 1)",
            [person, f"test:{person}:{title}", title, NOW],
        )
        return str(db.execute("SELECT max(id) FROM notices").fetchone()[0])

    return store.write(go)


def test_inbox_lists_and_marks_read_with_csrf(web, tiny, store):
    mine = add_notice(store, "sec", "请受理案件")
    theirs = add_notice(store, "m1", "别人的通知")
    sign_in(web, tiny, "sec")
    assert 'href="/console/inbox"' in web.get("/console").text
    html = web.get("/console/inbox").text
    assert "请受理案件" in html and "别人的通知" not in html and "未读" in html
    csrf = csrf_of(html)
    r = web.post(f"/console/inbox/{mine}/read", data={}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    r = web.post(f"/console/inbox/{mine}/read", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303
    assert "请受理案件" not in web.get("/console/inbox?unread=true").text
    r = web.post(f"/console/inbox/{theirs}/read", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 403 and "not_your_notice" in r.text


# -- 抽检 ---------------------------------------------------------------------------------------


def test_a_check_drawn_and_recorded_on_the_page_is_the_apis(web, tiny, store):
    sign_in(web, tiny, "sec")
    html = web.get("/console/checks").text
    csrf = csrf_of(html)
    assert '<option value="g1"' in html
    # without the token: refused before any work
    r = web.post("/console/checks", data={"scope": "g1", "n": "2"}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    r = web.post(
        "/console/checks", data={"csrf": csrf, "scope": "g1", "n": "2"}, follow_redirects=False
    )
    assert r.status_code == 303
    path = r.headers["location"]
    check_id = path.rsplit("/", 1)[1]
    page = web.get(path).text
    household = re.search(r'id="h-(hh-g1-\d)"', page).group(1)
    r = web.post(
        f"/console/checks/{check_id}/results/{household}",
        data={"csrf": csrf, "outcome": "confirmed", "note": "电话确认"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    api = web.get(f"/api/v1/coverage/checks/{check_id}", headers=bearer(tiny.tokens["sec"]))
    assert api.status_code == 200
    body = api.json()
    assert body["verified_rate"] == 1.0
    assert {h["household_id"]: h["outcome"] for h in body["households"]}[household] == "confirmed"
    assert "核实率 100.0%" in web.get(path).text
    assert check_id in web.get("/console/checks").text
    # a bad outcome is the API's 400
    r = web.post(
        f"/console/checks/{check_id}/results/{household}",
        data={"csrf": csrf, "outcome": "maybe"},
    )
    assert r.status_code == 400


def test_a_check_is_refused_as_the_api_refuses_it(web, tiny):
    sign_in(web, tiny, "sec")
    csrf = csrf_of(web.get("/console/checks").text)
    r = web.post("/console/checks", data={"csrf": csrf, "scope": "c1", "n": "2"})
    api = web.post(
        "/api/v1/coverage/checks", json={"scope": "c1", "n": 2}, headers=bearer(tiny.tokens["sec"])
    )
    assert r.status_code == api.status_code == 403
    assert api.json()["code"] == "check_forbidden" and "check_forbidden" in r.text
    r = web.post("/console/checks", data={"csrf": csrf, "scope": "s1", "n": "2"})
    api = web.post(
        "/api/v1/coverage/checks", json={"scope": "s1", "n": 2}, headers=bearer(tiny.tokens["sec"])
    )
    assert r.status_code == api.status_code and api.json()["code"] in r.text

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
    # the trail goes up as far as my scope does: the community, not the street
    grid = web.get("/console/coverage?unit=g1").text
    assert '<li><a href="/console/coverage?unit=c1">出头社区</a></li>' in grid
    assert "unit=s1" not in grid
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


# -- 人员与设备 ---------------------------------------------------------------------------------


def test_admin_pages_are_403_for_a_secretary(web, tiny):
    sign_in(web, tiny, "sec")
    csrf = csrf_of(web.get("/console").text)
    for path in ("/console/admin/people", "/console/admin/import", "/console/audit"):
        r = web.get(path)
        assert r.status_code == 403 and "forbidden" in r.text, path
    r = web.post("/console/admin/devices", data={"csrf": csrf, "person_id": "m1"})
    assert r.status_code == 403
    assert 'href="/console/admin/people"' not in web.get("/console").text


def test_enrolling_shows_the_token_once_as_an_svg_qr_code(web, tiny, store):
    sign_in(web, tiny, "admin")
    html = web.get("/console/admin/people").text
    assert "张伟" in html and "dev-m1" in html
    csrf = csrf_of(html)
    r = web.post("/console/admin/devices", data={"person_id": "m1", "label": "新手机"})
    assert r.status_code == 403 and "csrf_failed" in r.text
    r = web.post(
        "/console/admin/devices", data={"csrf": csrf, "person_id": "m1", "label": "新手机"}
    )
    assert r.status_code == 200
    qr = re.search(r'<div class="qr"[^>]*>(.*?)</div>', r.text, re.S).group(1)
    assert qr.lstrip().startswith("<svg") and "<path" in qr
    token = re.search(r'<dd class="token">([^<]+)</dd>', r.text).group(1)
    me = web.get("/api/v1/me", headers=bearer(token))  # the token works on the API
    assert me.status_code == 200 and me.json()["person"]["id"] == "m1"
    device = me.json()["device_id"]
    # revoke with drain, as the API does: the device is draining, not yet revoked
    r = web.post(
        f"/console/admin/devices/{device}/revoke",
        data={"csrf": csrf, "reason": "换手机", "drain": "1"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    listed = web.get("/api/v1/devices", headers=bearer(tiny.tokens["admin"])).json()["items"]
    (mine,) = [d for d in listed if d["id"] == device]
    assert mine["draining_since"] and mine["revoked_at"] is None
    # the last admin device is refused as over the API
    r = web.post("/console/admin/devices/dev-admin/revoke", data={"csrf": csrf})
    assert r.status_code == 409 and "last_admin_device" in r.text


def household_csv(rows: list[str]) -> bytes:
    return ("外部编号,网格,户主姓名,楼栋,房号\n" + "\n".join(rows) + "\n").encode()


def test_import_previews_with_row_numbers_and_writes_nothing_until_confirmed(web, tiny, store):
    sign_in(web, tiny, "admin")
    csrf = csrf_of(web.get("/console/admin/import").text)

    def count() -> int:
        return store.read(lambda db: db.execute("SELECT count(*) FROM households").fetchone()[0])

    before = count()
    bad = household_csv(["X-1,g1,新户一,5号楼,101", "X-2,nowhere,新户二,5号楼,102"])
    r = web.post(
        "/console/admin/import",
        data={"csrf": csrf},
        files={"file": ("households.csv", bad, "text/csv")},
    )
    assert r.status_code == 200, r.text
    assert "不能导入" in r.text and '<td data-label="行" class="num">3</td>' in r.text
    assert "确认导入" not in r.text and count() == before
    good = household_csv(["X-1,g1,新户一,5号楼,101", "X-2,g2,新户二,5号楼,102"])
    r = web.post(
        "/console/admin/import",
        data={"csrf": csrf},
        files={"file": ("households.csv", good, "text/csv")},
    )
    assert "预览（尚未写入）" in r.text and "确认导入" in r.text
    assert count() == before  # the preview wrote nothing
    upload = re.search(r'name="upload" value="([^"]+)"', r.text).group(1)
    r = web.post("/console/admin/import", data={"upload": upload, "confirm": "1"})
    assert r.status_code == 403 and count() == before  # CSRF first
    r = web.post("/console/admin/import", data={"csrf": csrf, "upload": upload, "confirm": "1"})
    assert r.status_code == 200 and "已导入" in r.text
    assert count() == before + 2
    found = web.get("/api/v1/households?q=新户一", headers=bearer(tiny.tokens["admin"])).json()
    assert found["total"] == 1


@pytest.mark.parametrize(
    "path",
    [
        "/console/inbox/1/read",
        "/console/checks",
        "/console/checks/x/results/hh-g1-1",
        "/console/admin/devices",
        "/console/admin/devices/dev-m1/revoke",
        "/console/admin/sessions/cs-x/revoke",
        "/console/admin/import",
    ],
)
def test_every_new_form_needs_its_csrf_token(web, tiny, store, path):
    sign_in(web, tiny, "admin")
    before = store.read(lambda db: db.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    r = web.post(path, data={"drain": "1"}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    after = store.read(lambda db: db.execute("SELECT count(*) FROM audit_log").fetchone()[0])
    assert after == before  # refused before any work
    devices = web.get("/api/v1/devices", headers=bearer(tiny.tokens["admin"])).json()["items"]
    assert all(d["revoked_at"] is None and d["draining_since"] is None for d in devices)


def test_an_admin_ends_a_console_session(web, tiny):
    sign_in(web, tiny, "sec")
    sessions = web.get("/api/v1/console/sessions", headers=bearer(tiny.tokens["admin"])).json()
    (session,) = [s for s in sessions["items"] if s["person_id"] == "sec" and s["active"]]
    sign_in(web, tiny, "admin")
    csrf = csrf_of(web.get("/console/admin/people").text)
    r = web.post(
        f"/console/admin/sessions/{session['id']}/revoke",
        data={"csrf": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    sessions = web.get("/api/v1/console/sessions", headers=bearer(tiny.tokens["admin"])).json()
    (ended,) = [s for s in sessions["items"] if s["id"] == session["id"]]
    assert ended["active"] is False and ended["revoked_at"]

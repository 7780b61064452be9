"""The web console over the real app (Litestar's test client, a real SQLite file): sign-in by
one-time link, sessions, CSRF, and pages that answer as the REST API answers. The browser
drives the same pages in tests/test_console_browser.py."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys

import pytest
from litestar.testing import TestClient

from gridsync import signin, whistle
from gridsync.app import create_app
from gridsync.audit import entries
from gridsync.auth import authenticate
from gridsync.clock import FixedClock
from gridsync.config import Settings
from gridsync.models import WhistleRaise
from gridsync.notify import outbox
from tests.conftest import bearer
from tests.sync_helpers import Phone

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


def link_for(web, tiny, person: str, next_path: str = "") -> str:
    """A sign-in link made over the API (an admin for anyone); its path."""
    r = web.post(
        "/api/v1/console/links",
        json={"person_id": person, "next": next_path},
        headers=bearer(tiny.tokens["admin"]),
    )
    assert r.status_code == 201, r.text
    url = r.json()["url"]
    assert url.startswith("https://grid.example.cn/console/login/gl1_")
    return url.removeprefix("https://grid.example.cn")


def sign_in(web, tiny, person: str) -> None:
    r = web.post(link_for(web, tiny, person), follow_redirects=False)
    assert r.status_code == 303


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([0-9a-f]{64})"', html)
    assert m, "no CSRF token in the page"
    return m.group(1)


def raise_case(store, tiny, clock, settings, case_id="case-1", grid="g1", by="m1") -> None:
    principal = store.read(authenticate, tiny.tokens[by])
    store.write(
        whistle.raise_case,
        principal,
        case_id,
        WhistleRaise(category="占道经营", grid_id=grid, location="3号楼", description="门口摆摊"),
        received_ms=clock.now_ms(),
        settings=settings,
    )


# -- sign-in ------------------------------------------------------------------------------------


def test_a_link_signs_in_once_with_a_safe_cookie(web, tiny, store):
    path = link_for(web, tiny, "sec")
    # Opening the link only shows the page (a chat app's preview does not use it up).
    assert web.get(path).status_code == 200
    assert web.get(path).status_code == 200
    r = web.post(path, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/console"
    cookie = r.headers["set-cookie"]
    assert "gs_session=gc1_" in cookie and "HttpOnly" in cookie
    assert "SameSite=lax" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain http here; see the TLS test
    assert web.get("/console").status_code == 200
    # used once: the second use is refused with its code, on a page, as a 401
    again = web.post(path, follow_redirects=False)
    assert again.status_code == 401 and "link_used" in again.text
    assert [e["action"] for e in store.read(entries, action="console.signin")] == ["console.signin"]
    stored = store.read(lambda db: db.execute("SELECT token_hash FROM console_links").fetchall())
    assert path.rsplit("/", 1)[1] not in json.dumps(stored)  # only the hash is kept


def test_a_post_from_another_site_is_refused(web, tiny, store):
    path = link_for(web, tiny, "sec")
    r = web.post(path, headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert r.status_code == 403 and "csrf_failed" in r.text
    r = web.post(path, headers={"Origin": "http://testserver.local"}, follow_redirects=False)
    assert r.status_code == 303  # the link was not used up by the refused POST


def test_a_link_expires_after_15_minutes(web, tiny, clock):
    path = link_for(web, tiny, "sec")
    clock.advance(minutes=15)
    r = web.post(path, follow_redirects=False)
    assert r.status_code == 401 and "link_expired" in r.text
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_who_may_make_a_link(web, tiny):
    own = web.post(
        "/api/v1/console/links", json={"person_id": "m1"}, headers=bearer(tiny.tokens["m1"])
    )
    assert own.status_code == 201
    other = web.post(
        "/api/v1/console/links", json={"person_id": "m2"}, headers=bearer(tiny.tokens["m1"])
    )
    assert other.status_code == 403 and other.json()["code"] == "forbidden"
    bad = web.post(
        "/api/v1/console/links",
        json={"person_id": "m1", "next": "https://evil.example/"},
        headers=bearer(tiny.tokens["m1"]),
    )
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    nobody = web.post(
        "/api/v1/console/links", json={"person_id": "ghost"}, headers=bearer(tiny.tokens["admin"])
    )
    assert nobody.status_code == 404


def test_behind_tls_the_cookie_is_secure(store, tiny, app_settings, clock):
    app = create_app(app_settings, store=store, clock=clock)
    with TestClient(app=app, base_url="https://testserver.local") as web:
        r = web.post(link_for(web, tiny, "sec"), follow_redirects=False)
        assert "Secure" in r.headers["set-cookie"]


def test_an_ended_session_asks_for_a_link_then_lands_where_asked(web, tiny, clock, app_settings):
    raise_case_args = (web.app.state.store, tiny, clock, app_settings)
    raise_case(*raise_case_args)
    sign_in(web, tiny, "sec")
    clock.advance(minutes=app_settings.console_session_hours * 60)  # the session ends
    r = web.get("/console/cases/case-1", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/signin?reason=session_expired&next=")
    page = web.get(r.headers["location"])
    assert "登录已过期" in page.text
    # a new link (made without any page in mind) lands on the page that was asked for
    r = web.post(link_for(web, tiny, "sec"), follow_redirects=False)
    assert r.headers["location"] == "/console/cases/case-1"


def test_a_link_made_for_a_page_lands_there(web, tiny):
    r = web.post(link_for(web, tiny, "sec", "/console/households"), follow_redirects=False)
    assert r.headers["location"] == "/console/households"
    assert signin.safe_next("//evil.example") == ""
    assert signin.safe_next("/console/../api") == ""


def test_sessions_are_listed_and_revoked_like_phones(web, tiny, store):
    sign_in(web, tiny, "sec")
    listed = web.get("/api/v1/console/sessions", headers=bearer(tiny.tokens["sec"])).json()
    assert [s["person_id"] for s in listed["items"]] == ["sec"] and listed["items"][0]["active"]
    sid = listed["items"][0]["id"]
    # another person cannot see or end it; an admin can
    assert web.get("/api/v1/console/sessions", headers=bearer(tiny.tokens["m1"])).json() == {
        "items": []
    }
    r = web.post(f"/api/v1/console/sessions/{sid}/revoke", headers=bearer(tiny.tokens["m1"]))
    assert r.status_code == 404
    page = web.get("/console/account")
    assert "本浏览器" in page.text and "dev-sec" in page.text  # sessions beside devices
    r = web.post(f"/api/v1/console/sessions/{sid}/revoke", headers=bearer(tiny.tokens["admin"]))
    assert r.status_code == 200 and r.json()["active"] is False
    r = web.get("/console", follow_redirects=False)
    assert r.status_code == 303 and "reason=session_revoked" in r.headers["location"]
    assert store.read(entries, action="console.revoke")[0]["target"] == sid


def test_sign_out_is_audited_and_needs_the_csrf_token(web, tiny, store):
    sign_in(web, tiny, "sec")
    html = web.get("/console").text
    refused = web.post("/console/account/signout", data={}, follow_redirects=False)
    assert refused.status_code == 403 and "csrf_failed" in refused.text
    r = web.post("/console/account/signout", data={"csrf": csrf_of(html)}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("reason=signed_out")
    assert len(store.read(entries, action="console.signout")) == 1
    assert web.get("/console", follow_redirects=False).status_code == 303


def test_cli_makes_a_link(db_path, store, tiny):
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridsync",
            "console",
            "link",
            "--db",
            db_path,
            "--person",
            "sec",
            "--json",
            "--base-url",
            "http://127.0.0.1:9",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert set(got) == {"url", "expires_at"}
    assert got["url"].startswith("http://127.0.0.1:9/console/login/gl1_")
    bad = subprocess.run(
        [sys.executable, "-m", "gridsync", "console", "link", "--db", db_path, "--person", "x"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "not_found" in bad.stderr


# -- pages: the API's answers -------------------------------------------------------------------


def test_accepting_a_case_is_the_api_accepting_it(web, tiny, store, clock, app_settings):
    raise_case(store, tiny, clock, app_settings)
    sign_in(web, tiny, "m1")
    today = web.get("/console").text
    assert "占道经营" in today and 'class="due"' in today  # a countdown to its deadline
    board = web.get("/console/cases", params={"level": ""})
    assert board.status_code == 200 and "占道经营" in board.text
    assert web.get("/console/cases", params={"level": "moon"}).status_code == 400
    page = web.get("/console/cases/case-1").text
    assert 'id="act-accept"' in page and 'id="act-close"' not in page
    refused = web.post("/console/cases/case-1/act", data={"action": "accept"})
    assert refused.status_code == 403 and "csrf_failed" in refused.text
    api = web.get("/api/v1/whistle/cases/case-1", headers=bearer(tiny.tokens["m1"])).json()
    assert api["state"] == "raised"  # nothing happened without the token
    r = web.post(
        "/console/cases/case-1/act",
        data={"action": "accept", "note": "马上到", "csrf": csrf_of(page)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    api = web.get("/api/v1/whistle/cases/case-1", headers=bearer(tiny.tokens["m1"])).json()
    assert api["state"] == "accepted" and api["accepted_by"] == "m1"
    assert api["history"][-1]["note"] == "马上到"
    audited = store.read(entries, action="whistle.accept")
    assert audited and audited[0]["device_id"].startswith("console:cs-")
    # accepting again is refused with the API's status and code
    again = web.post("/console/cases/case-1/act", data={"action": "accept", "csrf": csrf_of(page)})
    rest = web.post(
        "/api/v1/whistle/cases/case-1/actions",
        json={"action": "accept"},
        headers=bearer(tiny.tokens["m1"]),
    )
    assert again.status_code == rest.status_code == 409
    assert rest.json()["code"] == "already_accepted" and "already_accepted" in again.text


def test_out_of_scope_is_refused_as_the_api_refuses(web, tiny, store, clock, app_settings):
    raise_case(store, tiny, clock, app_settings)
    sign_in(web, tiny, "m2")  # grid g2: the case is in g1
    page = web.get("/console/cases/case-1")
    rest = web.get("/api/v1/whistle/cases/case-1", headers=bearer(tiny.tokens["m2"]))
    assert page.status_code == rest.status_code == 404
    assert rest.json()["code"] == "case_not_found" and "case_not_found" in page.text
    csrf = csrf_of(web.get("/console").text)
    act = web.post("/console/cases/case-1/act", data={"action": "accept", "csrf": csrf})
    assert act.status_code == 404 and "case_not_found" in act.text
    house = web.get("/console/households/hh-g1-1")
    rest = web.get("/api/v1/households/hh-g1-1", headers=bearer(tiny.tokens["m2"]))
    assert house.status_code == rest.status_code == 404
    # a member may not assign: the API's 403 forbidden
    r = web.post("/console/households/hh-g2-1/assign", data={"member_id": "m2", "csrf": csrf})
    rest = web.post(
        "/api/v1/coverage/assignments",
        json={"household_id": "hh-g2-1", "member_id": "m2"},
        headers=bearer(tiny.tokens["m2"]),
    )
    assert r.status_code == rest.status_code == 403 and rest.json()["code"] in r.text
    # a bad form value is the API's 400 validation_error
    bad = web.post("/console/cases/case-1/act", data={"action": "dance", "csrf": csrf})
    assert bad.status_code == 400 and "validation_error" in bad.text


def test_households_search_masks_and_assigns(web, tiny, store):
    sign_in(web, tiny, "m1")
    # the search form sends its empty choices too
    page = web.get("/console/households", params={"q": "住户g11", "grid_id": ""}).text
    assert "hh-g1-1" in page and "hh-g1-2" not in page
    assert "138****0001" in page  # not m1's household: masked, as the API reads it
    web.cookies.clear()
    sign_in(web, tiny, "sec")
    page = web.get("/console/households", params={"q": "102"}).text  # the room
    assert "hh-g1-2" in page and "hh-g2-2" in page and "13800000002" in page
    house = web.get("/console/households/hh-g1-1").text
    r = web.post(
        "/console/households/hh-g1-1/assign",
        data={"member_id": "m1", "csrf": csrf_of(house)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    api = web.get("/api/v1/households/hh-g1-1", headers=bearer(tiny.tokens["sec"])).json()
    assert api["responsible_member_id"] == "m1"
    assert store.read(entries, action="read.households")  # the search is audited as the API's


def make_conflict(web, tiny, store) -> int:
    """Two phones edit one phone number offline; the earlier HLC, pushed last, loses."""
    from gridsync.sync.hlc import format_hlc

    sec = Phone(web, tiny.tokens["sec"], tiny.devices["sec"])
    m1 = Phone(web, tiny.tokens["m1"], tiny.devices["m1"])
    base = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'hh-g1-1'").fetchone()[0]
    )
    late = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(NOW - 5000, 0, "dev-m1"),
        fields={"phone": "13700000002"},
    )
    early = sec.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(NOW - 9000, 0, "dev-sec"),
        fields={"phone": "13700000001"},
    )
    assert m1.push([late]).json()["results"][0]["status"] == "applied"
    res = sec.push([early]).json()["results"][0]
    assert res["status"] == "merged"
    return res["lost"][0]["conflict_id"]


def test_restoring_a_conflict_is_the_api_restoring_it(web, tiny, store):
    conflict_id = make_conflict(web, tiny, store)
    sign_in(web, tiny, "sec")
    today = web.get("/console").text
    assert "13700000001" in today  # the lost value waits on 今日
    house = web.get("/console/households/hh-g1-1").text
    assert f'id="restore-{conflict_id}"' in house
    r = web.post(
        f"/console/households/conflicts/{conflict_id}/restore",
        data={"csrf": csrf_of(house)},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"].endswith("hh-g1-1?done=restore")
    api = web.get("/api/v1/households/hh-g1-1", headers=bearer(tiny.tokens["sec"])).json()
    assert api["phone"] == "13700000001"
    listed = web.get(
        "/api/v1/sync/conflicts", params={"status": "restored"}, headers=bearer(tiny.tokens["sec"])
    ).json()
    assert [c["id"] for c in listed["items"]] == [conflict_id]
    again = web.post(
        f"/console/households/conflicts/{conflict_id}/dismiss", data={"csrf": csrf_of(house)}
    )
    assert again.status_code == 409 and "conflict_closed" in again.text


def test_pages_are_small(web, tiny, store, clock, app_settings):
    raise_case(store, tiny, clock, app_settings)
    sign_in(web, tiny, "admin")
    for path in (
        "/console",
        "/console/cases",
        "/console/cases/case-1",
        "/console/households",
        "/console/households/hh-g1-1",
        "/console/account",
        "/console/static/console.css",
        "/console/static/console.js",
    ):
        r = web.get(path)
        assert r.status_code == 200, path
        assert len(gzip.compress(r.content)) < 100_000, path
        if path.endswith(".css") or path.endswith(".js"):
            continue
        assert '<html lang="zh-CN">' in r.text and "//" not in re.sub(
            r'(href|src|action)="/[^"]*"', "", r.text
        ).replace("http://www.w3.org", ""), path  # nothing from another host


def test_notifications_carry_a_deep_link(web, tiny, store, clock, app_settings):
    from tests.test_notify import set_channels

    set_channels(store, "m1", ["json://127.0.0.1:9/x"])  # on grid g1's team
    raise_case(store, tiny, clock, app_settings, by="sec")
    page = store.read(outbox.list_outbox, kind="whistle_raised")
    assert page.items
    assert all("https://grid.example.cn/console/cases/case-1" in n.body for n in page.items)


def test_closing_takes_the_score_from_the_form_and_refuses_self_review(
    web, tiny, store, clock, app_settings
):
    raise_case(store, tiny, clock, app_settings)
    sign_in(web, tiny, "m1")
    csrf = csrf_of(web.get("/console").text)
    for action in ("accept", "resolve"):
        r = web.post("/console/cases/case-1/act", data={"action": action, "csrf": csrf})
        assert r.status_code == 200, r.text  # followed the 303 to the case page
    page = web.get("/console/cases/case-1").text
    assert 'id="act-close"' in page and 'name="satisfaction"' in page
    mine = web.post(
        "/console/cases/case-1/act", data={"action": "close", "satisfaction": "5", "csrf": csrf}
    )
    assert mine.status_code == 409 and "self_review" in mine.text
    web.cookies.clear()
    sign_in(web, tiny, "sec")
    csrf = csrf_of(web.get("/console").text)
    unscored = web.post(
        "/console/cases/case-1/act", data={"action": "close", "satisfaction": "", "csrf": csrf}
    )
    assert unscored.status_code == 400 and "invalid_satisfaction" in unscored.text
    r = web.post(
        "/console/cases/case-1/act", data={"action": "close", "satisfaction": "4", "csrf": csrf}
    )
    assert r.status_code == 200
    api = web.get("/api/v1/whistle/cases/case-1", headers=bearer(tiny.tokens["sec"])).json()
    assert (api["state"], api["satisfaction"]) == ("closed", 4)


def test_a_member_sees_only_what_the_api_gives_a_member(web, tiny, store):
    make_conflict(web, tiny, store)
    sign_in(web, tiny, "m1")
    today = web.get("/console").text
    # the violations and conflicts APIs are the secretaries' (403 for a member): no such lists
    assert "逾期未走访" not in today and "同步冲突" not in today
    assert web.get("/api/v1/sync/conflicts", headers=bearer(tiny.tokens["m1"])).status_code == 403
    house = web.get("/console/households/hh-g1-1").text
    assert "同步冲突" not in house and "调整联系党员" not in house


def test_today_shows_alerts_to_a_person_without_a_channel(web, tiny, store, clock, app_settings):
    """今日's 发给我的提醒 reads the inbox: m1 (grid g1's team) has no channel, so no outbox row,
    and sees the alert all the same."""
    raise_case(store, tiny, clock, app_settings, by="sec")
    assert not store.read(outbox.list_outbox, person_id="m1").items  # nothing to deliver
    sign_in(web, tiny, "m1")
    html = web.get("/console").text
    assert "暂无提醒" not in html
    assert "门口摆摊" in html or "占道经营" in html

"""Pull read-ahead: the next page is read while the phone receives the current one, and used only
for the same device, cursor, page size and scope; the token is checked on every page."""

from __future__ import annotations

import msgspec
from litestar.testing import TestClient

from gridsync import auth, org
from gridsync.api.deps import read_ahead
from gridsync.app import create_app
from gridsync.audit import Actor
from tests.sync_helpers import Phone


def phone(client, tiny, person: str) -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def pages(m: Phone, limit: int) -> list[dict]:
    out, cursor = [], None
    while True:
        page = m.pull_page(cursor, limit=limit)
        out.append({k: v for k, v in page.items() if k != "server_hlc"})
        if not page["has_more"]:
            return out
        cursor = page["cursor"]


def test_pages_read_ahead_equal_pages_read_on_request(store, settings, tiny):
    with TestClient(app=create_app(settings, store=store)) as client:
        ahead = read_ahead(store)
        with_ahead = pages(phone(client, tiny, "sec"), limit=3)
        # Every page after the first was read ahead; on a busy machine a page may be asked for
        # before its read-ahead thread started, and is then read on request.
        assert ahead.hits + ahead.unstarted == len(with_ahead) - 1
    no_ahead = msgspec.structs.replace(settings, pull_read_ahead=False)
    with TestClient(app=create_app(no_ahead, store=store)) as client:
        hits = read_ahead(store).hits
        without = pages(phone(client, tiny, "sec"), limit=3)
        assert read_ahead(store).hits == hits
    assert len(with_ahead) > 3
    assert with_ahead == without


def test_a_page_read_ahead_is_not_served_to_a_revoked_device(client, tiny, store):
    sec = phone(client, tiny, "sec")
    first = sec.pull_page(limit=2)
    assert first["has_more"]
    store.write(auth.revoke, tiny.devices["sec"], Actor.cli(), "lost")
    r = client.get(
        "/api/v1/sync/pull", headers=sec.headers(), params={"limit": 2, "cursor": first["cursor"]}
    )
    assert r.status_code == 401 and r.json()["code"] == "device_revoked"


def test_a_page_read_ahead_under_an_older_scope_is_not_used(client, tiny, store):
    m1 = phone(client, tiny, "m1")
    first = m1.pull_page(limit=2)
    assert first["has_more"]
    hits = read_ahead(store).hits
    store.write(org.set_scope, "m1", ["g2"], Actor.cli())
    # The scope changed in the middle of the snapshot: the server starts over (SPEC 3.2),
    # which the page read ahead under the old scope would not have said.
    second = m1.pull_page(first["cursor"], limit=2)
    assert second["reset"] is True
    assert read_ahead(store).hits == hits


def test_a_page_read_ahead_for_another_page_size_is_not_used(client, tiny, store):
    sec = phone(client, tiny, "sec")
    first = sec.pull_page(limit=2)
    hits = read_ahead(store).hits
    second = sec.pull_page(first["cursor"], limit=5)
    assert len(second["changes"]) == 5
    assert read_ahead(store).hits == hits

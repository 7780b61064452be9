"""Review of issue 12 (hardening), round 2, the whistle cases and the drain: a case that grows
without bound, one phone clock skewing the whistle report, a drain that lands between batches.

Taken from the reviewer's ``tests/test_review12.py`` (branch ``review12``), one test per
finding. Real parts only: the app through the TestClient, the reference client.
"""

from __future__ import annotations

import time

import pytest

from gridsync import auth
from gridsync.clock import FixedClock, uuid7
from gridsync.sync.client import DeviceClient, DeviceDrainedError
from tests.conftest import CLI, bearer
from tests.sync_helpers import Phone


def _phone(client, tiny, person: str = "m1") -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def _raise_case(phone: Phone, **data) -> str:
    case_id = uuid7()
    r = phone.push([phone.mutation("whistle.raise", case_id, data={"category": "漏水", **data})])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "applied", r.text
    return case_id


# -- 1. a whistle case grows without bound ---------------------------------------------------------


def test_comments_cannot_grow_a_case_past_what_a_phone_should_pull(client, tiny):
    m1 = _phone(client, tiny)
    case_id = _raise_case(m1, grid_id="g1")
    note = "x" * 2000  # WhistleAct.note's maximum
    r = m1.push(
        [
            m1.mutation("whistle.act", case_id, data={"action": "comment", "note": note})
            for _ in range(1000)
        ]
    )
    assert r.status_code == 200, r.text
    case = client.get(f"/api/v1/whistle/cases/{case_id}", headers=bearer(tiny.tokens["sec"]))
    assert case.status_code == 200
    assert len(case.content) < 1_048_576, f"one case is {len(case.content):,} bytes"


# -- 6. one phone clock skews the whistle report ---------------------------------------------------


def test_a_phone_clock_reset_to_1970_does_not_skew_the_offline_figures(client, tiny):
    m1 = _phone(client, tiny)
    _raise_case(m1, grid_id="g1", raised_at="1970-01-01T08:00:01+08:00")
    report = client.get("/api/v1/whistle/report", headers=bearer(tiny.tokens["admin"])).json()
    assert (report["offline_delay_avg_seconds"] or 0) < 3600, report


# -- 7. a drain that lands mid-sync loses queued work that fits in one push ----------------------


class _DrainOnFirstPush:
    """The admin revokes the phone with drain just as its first push batch leaves (after the
    client read its sync status): the operator replacing a phone while its user syncs it."""

    def __init__(self, http, store, device_id):
        self.http, self.store, self.device_id = http, store, device_id
        self.done = False

    def request(self, method, url, **kwargs):
        if url.endswith("/sync/push") and not self.done:
            self.done = True
            self.store.write(auth.revoke, self.device_id, CLI, "换手机", drain=True)
        return self.http.request(method, url, **kwargs)


def test_a_drain_landing_between_batches_loses_nothing_that_fits_one_push(client, tiny, store):
    net = _DrainOnFirstPush(client, store, tiny.devices["m1"])
    m1 = DeviceClient(
        net,
        token=tiny.tokens["m1"],
        device_id=tiny.devices["m1"],
        person_id="m1",
        clock=FixedClock(int(time.time() * 1000)),
        sleep=lambda _s: None,
        batch_size=2,
    )
    m1.sync()
    for i in range(5):
        m1.log_visit(f"hh-g1-{1 + i % 4}", "door", [], "换机中")
    with pytest.raises(DeviceDrainedError):
        m1.sync()
    on_server = store.read(
        lambda db: db.execute("SELECT count(*) FROM visits WHERE note = '换机中'").fetchone()[0]
    )
    assert on_server == 5

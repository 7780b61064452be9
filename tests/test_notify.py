"""The outbox and its delivery: real Apprise to a real local HTTP receiver and a real local SMTP
server; retries driven by an injected clock; restart after a crash; routing and masking."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import socket
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import msgspec
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

import gridsync
from gridsync import digests, whistle
from gridsync.auth import authenticate
from gridsync.clock import FixedClock
from gridsync.config import NotifySettings, Settings
from gridsync.db import Store
from gridsync.models import WhistleRaise
from gridsync.notify import outbox
from gridsync.notify.dispatcher import Dispatcher
from gridsync.notify.routing import Router
from gridsync.sweep import run_once
from tests.conftest import bearer, build_tiny_org

REPO = Path(gridsync.__file__).resolve().parent.parent
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=timezone(timedelta(hours=8)))  # Monday 10:00 Beijing


# -- real receivers -------------------------------------------------------------------------------


class Receiver:
    """A real HTTP server on 127.0.0.1 that Apprise's ``json://`` posts to. It can be told to
    fail the first N requests (HTTP 500)."""

    def __init__(self, fail_first: int = 0):
        self.fail_first = fail_first
        self.received: list[dict] = []
        self.failed = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    receiver.failed += 1
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.received.append({"path": self.path, **json.loads(body)})
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "hook") -> str:
        return f"json://127.0.0.1:{self.port}/{path}"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpSink:
    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 OK"

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def set_channels(store: Store, person_id: str, channels: list[str], locale: str | None = None):
    def write(db):
        db.execute("UPDATE people SET channels = ? WHERE id = ?", [json.dumps(channels), person_id])
        if locale:
            db.execute("UPDATE people SET locale = ? WHERE id = ?", [locale, person_id])

    store.write(write)


def principal(store: Store, tiny, person_id: str):
    return store.read(authenticate, tiny.tokens[person_id])


def raise_case(store, tiny, settings, clock, person_id="sec", case_id="case-1", **fields):
    data = WhistleRaise(
        category=fields.pop("category", "漏水"),
        grid_id="g1",
        location=fields.pop("location", "3号楼1单元"),
        description=fields.pop("description", "楼道水管破裂"),
        **fields,
    )
    return store.write(
        whistle.raise_case,
        principal(store, tiny, person_id),
        case_id,
        data,
        received_ms=clock.now_ms(),
        settings=settings,
    )


def quick_settings(db_path: str, **notify) -> Settings:
    return Settings(db=db_path, notify=NotifySettings(timeout_seconds=5, **notify))


# -- delivery for real ----------------------------------------------------------------------------


def test_delivery_to_http_and_smtp_in_chinese(store, tiny, db_path):
    settings = quick_settings(db_path)
    clock = FixedClock(T0)
    sink = SmtpSink()
    port = free_port()
    smtp = Controller(sink, hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        with Receiver() as http:
            set_channels(
                store,
                "m1",
                [
                    http.url("m1"),
                    f"mailto://127.0.0.1:{port}?from=gridsync@example.org&to=m1@example.org"
                    "&mode=insecure",
                ],
            )
            raise_case(store, tiny, settings, clock)
            result = Dispatcher(store, settings, clock).run_once()
    finally:
        smtp.stop()
    assert result.sent == 1 and result.failed == 0
    title = "【吹哨】第一网格有新案件：漏水"
    assert len(http.received) == 1
    got = http.received[0]
    assert got["path"] == "/m1"
    assert got["title"] == title
    assert got["message"].startswith("第一网格（3号楼1单元）：楼道水管破裂\n发起人：王书记")
    assert "请在 11-23 10:01 前受理，11-23 10:10 前到场，11-23 10:30 前办结。" in got["message"]
    assert len(sink.messages) == 1
    mail = sink.messages[0]
    assert mail["Subject"] == title
    mail_lines = mail.get_body(("plain",)).get_content().strip().splitlines()
    assert mail_lines == got["message"].splitlines()
    row = store.read(outbox.list_outbox).items[0]
    assert (row.state, row.attempts, row.kind, row.recipient) == (
        "sent",
        1,
        "whistle_raised",
        "member:m1",
    )


def test_receiver_failing_twice_then_succeeding_gets_it_exactly_once(store, tiny, db_path):
    settings = quick_settings(db_path, retry_base_seconds=30)
    clock = FixedClock(T0)
    with Receiver(fail_first=2) as http:
        set_channels(store, "m1", [http.url()])
        raise_case(store, tiny, settings, clock)
        dispatcher = Dispatcher(store, settings, clock)

        assert dispatcher.run_once().retrying == 1  # attempt 1: HTTP 500
        entry = store.read(outbox.list_outbox).items[0]
        assert (entry.state, entry.attempts) == ("queued", 1)
        assert "500" in entry.last_error
        assert dispatcher.run_once().as_dict() == {
            "sent": 0,
            "retrying": 0,
            "failed": 0,
            "postponed": 0,
        }  # not due yet
        clock.advance(seconds=30)
        assert dispatcher.run_once().retrying == 1  # attempt 2 fails; next in 60 s
        clock.advance(seconds=59)
        assert dispatcher.run_once().sent == 0
        clock.advance(seconds=1)
        assert dispatcher.run_once().sent == 1  # attempt 3 succeeds
        clock.advance(minutes=600)
        assert dispatcher.run_once().sent == 0  # never again
    assert http.failed == 2
    assert len(http.received) == 1
    entry = store.read(outbox.list_outbox).items[0]
    assert (entry.state, entry.attempts) == ("sent", 3)
    assert entry.sent_at is not None


def test_gives_up_after_max_attempts(store, tiny, db_path):
    settings = quick_settings(db_path, retry_base_seconds=1, max_attempts=3)
    clock = FixedClock(T0)
    with Receiver(fail_first=10) as http:
        set_channels(store, "m1", [http.url()])
        raise_case(store, tiny, settings, clock)
        dispatcher = Dispatcher(store, settings, clock)
        for _ in range(5):
            dispatcher.run_once()
            clock.advance(minutes=5)
    entry = store.read(outbox.list_outbox).items[0]
    assert (entry.state, entry.attempts) == ("failed", 3)
    assert http.failed == 3 and not http.received


def test_crash_after_outbox_write_delivers_after_restart(db_path):
    """The cause commits its outbox row; the process dies before any delivery; a new process
    delivers it, once."""
    clock = FixedClock(T0)
    settings = quick_settings(db_path)
    with Receiver() as http:
        with Store(db_path) as first:
            tiny = build_tiny_org(first)
            set_channels(first, "m1", [http.url()])
            raise_case(first, tiny, settings, clock)
        # the process is gone: nothing was sent
        assert http.received == []
        with Store(db_path) as second:
            assert second.read(outbox.counts) == {"queued": 1}
            assert Dispatcher(second, settings, clock).run_once().sent == 1
            clock.advance(minutes=10)
            assert Dispatcher(second, settings, clock).run_once().sent == 0
    assert len(http.received) == 1


def test_crash_between_claim_and_mark_resends_after_lease(store, tiny, db_path):
    """At-least-once: a row claimed by a sender that died is sent again when its lease ends."""
    settings = quick_settings(db_path)
    clock = FixedClock(T0)
    with Receiver() as http:
        set_channels(store, "m1", [http.url()])
        raise_case(store, tiny, settings, clock)
        from gridsync.notify.dispatcher import _claim

        claimed, _ = store.write(_claim, clock.now_ms(), 60_000, 10, settings)
        assert len(claimed) == 1  # ... and the sender dies here
        assert Dispatcher(store, settings, clock).run_once().sent == 0  # lease still held
        clock.advance(minutes=2)
        assert Dispatcher(store, settings, clock).run_once().sent == 1
    assert len(http.received) == 1
    assert store.read(outbox.list_outbox).items[0].attempts == 2


def test_dedup_key_queues_a_cause_once(store, tiny, db_path):
    set_channels(store, "m1", ["json://127.0.0.1:9/x"])
    router = Router(None)

    def enqueue(db):
        return outbox.enqueue(
            db,
            router,
            event_key="whistle:x:raised",
            kind="whistle_closed",
            tags=["member:m1", "grid:g1"],
            context={
                "id": "x",
                "category": "c",
                "grid_name": "g",
                "location": "",
                "closed_at_local": "",
                "satisfaction": 5,
            },
            now_ms=0,
        )

    assert store.write(enqueue) == 1  # m1 reached by two tags: one message
    assert store.write(enqueue) == 0
    assert store.read(outbox.counts) == {"queued": 1}


# -- routing and secrets --------------------------------------------------------------------------


def test_apprise_yaml_tags_route_org_units(store, tiny, db_path, tmp_path):
    with Receiver() as http:
        config = tmp_path / "apprise.yml"
        config.write_text(
            "version: 1\n"
            "urls:\n"
            f"  - {http.url('community-c1')}:\n"
            "      - tag: community:c1:secretary\n"
            f"  - {http.url('street-s1')}:\n"
            "      - tag: street:s1:duty\n",
            "utf-8",
        )
        settings = quick_settings(db_path, apprise_config=str(config))
        clock = FixedClock(T0)
        raise_case(store, tiny, settings, clock)
        clock.advance(minutes=2)  # the grid's 1-minute accept deadline has passed
        report = run_once(store, settings, clock, with_digests=False)
    assert report.deadlines["escalated"] == 1
    assert report.delivery["sent"] == 2
    paths = sorted(m["path"] for m in http.received)
    assert paths == ["/community-c1", "/street-s1"]
    assert all(m["title"] == "【吹哨】案件已上报社区：漏水" for m in http.received)


def test_secrets_never_shown(store, tiny, db_path, client, caplog):
    secret = "s3cr3t-b0t-k3y-123456"
    port = free_port()  # nothing listens: delivery fails
    set_channels(store, "m1", [f"json://user:{secret}@127.0.0.1:{port}/{secret}"])
    settings = quick_settings(db_path)
    clock = FixedClock(T0)
    raise_case(store, tiny, settings, clock)
    with caplog.at_level(logging.DEBUG):
        assert Dispatcher(store, settings, clock).run_once().retrying == 1
    entry = store.read(outbox.list_outbox).items[0]
    assert entry.last_error and "json://***" in entry.last_error
    r = client.get("/api/v1/notify/outbox", headers=bearer(tiny.tokens["admin"]))
    assert r.status_code == 200
    assert r.json()["items"][0]["state"] == "queued"
    cli = subprocess.run(
        [sys.executable, "-m", "gridsync", "outbox", "--db", db_path, "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    gridsync_logs = "\n".join(
        r.getMessage() for r in caplog.records if r.name.startswith("gridsync")
    )
    for text in (entry.last_error, r.text, cli.stdout, gridsync_logs):
        assert secret not in text
    assert json.loads(cli.stdout)["items"][0]["attempts"] == 1


def test_outbox_api_shows_own_rows_to_non_admins(store, tiny, db_path, client):
    set_channels(store, "m1", ["json://127.0.0.1:9/x"])
    set_channels(store, "sec", ["json://127.0.0.1:9/y"])
    settings = quick_settings(db_path)
    raise_case(store, tiny, settings, FixedClock(T0))
    admin = client.get("/api/v1/notify/outbox?state=queued", headers=bearer(tiny.tokens["admin"]))
    m1 = client.get("/api/v1/notify/outbox", headers=bearer(tiny.tokens["m1"]))
    m2 = client.get("/api/v1/notify/outbox", headers=bearer(tiny.tokens["m2"]))
    assert admin.json()["total"] == 1  # the grid team: m1 (sec is not in grid:g1)
    assert [i["person_id"] for i in m1.json()["items"]] == ["m1"]
    assert m2.json()["total"] == 0
    bad = client.get("/api/v1/notify/outbox?state=lost", headers=bearer(tiny.tokens["admin"]))
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"


# -- digests ----------------------------------------------------------------------------------


def _assign(store, member: str, last_visits: dict[str, int | None]):
    """The member becomes responsible for each household, and visited it last at the time
    given (None: never), through the one writer of visits."""
    from gridsync import visits
    from gridsync.clock import iso_ms
    from gridsync.db import next_seq

    def write(db):
        for hid, last in last_visits.items():
            db.execute(
                "UPDATE households SET responsible_member_id = ? WHERE id = ?", [member, hid]
            )
            if last is None:
                continue
            grid = db.execute("SELECT grid_id FROM households WHERE id = ?", [hid]).fetchone()[0]
            row = (f"v-{hid}", hid, grid, member, None, iso_ms(last), last, "door", "[]", "")
            visits.insert(db, [visits.NewVisit(*row, None, next_seq(db), iso_ms(last))])

    store.write(write)


def test_daily_digest_priority_first_and_quiet_hours(store, tiny, db_path):
    settings = quick_settings(db_path)
    day = 86_400_000
    night = datetime(2026, 11, 24, 6, 30, tzinfo=timezone(timedelta(hours=8)))
    now = int(night.timestamp() * 1000)
    _assign(
        store,
        "m1",
        {
            "hh-g1-1": now - 8 * day,  # elderly_alone: priority cycle 7 days -> overdue
            "hh-g1-2": now - 31 * day,  # overdue
            "hh-g1-3": now - 28 * day,  # due within 3 days
            "hh-g1-4": now - 2 * day,  # fine
        },
    )
    with Receiver() as http:
        set_channels(store, "m1", [http.url()])
        clock = FixedClock(night)
        quiet = {"daily": 0, "weekly": 0, "conflicts": 0}
        assert run_once(store, settings, clock).digests == quiet  # quiet hours
        clock.set(night.replace(hour=8, minute=5))
        report = run_once(store, settings, clock)
        assert report.digests["daily"] == 1
        assert run_once(store, settings, clock).digests["daily"] == 0  # once a day
    assert len(http.received) == 1
    msg = http.received[0]
    assert msg["title"] == "【走访提醒】张伟，今天有2户逾期、1户待走访"
    lines = msg["message"].splitlines()
    assert lines[0] == "逾期未走访："
    assert lines[1].startswith("1. [重点] 3号楼1单元101 住户g11，您上次走访 11-16")
    assert lines[2].startswith("2. 3号楼1单元102 住户g12")
    assert lines[3] == "近期应走访："
    assert lines[4] == "1. 3号楼1单元103 住户g13，11-26 前"


def test_digest_held_until_quiet_hours_end(store, tiny, db_path):
    settings = quick_settings(db_path)
    clock = FixedClock(datetime(2026, 11, 24, 20, 59, tzinfo=timezone(timedelta(hours=8))))
    _assign(store, "m1", {"hh-g1-2": None})
    set_channels(store, "m1", ["json://127.0.0.1:9/never"])
    assert (
        store.write(
            lambda db: digests.daily_digests(
                db, now_ms=clock.now_ms(), settings=settings, router=Router(None)
            )
        )
        == 1
    )
    clock.advance(minutes=2)  # 21:01: quiet hours began before delivery
    result = Dispatcher(store, settings, clock).run_once()
    assert result.postponed == 1 and result.sent == 0
    entry = store.read(outbox.list_outbox).items[0]
    assert entry.next_attempt_at == "2026-11-25T00:00:00.000+00:00"  # 08:00 Beijing
    assert entry.attempts == 0


def test_weekly_coverage_digest_to_secretaries(store, tiny, db_path):
    settings = quick_settings(db_path)
    now = int(T0.timestamp() * 1000)
    _assign(store, "m1", {"hh-g1-1": now - 86_400_000, "hh-g1-2": None})
    with Receiver() as http:
        set_channels(store, "sec", [http.url("sec")])
        report = run_once(store, settings, FixedClock(T0))
        assert report.digests["weekly"] == 1
        assert run_once(store, settings, FixedClock(T0)).digests["weekly"] == 0
    assert len(http.received) == 1
    msg = http.received[0]
    assert msg["title"] == "【联系户周报】出头社区 2026-W48"
    assert "住户 8 户，已落实联系党员 2 户，未落实 6 户。" in msg["message"]
    # the roll-up's figures (tests/test_honest_figures.py): the 6 unassigned households are
    # "unassigned", not overdue as the digest's own SQL counted them until issue 14
    assert (
        "本周期已走访 1 户（12%），其中责任党员走访 1 户（12%）；逾期未走访 1 户，重点户逾期 0 户。"
        in msg["message"]
    )
    assert "联系户不足5户的党员 2 人" in msg["message"]


def test_digests_follow_the_communitys_own_policy(store, tiny, db_path):
    """A community that visits every 45 days (priority every 10) and expects 3 households per
    member: its digests count by that, not by the district's 30/7/5."""
    from gridsync import coverage
    from gridsync.audit import Actor

    settings = quick_settings(db_path)
    store.write(
        coverage.set_policy,
        settings,
        Actor.cli(),
        "c1",
        coverage.PolicyOverride(cycle_days=45, priority_cycle_days=10, min_households_per_member=3),
    )
    day = 86_400_000
    morning = datetime(2026, 11, 24, 8, 30, tzinfo=timezone(timedelta(hours=8)))
    now = int(morning.timestamp() * 1000)
    _assign(
        store,
        "m1",
        {
            "hh-g1-1": now - 8 * day,  # elderly_alone: due soon by the community's 10 days
            "hh-g1-2": now - 31 * day,  # overdue by the district's 30 days, not by 45
            "hh-g1-3": now - 43 * day,  # due within 3 days of the 45
            "hh-g1-4": now - 46 * day,  # overdue
        },
    )
    overdue, due, policy = store.read(digests.member_due, "m1", now, settings)
    assert [h.id for h in overdue] == ["hh-g1-4"]
    assert [h.id for h in due] == ["hh-g1-1", "hh-g1-3"]  # priority first
    assert (policy.cycle_days, policy.priority_cycle_days) == (45, 10)
    with Receiver() as http:
        set_channels(store, "m1", [http.url("m1")])
        set_channels(store, "sec", [http.url("sec")])
        digests_queued = run_once(store, settings, FixedClock(morning)).digests
        assert digests_queued == {"daily": 1, "weekly": 1, "conflicts": 0}
    daily, weekly = (
        next(m for m in http.received if m["title"].startswith(p))
        for p in ("【走访提醒】", "【联系户周报】")
    )
    assert daily["title"] == "【走访提醒】张伟，今天有1户逾期、2户待走访"
    assert (
        "重点户（独居老人、残疾、低保）每10天至少走访一次，其他户每45天至少一次。"
        in daily["message"]
    )
    assert "联系户不足3户的党员" in weekly["message"]
    # by the district's 30/7 days it would be 2 overdue and hh-g1-1 priority overdue
    assert (
        "本周期已走访 3 户（38%），其中责任党员走访 3 户（38%）；逾期未走访 1 户，重点户逾期 0 户。"
        in weekly["message"]
    )


def test_english_for_a_person_who_reads_english(store, tiny, db_path):
    settings = quick_settings(db_path)
    with Receiver() as http:
        set_channels(store, "m1", [http.url()], locale="en")
        raise_case(store, tiny, settings, FixedClock(T0))
        Dispatcher(store, settings, FixedClock(T0)).run_once()
    assert http.received[0]["title"] == "[Whistle] New case for 第一网格: 漏水"
    assert "Accept by 11-23 10:01" in http.received[0]["message"]


def test_templates_exist_for_every_kind_in_both_locales():
    kinds = {p.stem for p in (outbox.TEMPLATES / "zh-CN").glob("*.txt")}
    assert kinds == {p.stem for p in (outbox.TEMPLATES / "en").glob("*.txt")}
    assert {
        "whistle_raised",
        "whistle_near",
        "whistle_escalated",
        "whistle_closed",
        "digest_daily",
        "digest_weekly",
    } <= kinds
    assert msgspec.json.decode((outbox.TEMPLATES / "en" / "labels.json").read_bytes())["level"]


@pytest.mark.parametrize(
    "hour, quiet",
    [(20, False), (21, True), (23, True), (0, True), (7, True), (8, False), (12, False)],
)
def test_quiet_hours_wrap_midnight(hour, quiet):
    at = datetime(2026, 11, 24, hour, 30, tzinfo=timezone(timedelta(hours=8)))
    assert outbox.in_quiet_hours(int(at.timestamp() * 1000), (21, 8), "Asia/Shanghai") is quiet


@pytest.mark.parametrize(
    "url, secret",
    [
        ("wecombot://0123456789abcdef", "0123456789abcdef"),
        ("dingtalk://tok3n-abcdef/s3cret-xyz", "s3cret-xyz"),
        ("mailto://gridsync:hunter22@smtp.example.org?to=a@example.org", "hunter22"),
        ("json://127.0.0.1:8080/hooks/t0ken-123456", "t0ken-123456"),
    ],
)
def test_masking_hides_every_secret_part(url, secret):
    from gridsync.notify.dispatcher import url_secrets
    from gridsync.notify.routing import mask_text, mask_url

    assert secret not in mask_url(url)
    line = f"Failed to send to {url}; server said {secret} is wrong"
    assert secret not in mask_text(line, url_secrets(url))


def test_daily_digests_in_chunks_reach_every_member_once(store, tiny, db_path):
    settings = quick_settings(db_path)
    _assign(store, "m1", {"hh-g1-2": None})
    _assign(store, "m2", {"hh-g2-2": None})
    set_channels(store, "m1", ["json://127.0.0.1:9/m1"])
    set_channels(store, "m2", ["json://127.0.0.1:9/m2"])
    now = int(T0.timestamp() * 1000)
    router = Router(None)
    assert digests.run_daily(store, now_ms=now, settings=settings, router=router, chunk=1) == 2
    assert digests.run_daily(store, now_ms=now, settings=settings, router=router, chunk=1) == 0
    rows = store.read(outbox.list_outbox, kind="digest_daily").items
    assert sorted(r.person_id for r in rows) == ["m1", "m2"]


def test_many_messages_are_delivered_in_parallel_each_once(store, tiny, db_path):
    settings = quick_settings(db_path, delivery_workers=4)
    clock = FixedClock(T0)
    with Receiver(fail_first=3) as http:
        set_channels(store, "m1", [http.url("m1")])
        for i in range(12):
            raise_case(store, tiny, settings, clock, case_id=f"case-{i}")
        dispatcher = Dispatcher(store, settings, clock)
        first = dispatcher.run_once()
        assert (first.sent, first.retrying) == (9, 3)
        clock.advance(minutes=1)
        assert dispatcher.run_once().sent == 3
    assert sorted(m["message"].rsplit("：", 1)[-1] for m in http.received) == sorted(
        f"case-{i}" for i in range(12)
    )
    assert store.read(outbox.counts) == {"sent": 12}
    retried = [e for e in store.read(outbox.list_outbox).items if e.attempts == 2]
    assert len(retried) == 3 and all("500" in e.last_error for e in retried)


def test_the_actor_is_not_told_of_their_own_action(store, tiny, db_path):
    set_channels(store, "m1", ["json://127.0.0.1:9/m1"])
    raise_case(store, tiny, quick_settings(db_path), FixedClock(T0), person_id="m1")
    assert store.read(outbox.counts) == {}  # m1 is the grid's whole team, and raised it


# -- Apprise's own log lines, and channel URLs checked when they are saved ----------------------

MAIL_PASSWORD = "Sm7pPassw0rd42"
HOOK_PASSWORD = "Js0nPassw0rd77"
HOOK_TOKEN = "hook-T0kenABCDEF"
WECOM_KEY = "0123456789abcdef-wecom"
DINGTALK_SECRET = "d1ngS3cret9"
DINGTALK_TOKEN = "t0ken0123456789abcdef"


def _leaks(records, secrets) -> list[str]:
    """Secrets (or any URL not masked to ``scheme://***``) in what the records would log."""
    found = []
    for record in records:
        text = record.getMessage() + (record.exc_text or "")
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        found += [f"{record.name}: {s}" for s in secrets if s in text]
        if re.search(r"://(?!\*\*\*)", text):
            found.append(f"{record.name}: unmasked URL in {text!r}")
    return found


def test_apprise_log_lines_never_carry_a_secret(store, tiny, db_path, tmp_path, caplog):
    """Real deliveries (an HTTP receiver failing once then taking it, an SMTP server with
    AUTH taking it, one refusing the connection) and a real Apprise config file: every log
    record, Apprise's and urllib3's at DEBUG included, is masked."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"gridsync" and auth_data.password == MAIL_PASSWORD.encode()
        return AuthResult(success=ok)

    settings = quick_settings(db_path, max_attempts=3)
    clock = FixedClock(T0)
    sink = SmtpSink()
    port, closed = free_port(), free_port()
    smtp = Controller(
        sink,
        hostname="127.0.0.1",
        port=port,
        authenticator=authenticate,
        auth_require_tls=False,
    )
    config = tmp_path / "apprise.yml"
    config.write_text(
        "version: 1\nurls:\n"
        f"  - wecombot://{WECOM_KEY}:\n      - tag: community:c1:secretary\n"
        # the secret in the path: Apprise takes it for a phone number, drops it, and says so
        f"  - dingtalk://{DINGTALK_TOKEN}/{DINGTALK_SECRET}:\n      - tag: street:s1:duty\n"
        f"  - dingtalk://{DINGTALK_SECRET}@{DINGTALK_TOKEN}/:\n      - tag: district:d1:duty\n",
        "utf-8",
    )
    mail = "?from=gridsync@example.org&to=m1@example.org&mode=insecure"
    smtp.start()
    try:
        with Receiver(fail_first=1) as http, caplog.at_level(logging.DEBUG):
            hook = f"json://user:{HOOK_PASSWORD}@127.0.0.1:{http.port}/{HOOK_TOKEN}"
            set_channels(
                store,
                "m1",
                [
                    hook,
                    f"mailto://gridsync:{MAIL_PASSWORD}@127.0.0.1:{port}{mail}",
                    f"mailto://gridsync:{MAIL_PASSWORD}@127.0.0.1:{closed}{mail}",  # refused
                ],
            )
            raise_case(store, tiny, settings, clock, person_id="admin")
            first = Dispatcher(store, settings, clock).run_once()
            clock.advance(minutes=5)
            second = Dispatcher(store, settings, clock).run_once()
            router = Router(str(config))
            assert router.config_urls("street:s1:duty") and router.problems == []  # all read
    finally:
        smtp.stop()
    assert (first.retrying, second.retrying) == (1, 1)  # the closed port fails every time
    assert len(http.received) == 1 and http.failed == 1 and len(sink.messages) == 1
    apprise_records = [r for r in caplog.records if r.name == "apprise"]
    assert len(apprise_records) >= 10  # Apprise did log (its URLs, posts, errors)
    assert any(r.name.startswith("urllib3") for r in caplog.records)
    secrets = [MAIL_PASSWORD, HOOK_PASSWORD, HOOK_TOKEN, WECOM_KEY, DINGTALK_SECRET, DINGTALK_TOKEN]
    assert _leaks(caplog.records, secrets) == []
    errors = [row.last_error for row in store.read(outbox.list_outbox).items if row.last_error]
    assert errors and not any(s in e for e in errors for s in secrets)


@pytest.mark.parametrize(
    "url",
    [
        "bogus://x",
        "json://",
        "wecombot://",
        "mailto://",
        "not a url",
        "",
        "http://example.org/hook",  # Apprise speaks json:// to plain web hooks
    ],
)
def test_a_channel_apprise_cannot_read_is_refused_when_saved(store, tiny, client, url, caplog):
    """``PUT /api/v1/people/{id}``: a 400 naming the bad URL's place, nothing stored, and no
    error in the server's log (the mistake is the client's, and its answer says so)."""
    h = bearer(tiny.tokens["admin"])
    body = {"name": "改了名", "roles": ["member"], "scope": ["g1"], "branch_id": "b1"}
    with caplog.at_level(logging.DEBUG):
        r = client.put(
            "/api/v1/people/m1",
            json={**body, "channels": ["json://127.0.0.1:9/m1-hook", url]},
            headers=h,
        )
    assert r.status_code == 400, r.text
    assert (r.json()["code"], r.json()["field"]) == ("invalid_channel", "$.channels[1]")
    assert "channels[1]" in r.json()["message"]
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING] == []

    def stored(db):
        return db.execute("SELECT name, channels FROM people WHERE id = 'm1'").fetchone()

    assert store.read(stored) == ("张伟", "[]")


def test_a_channel_is_checked_by_the_cli_too_and_good_ones_pass(store, tiny, client, db_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridsync",
            "people",
            "add",
            "--db",
            db_path,
            "p9",
            "--name",
            "新党员",
            "--role",
            "member",
            "--scope",
            "g1",
            "--channel",
            "json://127.0.0.1:9/ok",
            "--channel",
            f"bogus://{WECOM_KEY}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert (
        r.stderr.splitlines()
        == [line for line in r.stderr.splitlines() if line.startswith("Error: invalid_channel: ")]
        and len(r.stderr.splitlines()) == 1
    )
    assert "channels[1]" in r.stderr and WECOM_KEY not in r.stderr + r.stdout
    h = bearer(tiny.tokens["admin"])
    assert client.get("/api/v1/people/p9", headers=h).status_code == 404  # not saved
    good = [
        f"wecombot://{WECOM_KEY}",
        f"dingtalk://{DINGTALK_SECRET}@{DINGTALK_TOKEN}",
        "feishu://TOKEN1234",
        f"mailto://gridsync:{MAIL_PASSWORD}@smtp.example.org?to=duty@example.org",
        "json://127.0.0.1:9/ok",
    ]
    body = {"name": "张伟", "roles": ["member"], "scope": ["g1"], "branch_id": "b1"}
    r = client.put("/api/v1/people/m1", json={**body, "channels": good}, headers=h)
    assert r.status_code == 200, r.text
    too_many = client.put(
        "/api/v1/people/m1", json={**body, "channels": ["json://127.0.0.1:9/x"] * 11}, headers=h
    )
    # The count is a bound of the wire type, refused before any URL is parsed.
    assert too_many.status_code == 400 and too_many.json()["field"] == "channels"


@pytest.mark.parametrize(
    "entries, problem",
    [
        ("  - bogus://s3cr3t-thing:\n      - tag: a\n", "entry #"),
        ("  - wecombot://:\n      - tag: a\n", "entry #"),
        ("  - [\n", "YAML"),
    ],
)
def test_serve_and_sweep_refuse_an_apprise_config_they_cannot_read(
    store, tmp_path, db_path, entries, problem
):
    config = tmp_path / "apprise.yml"
    config.write_text("version: 1\nurls:\n  - json://127.0.0.1:9/ok:\n      - tag: a\n" + entries)
    settings = tmp_path / "gridsync.toml"
    settings.write_text(f'[notify]\napprise_config = "{config}"\n')
    for command in (["sweep", "--no-dispatch"], ["serve", "--port", "0"]):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "gridsync",
                *command,
                "--db",
                db_path,
                "--config",
                str(settings),
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1, (command, r.stdout, r.stderr)
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: invalid_channel: "), r.stderr
        assert problem in lines[0] and "s3cr3t-thing" not in lines[0], lines[0]
    missing = tmp_path / "gridsync-missing.toml"
    missing.write_text(f'[notify]\napprise_config = "{tmp_path / "nope.yml"}"\n')
    r = subprocess.run(
        [sys.executable, "-m", "gridsync", "sweep", "--db", db_path, "--config", str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and "no such file" in r.stderr, r.stderr


def test_redaction_masks_tracebacks_and_survives_bad_format_strings(caplog):
    from gridsync.notify.routing import REDACTION

    url = f"json://user:{HOOK_PASSWORD}@127.0.0.1:9/{HOOK_TOKEN}"
    with caplog.at_level(logging.DEBUG), REDACTION.guard([url]) as notes:
        try:
            raise ValueError(f"cannot post to {url} with {HOOK_TOKEN}")
        except ValueError:
            logging.getLogger("apprise").exception("failed: %s", HOOK_PASSWORD)
        logging.getLogger("apprise").info("a plugin's bad format %s %s", "one")
    handler_text = caplog.text  # what a handler with a formatter writes
    assert "Traceback" in handler_text and "ValueError" in handler_text
    assert HOOK_PASSWORD not in handler_text and HOOK_TOKEN not in handler_text
    assert "a plugin's bad format" in handler_text
    assert [level for level, _ in notes] == [logging.ERROR]

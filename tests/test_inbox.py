"""The inbox (issue 17): every notification to a person is a notice they pull, whether or not
they have a channel; ``notice.read`` marks it read for them alone; ``gridsync report
unreachable`` names who nothing else reaches; values lost in merges reach the community
secretary's daily digest and inbox; notices are pruned with the kept state.

Real parts: the real app (litestar's TestClient), the reference client, a real SQLite file,
Apprise delivering to a real local HTTP receiver."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import msgspec
from click.testing import CliRunner

from gridsync import auth, digests, retention, whistle
from gridsync.cli import cli
from gridsync.clock import DAY_MS, FixedClock
from gridsync.models import MAX_NOTICE_BODY, MAX_NOTICE_TITLE, Notice, WhistleRaise
from gridsync.notify import inbox, outbox
from gridsync.notify.dispatcher import Dispatcher
from gridsync.notify.routing import Router
from gridsync.sync.client import DeviceClient
from gridsync.sync.hlc import format_hlc
from tests.conftest import CLI
from tests.sync_helpers import Phone
from tests.test_notify import Receiver, quick_settings, set_channels

CHINA = timezone(timedelta(hours=8))


def raise_case(store, tiny, settings, now_ms: int, case_id: str = "case-1") -> None:
    """The community secretary raises a case on grid g1: the grid's team (m1) is alerted."""
    data = WhistleRaise(category="漏水", grid_id="g1", location="3号楼", description="水管破裂")
    principal = store.read(auth.authenticate, tiny.tokens["sec"])
    store.write(whistle.raise_case, principal, case_id, data, received_ms=now_ms, settings=settings)


def device(client, tiny, person: str, device_id: str | None = None, token: str | None = None):
    return DeviceClient(
        client,
        token=token or tiny.tokens[person],
        device_id=device_id or tiny.devices[person],
        person_id=person,
    )


def notice_rows(store, person_id: str) -> list[tuple]:
    return store.read(
        lambda db: db.execute(
            "SELECT id, kind, read_ms, link FROM notices WHERE person_id = ? ORDER BY id",
            [person_id],
        ).fetchall()
    )


def test_a_notice_reaches_a_person_without_a_channel_and_a_push_marks_it_read(
    client, tiny, store, settings
):
    now = FixedClock(datetime.now(CHINA)).now_ms()
    raise_case(store, tiny, settings, now)
    # m1 has no channel: nothing is queued for delivery to them, but the notice is there
    outbox_rows = store.read(outbox.list_outbox, person_id="m1")
    assert outbox_rows.total == 0
    phone = device(client, tiny, "m1")
    phone.sync()
    [notice] = phone.notices()
    assert notice["kind"] == "whistle_raised"
    assert notice["title"] == "【吹哨】第一网格有新案件：漏水"
    assert "水管破裂" in notice["body"]
    assert notice["link"] == "/console/cases/case-1"
    assert notice["read_at"] is None
    assert phone.notices(unread=True) == [notice]

    queued = phone.mark_notice_read(notice["id"])
    assert phone.notices(unread=True) == []  # the view shows it read before the push
    report = phone.sync()
    assert report.push.applied == 1 and phone.rejected() == []
    [(_, _, read_ms, _)] = notice_rows(store, "m1")
    assert read_ms is not None
    assert phone.notices()[0]["read_at"] is not None  # the server's copy, pulled back
    assert phone.pending() == [] and queued.op == "notice.read"

    # another phone of the same person learns it was read
    second = store.write(auth.enroll, "m1", CLI, device_id="dev-m1-b")
    other = device(client, tiny, "m1", device_id="dev-m1-b", token=second.token)
    other.sync()
    assert [n["read_at"] for n in other.notices()] == [phone.notices()[0]["read_at"]]
    # marking it again changes nothing
    other.mark_notice_read(notice["id"])
    assert other.sync().push.duplicate == 1
    assert notice_rows(store, "m1")[0][2] == read_ms


def test_the_raiser_is_not_told_and_a_rerun_cause_writes_no_second_notice(
    client, tiny, store, settings
):
    now = FixedClock(datetime.now(CHINA)).now_ms()
    raise_case(store, tiny, settings, now)
    assert notice_rows(store, "sec") == []  # the raiser's own action
    router = Router(None)
    for _ in range(2):
        store.write(
            lambda db: outbox.enqueue(
                db,
                router,
                event_key="test:once",
                kind="whistle_raised",
                tags=["member:m2"],
                context=lambda locale: {
                    **whistle._context(db, "case-1", settings)(locale),
                    "description": "长" * (MAX_NOTICE_BODY + 500),
                },
                now_ms=now,
            )
        )
    [(notice_id, kind, _, link)] = notice_rows(store, "m2")
    assert (kind, link) == ("whistle_raised", None)  # no cause: no case to link to
    body = store.read(
        lambda db: db.execute("SELECT body FROM notices WHERE id = ?", [notice_id]).fetchone()[0]
    )
    assert len(body) == MAX_NOTICE_BODY  # cut to the wire type's bound when written


def test_another_persons_notice_is_neither_pulled_nor_marked(client, tiny, store, settings):
    now = FixedClock(datetime.now(CHINA)).now_ms()
    raise_case(store, tiny, settings, now)
    [(m1_notice, *_)] = notice_rows(store, "m1")
    # the admin's scope is the whole district, yet their inbox is their own
    for person in ("m2", "admin"):
        phone = device(client, tiny, person)
        phone.sync()
        assert phone.notices() == []
    m2 = Phone(client, tiny.tokens["m2"], tiny.devices["m2"])
    results = m2.push(
        [
            m2.mutation("notice.read", str(m1_notice)),
            m2.mutation("notice.read", "999999"),
            m2.mutation("notice.read", "not-a-number"),
            m2.mutation("notice.read", str(m1_notice), data={"notice_id": "424242"}),
            m2.mutation("notice.read", str(m1_notice), data={"notice_id": "x" * 21}),
        ]
    ).json()["results"]
    assert [(r["status"], r.get("code")) for r in results] == [
        ("rejected", "not_your_notice"),
        ("rejected", "unknown_notice"),
        ("rejected", "unknown_notice"),
        ("rejected", "validation_error"),
        ("rejected", "validation_error"),
    ]
    assert notice_rows(store, "m1")[0][2] is None  # still unread


def test_phones_receive_the_last_30_days_of_notices(client, tiny, store, settings):
    now = FixedClock(datetime.now(CHINA)).now_ms()
    raise_case(store, tiny, settings, now - 31 * DAY_MS, case_id="old")
    raise_case(store, tiny, settings, now - 29 * DAY_MS, case_id="recent")
    phone = device(client, tiny, "m1")
    phone.sync()
    assert [n["link"] for n in phone.notices()] == ["/console/cases/recent"]


def test_the_reference_client_drops_notices_past_the_30_days(client, tiny, store, settings):
    start = datetime.now(CHINA)
    now = FixedClock(start).now_ms()
    raise_case(store, tiny, settings, now - 29 * DAY_MS, case_id="older")
    raise_case(store, tiny, settings, now - DAY_MS, case_id="newer")
    clock = FixedClock(start)
    phone = DeviceClient(
        client, token=tiny.tokens["m1"], device_id=tiny.devices["m1"], person_id="m1", clock=clock
    )
    phone.sync()
    assert len(phone.notices()) == 2
    clock.set(start + timedelta(days=2))  # two days on, the older one is past the 30 days
    phone.pull()
    assert [n["link"] for n in phone.notices()] == ["/console/cases/newer"]


def test_notices_are_pruned_with_the_kept_state(tiny, store, settings):
    now = FixedClock(datetime.now(CHINA)).now_ms()
    raise_case(store, tiny, settings, now - 200 * DAY_MS, case_id="old")
    raise_case(store, tiny, settings, now - DAY_MS, case_id="recent")
    report = retention.prune(store, now_ms=now, keep_days=180)
    assert report.notices == 1  # m1's notice of the old case
    assert [r[3] for r in notice_rows(store, "m1")] == ["/console/cases/recent"]


def test_a_person_with_a_channel_gets_both_the_message_and_the_notice(tiny, store, db_path):
    settings = quick_settings(db_path)
    clock = FixedClock(datetime.now(CHINA))
    with Receiver() as http:
        set_channels(store, "m1", [http.url()])
        raise_case(store, tiny, settings, clock.now_ms())
        Dispatcher(store, settings, clock).run_once()
    assert [m["title"] for m in http.received] == ["【吹哨】第一网格有新案件：漏水"]
    notices, total = store.read(inbox.list_notices, "m1")
    assert total == 1 and notices[0].title == http.received[0]["title"]
    assert notices[0].body == http.received[0]["message"]


def test_a_member_without_a_channel_finds_the_daily_digest_in_the_inbox(tiny, store, settings):
    morning = datetime.now(CHINA).replace(hour=9, minute=0, second=0, microsecond=0)
    now = FixedClock(morning).now_ms()
    store.write(
        lambda db: db.execute(
            "UPDATE households SET responsible_member_id = 'm1', last_visit_ms = NULL "
            "WHERE id = 'hh-g1-2'"
        )
    )
    router = Router(None)
    queued = store.write(
        lambda db: digests.daily_digests(db, now_ms=now, settings=settings, router=router)
    )
    assert queued == 0  # m1 has no channel: nothing to deliver (it used to end there)
    [(_, kind, read_ms, link)] = notice_rows(store, "m1")
    assert (kind, read_ms, link) == ("digest_daily", None, "/console/households")
    [notice], _ = store.read(inbox.list_notices, "m1", unread=True)
    assert notice.title == "【走访提醒】张伟，今天有1户逾期、0户待走访"


def test_report_unreachable_lists_who_nothing_reaches(tiny, store, db_path, tmp_path):
    def revoke(device_id: str) -> None:
        store.write(auth.revoke, device_id, CLI)

    revoke(tiny.devices["m2"])  # m2: member, no channel, phone revoked -> unreachable
    revoke(tiny.devices["sec"])  # sec: a channel of her own -> reached
    set_channels(store, "sec", ["json://127.0.0.1:9/hook"])
    revoke(tiny.devices["resp"])  # resp: the config file routes dept:dept1 -> reached
    config = tmp_path / "apprise.yml"
    config.write_text("urls:\n  - json://127.0.0.1:9/dept:\n      tag: dept:dept1\n")
    settings_file = tmp_path / "gridsync.toml"
    settings_file.write_text(f'[notify]\napprise_config = "{config}"\n')
    store.write(  # an instructor gets no alerts: never listed
        lambda db: db.execute(
            "INSERT INTO people (id, name, roles, seq, created_at) "
            "VALUES ('ins', '刘指导员', '[\"instructor\"]', 0, '2026-01-01')"
        )
    )

    def run(*args: str) -> str:
        result = CliRunner().invoke(
            cli, ["report", "unreachable", "--db", db_path, "--config", str(settings_file), *args]
        )
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = json.loads(run("--json"))
    assert listed == [
        {"id": "m2", "name": "李娜", "roles": ["member"], "scope": ["g2"], "devices_revoked": 1}
    ]
    assert run().startswith("m2\t李娜\tmember\tg2")
    # m1's one device is the only thing that reaches them: revoked, m1 is listed too
    revoke(tiny.devices["m1"])
    assert [p["id"] for p in json.loads(run("--json"))] == ["m1", "m2"]
    # without the config file, the department responder is unreachable as well
    plain = CliRunner().invoke(cli, ["report", "unreachable", "--db", db_path, "--json"])
    assert [p["id"] for p in json.loads(plain.stdout)] == ["m1", "m2", "resp"]


def _lose_values(client, tiny, store) -> None:
    """Two phones edit household hh-g1-1 offline from the same base: m1's later edit wins the
    notes and the phone; the secretary's values are lost (and in the conflict log)."""
    base = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'hh-g1-1'").fetchone()[0]
    )
    sec = Phone(client, tiny.tokens["sec"], tiny.devices["sec"])
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    late = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860005000, 0, "dev-m1"),
        fields={"notes": "腿脚不便\n需上门", "phone": "13700000002"},
    )
    early = sec.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=base,
        hlc=format_hlc(1763860000000, 0, "dev-sec"),
        fields={"notes": "独居", "phone": "13700000001"},
    )
    assert m1.push([late]).json()["results"][0]["status"] == "applied"
    assert sec.push([early]).json()["results"][0]["status"] == "merged"


def test_values_lost_in_merges_reach_the_secretarys_daily_digest_and_inbox(
    client, tiny, store, settings
):
    _lose_values(client, tiny, store)
    tomorrow = datetime.now(CHINA) + timedelta(days=1)
    at_10 = FixedClock(tomorrow.replace(hour=10, minute=0, second=0, microsecond=0)).now_ms()
    router = Router(None)

    def run(now_ms: int) -> int:
        return store.write(
            lambda db: digests.conflict_digests(db, now_ms=now_ms, settings=settings, router=router)
        )

    at_6 = at_10 - 4 * 3_600_000
    assert run(at_6) == 0  # before the daily digest's hour (and in quiet hours): nothing
    assert notice_rows(store, "sec") == []
    assert run(at_10) == 0  # sec has no channel: nothing to deliver, but the inbox has it
    [(_, kind, _, link)] = notice_rows(store, "sec")
    assert (kind, link) == ("digest_conflicts", "/console")
    [notice], _ = store.read(inbox.list_notices, "sec")
    assert notice.title == "【合并丢失】出头社区：2 个被覆盖的值待核对"
    assert "3号楼1单元101 住户g11：备注「独居」被「腿脚不便 需上门」覆盖（王书记 提交）" in (
        notice.body
    )
    assert "电话「（号码不在通知中显示）」" in notice.body
    assert "1370000000" not in notice.body  # notification texts carry no phone numbers
    assert "本社区共有 2 个待处理的冲突" in notice.body
    # once a day; the next day's digest holds only what was lost since
    assert run(at_10 + 3_600_000) == 0
    assert run(at_10 + DAY_MS) == 0
    assert len(notice_rows(store, "sec")) == 1
    # the members of the grid do not get it: it is the secretary's
    assert [r[1] for r in notice_rows(store, "m1")] == []


def test_the_lost_values_digest_is_delivered_in_english_too(client, tiny, store, db_path):
    settings = quick_settings(db_path)
    _lose_values(client, tiny, store)
    tomorrow = datetime.now(CHINA) + timedelta(days=1)
    clock = FixedClock(tomorrow.replace(hour=10, minute=0, second=0, microsecond=0))
    with Receiver() as http:
        set_channels(store, "sec", [http.url()], locale="en")
        report = digests_run(store, settings, clock)
        assert report == 1
        Dispatcher(store, settings, clock).run_once()
    [message] = [m for m in http.received if m["title"].startswith("[Lost in merges]")]
    assert message["title"] == "[Lost in merges] 出头社区: 2 overwritten values to check"
    assert 'notes "独居" lost to "腿脚不便 需上门" (sent by 王书记)' in message["message"]
    assert "1370000000" not in message["message"]


def digests_run(store, settings, clock) -> int:
    from gridsync.sweep import run_once

    return run_once(store, settings, clock, dispatch=False).digests["conflicts"]


def test_notice_wire_type_bounds_what_a_phone_receives():
    props = msgspec.json.schema(Notice)["$defs"]["Notice"]["properties"]
    assert props["body"]["maxLength"] == MAX_NOTICE_BODY
    assert props["title"]["maxLength"] == MAX_NOTICE_TITLE

"""Retention: done notifications and old sync tombstones are forgotten, and what that costs is
honest: cursors from before a forgotten move reset, and edits dated before the forgotten history
cannot claim an earlier scope."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import gridsync
from gridsync import retention
from gridsync.clock import FixedClock, iso_ms
from gridsync.sweep import run_once
from tests.sync_helpers import Phone

DAY = 86_400_000
REPO = Path(gridsync.__file__).resolve().parent.parent


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def phone(client, tiny, person: str) -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def seq_of(store, hid: str) -> int:
    return store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = ?", [hid]).fetchone()[0]
    )


def add_outbox(store, key: str, state: str, created_ms: int) -> None:
    store.write(
        lambda db: db.execute(
            "INSERT INTO outbox (dedup_key, kind, recipient, locale, title, body, state, "
            "next_attempt_ms, created_ms) VALUES (?, 'digest_daily', 'member:m1', 'zh-CN', 't', "
            "'b', ?, ?, ?)",
            [key, state, created_ms, created_ms],
        )
    )


def outbox_keys(store) -> set[str]:
    return {r[0] for r in store.read(lambda db: db.execute("SELECT dedup_key FROM outbox"))}


def test_done_notifications_older_than_the_period_are_forgotten(store, tiny):
    now = now_ms()
    add_outbox(store, "old-sent", "sent", now - 200 * DAY)
    add_outbox(store, "old-failed", "failed", now - 181 * DAY)
    add_outbox(store, "old-queued", "queued", now - 200 * DAY)  # not done: kept
    add_outbox(store, "recent-sent", "sent", now - 10 * DAY)
    store.write(
        lambda db: db.execute(
            "INSERT INTO notify_runs (key, at_ms) VALUES "
            "('digest:daily:2026-01-01', ?), ('digest:daily:x', ?)",
            [now - 300 * DAY, now - DAY],
        )
    )
    report = retention.prune(store, now_ms=now, keep_days=180)
    assert (report.outbox, report.notify_runs) == (2, 1)
    assert outbox_keys(store) == {"old-queued", "recent-sent"}
    audit = store.read(
        lambda db: db.execute(
            "SELECT device_id, detail FROM audit_log WHERE action = 'retention.prune'"
        ).fetchall()
    )
    assert audit[0][0] == "sweep" and json.loads(audit[0][1])["outbox"] == 2


def test_a_forgotten_move_resets_older_cursors_and_old_edits_cannot_claim_the_old_scope(
    client, tiny, store
):
    m1, sec = phone(client, tiny, "m1"), phone(client, tiny, "sec")
    m1.pull_all()
    old_cursor = m1.cursor
    move = sec.mutation(
        "household.update", "hh-g1-3", base_seq=seq_of(store, "hh-g1-3"), fields={"grid_id": "g2"}
    )
    assert sec.push([move]).json()["results"][0]["status"] == "applied"
    # The move is 200 days old by the time the server prunes (as if the phone stayed offline).
    store.write(lambda db: db.execute("UPDATE household_moves SET at_ms = at_ms - ?", [200 * DAY]))
    before = store.read(retention.horizon_ms)
    assert before == 0
    report = retention.prune(store, now_ms=now_ms(), keep_days=180)
    assert report.household_moves == 1 and report.horizon_seq == seq_of(store, "hh-g1-3")
    # The phone's cursor predates the forgotten move: it re-syncs instead of missing a remove.
    assert m1.pull_page(old_cursor)["reset"] is True
    # It moves back (kept: recent). An edit by g2's member dated before the forgotten move
    # would find only the move back (from g2) and pass as "made while in g2": it cannot prove
    # that, the history before the horizon is gone.
    back = sec.mutation(
        "household.update", "hh-g1-3", base_seq=seq_of(store, "hh-g1-3"), fields={"grid_id": "g1"}
    )
    assert sec.push([back]).json()["results"][0]["status"] == "applied"
    m2 = phone(client, tiny, "m2")  # enrolled long ago and offline since
    store.write(
        lambda db: db.execute(
            "UPDATE devices SET created_at = ? WHERE id = ?",
            [iso_ms(report.cutoff_ms - 2 * DAY), m2.device_id],
        )
    )
    m2.now_ms = report.cutoff_ms - DAY
    stale = m2.mutation(
        "household.update",
        "hh-g1-3",
        base_seq=seq_of(store, "hh-g1-3"),
        fields={"notes": "very old"},
    )
    answer = m2.push([stale])
    assert answer.status_code == 200, answer.text
    assert answer.json()["results"][0].get("code") == "out_of_scope", answer.json()
    # Households in scope are edited whatever the edit's age.
    mine = m1.mutation(
        "household.update",
        "hh-g1-1",
        base_seq=seq_of(store, "hh-g1-1"),
        hlc=m1.hlc(report.cutoff_ms - DAY),
        fields={"notes": "old but mine"},
    )
    assert m1.push([mine]).json()["results"][0]["status"] in ("applied", "merged")


def test_the_periodic_work_prunes_once_a_day(store, tiny, db_path):
    from gridsync.config import Settings

    settings = Settings(db=db_path)
    now = now_ms()
    add_outbox(store, "old-sent", "sent", now - 400 * DAY)
    clock = FixedClock(now)
    first = run_once(store, settings, clock, dispatch=False)
    assert first.pruned is not None and first.pruned.outbox == 1
    add_outbox(store, "old-sent-2", "sent", now - 400 * DAY)
    assert run_once(store, settings, clock, dispatch=False).pruned is None  # done today
    clock.advance(minutes=24 * 60)
    assert run_once(store, settings, clock, dispatch=False).pruned.outbox == 1


def test_prune_command(store, tiny, db_path):
    add_outbox(store, "old-sent", "sent", now_ms() - 40 * DAY)
    store.close()
    args = [sys.executable, "-m", "gridsync", "prune", "--db", db_path]
    refused = subprocess.run([*args, "--keep-days", "3"], cwd=REPO, capture_output=True, text=True)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    done = subprocess.run(
        [*args, "--keep-days", "30", "--json"], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout)["outbox"] == 1
    text = subprocess.run([*args], cwd=REPO, capture_output=True, text=True, check=True)
    assert "0 notifications" in text.stdout

"""Cold start and the long admin jobs (issue 15): the day's digests run as many short write
transactions, never one long one; ``gridsync sweep`` shows a progress bar on a terminal and
nothing of it when piped or with ``--json``. The figures are in bench/README.md
(``python -m bench coldstart export``)."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import gridsync
from gridsync import digests, localtime
from gridsync.config import NotifySettings, Settings
from gridsync.notify import outbox
from gridsync.notify.routing import Router, people_for_tag

ROOT = Path(gridsync.__file__).resolve().parent.parent
NOW = localtime.operator_ms("2026-12-07T10:00")  # a Monday, 10:00 in China
DUE = NotifySettings(quiet_hours=(0, 0), daily_digest_hour=0)  # digests due at any hour


def _channels_and_members(store, tiny) -> None:
    """Every person reachable; m1 and m2 responsible for the households of their grid."""

    def write(db):
        db.execute("UPDATE people SET channels = ?", ['["json://127.0.0.1:9/x"]'])
        for person, grid in (("m1", "g1"), ("m2", "g2")):
            db.execute(
                "UPDATE households SET responsible_member_id = ? WHERE grid_id = ?", [person, grid]
            )

    store.write(write)


def test_digests_run_in_chunks_each_its_own_short_transaction(store, tiny, db_path):
    _channels_and_members(store, tiny)
    settings = Settings(db=db_path, notify=DUE)
    router = Router(None)
    steps: list[tuple[str, int]] = []
    advanced: list[int] = []

    def bars(label: str, total: int):
        steps.append((label, total))
        return advanced.append

    before = store.commits
    weekly = digests.run_weekly(
        store, now_ms=NOW, settings=settings, router=router, chunk=1, steps=bars
    )
    # b1, b2 and c1 one write each, then the (empty) chunk that finds no more, then the mark
    assert weekly == 1 and store.commits - before == 5  # c1 has a secretary, b1 and b2 none
    daily = digests.run_daily(store, now_ms=NOW, settings=settings, router=router, chunk=1)
    assert daily == 2
    assert steps == [("weekly digests", 3)] and sum(advanced) >= 3
    # done for the week and the day: a second run (a restart, the CLI's sweep) queues nothing
    assert digests.run_weekly(store, now_ms=NOW, settings=settings, router=router) == 0
    assert digests.run_daily(store, now_ms=NOW, settings=settings, router=router) == 0
    page = store.read(outbox.list_outbox, limit=100)
    keys = [e.dedup_key for e in page.items]
    assert len(keys) == len(set(keys)) == page.total
    assert {e.kind for e in page.items} == {"digest_daily", "digest_weekly"}


def test_people_for_tag_reads_the_same_people_through_the_indexes(store, tiny):
    """The rewritten lookups (candidates from people.branch_id and person_scope.unit_id) give
    what the rule says: the grid's team, a unit's holders of the role."""

    def ask(tag: str) -> list[str]:
        return store.read(people_for_tag, tag)

    assert ask("grid:g1") == ["m1"] and ask("grid:g2") == ["m2"]
    assert ask("community:c1:secretary") == ["sec"]
    assert ask("district:d1:duty") == ["admin"]
    assert ask("dept:dept1") == ["resp"]
    assert ask("branch:b1:secretary") == [] and ask("grid:nowhere") == []


def _sweep(db_path: str, config: Path, *extra: str, tty: bool) -> tuple[str, str]:
    args = ["sweep", "--db", db_path, "--config", str(config)]
    return _gridsync(*args, "--no-dispatch", "--now", "2026-12-07T10:00", *extra, tty=tty)


def _gridsync(*argv: str, tty: bool) -> tuple[str, str]:
    """stdout and stderr of ``python -m gridsync ARGV``, its stderr a terminal (a pty) or a
    pipe."""
    args = [sys.executable, "-m", "gridsync", *argv]
    if not tty:
        done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout, done.stderr
    master, slave = pty.openpty()
    try:
        done = subprocess.run(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True, timeout=60
        )
    finally:
        os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed and everything was read
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert done.returncode == 0
    return done.stdout, b"".join(chunks).decode()


def test_sweep_shows_progress_on_a_terminal_only(store, tiny, db_path, tmp_path):
    _channels_and_members(store, tiny)
    config = tmp_path / "gridsync.toml"
    config.write_text("[notify]\nquiet_hours = [0, 0]\ndaily_digest_hour = 0\n")
    out, err = _sweep(db_path, config, tty=True)
    assert "daily digests" in err and "weekly digests" in err and "100%" in err
    assert out.startswith("sweep at 2026-12-07 10:00: ") and "digests daily 2, weekly 1" in out
    store.write(lambda db: db.execute("DELETE FROM notify_runs"))
    out, err = _sweep(db_path, config, tty=False)  # piped: the result alone
    assert "digests" not in err and out.startswith("sweep at 2026-12-07 10:00: ")
    store.write(lambda db: db.execute("DELETE FROM notify_runs"))
    out, err = _sweep(db_path, config, "--json", tty=True)  # --json on a terminal: no bar
    assert "digests" not in err and json.loads(out)["digests"] == {
        "daily": 0,
        "weekly": 0,
        "conflicts": 0,
    }


def test_backup_shows_the_copy_and_the_check_on_a_terminal_only(store, tiny, db_path, tmp_path):
    out, err = _gridsync("backup", "--db", db_path, "-o", str(tmp_path / "a.db"), tty=True)
    assert "copy" in err and "integrity check" in err and "100%" in err
    assert "备份完成" in out
    out, err = _gridsync("backup", "--db", db_path, "-o", str(tmp_path / "b.db"), tty=False)
    assert "copy" not in err and "备份完成" in out
    out, err = _gridsync(
        "backup", "--db", db_path, "-o", str(tmp_path / "c.db"), "--json", tty=True
    )
    assert "copy" not in err and json.loads(out)["integrity"] == "ok"


def test_serve_holds_the_digests_for_a_while_after_it_starts(store, tiny, db_path):
    """The first requests after a restart are served before the district's digest run begins:
    the checks run at once, the digests once ``digests_after_start_seconds`` have passed."""
    from litestar.testing import TestClient

    from gridsync.app import create_app
    from gridsync.clock import FixedClock

    _channels_and_members(store, tiny)
    clock = FixedClock(NOW)
    settings = Settings(
        db=db_path, notify=DUE, sweep_interval_seconds=0.05, digests_after_start_seconds=30
    )
    app = create_app(settings, store=store, clock=clock, run_periodic=True)

    def digests_queued() -> int:
        return store.read(outbox.list_outbox, kind="digest_daily", limit=10).total

    with TestClient(app=app):
        worker = app.state.periodic
        for _ in range(3):  # rounds of checks ran, the digests did not
            worker.ran.clear()
            assert worker.ran.wait(timeout=30)
        assert digests_queued() == 0
        clock.advance(seconds=30)
        for _ in range(2):  # a round that began after the clock moved
            worker.ran.clear()
            assert worker.ran.wait(timeout=30)
        assert digests_queued() == 2


def test_restore_shows_the_check_and_the_copy_on_a_terminal(store, tiny, db_path, tmp_path):
    copy = tmp_path / "copy.db"
    _gridsync("backup", "--db", db_path, "-o", str(copy), tty=False)
    target = str(tmp_path / "restored.db")
    out, err = _gridsync("restore", str(copy), "--db", target, tty=True)
    assert "integrity check" in err and "copy" in err and "已恢复" in out
    out, err = _gridsync("restore", str(copy), "--db", target, tty=False)
    assert "integrity check" not in err and "已恢复" in out


def test_imports_show_progress_on_a_terminal_only(store, tiny, db_path, tmp_path):
    """`import households` (and people, units) checks every row before it writes: a bar on a
    terminal, nothing on a pipe or with --json (issue 15: every command that can run past 2 s)."""
    grid = store.read(
        lambda db: db.execute("SELECT id FROM org_units WHERE kind = 'grid'").fetchone()[0]
    )
    path = tmp_path / "hh.csv"
    path.write_text(
        "外部编号,网格,户主姓名\n" + "".join(f"X{i},{grid},户主{i}\n" for i in range(30)),
        encoding="utf-8",
    )
    out, err = _gridsync("import", "households", "--db", db_path, str(path), "--dry-run", tty=True)
    assert "checking" in err and "100%" in err
    out, err = _gridsync("import", "households", "--db", db_path, str(path), "--dry-run", tty=False)
    assert "checking" not in err
    out, err = _gridsync(
        "import", "households", "--db", db_path, str(path), "--dry-run", "--json", tty=True
    )
    assert "checking" not in err and json.loads(out)["new"] == 30
    out, err = _gridsync("import", "households", "--db", db_path, str(path), tty=True)
    assert "checking" in err and "100%" in err
    assert (
        store.read(
            lambda db: db.execute(
                "SELECT count(*) FROM households WHERE external_id LIKE 'X%'"
            ).fetchone()[0]
        )
        == 30
    )

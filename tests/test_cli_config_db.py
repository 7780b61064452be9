"""Which database a command opens: ``--db`` > ``GRIDSYNC_DB`` > the settings file's ``db``
(``--config``, ``$GRIDSYNC_CONFIG`` or ``./gridsync.toml``) > ``./gridsync.db``, for every
command, ``serve`` included (README "Configuration"). ``--db`` used to default to
``gridsync.db``, so a settings file's ``db`` never reached the CLI: ``serve --config`` with
``db = "/var/lib/gridsync/gridsync.db"`` refused a missing ``./gridsync.db`` instead.

Each database below holds one person named after it, so the command's output says which
database it read."""

from __future__ import annotations

import socket
import sqlite3
from pathlib import Path

import httpx
import msgspec
import pytest
from click.testing import CliRunner

from gridsync import auth, org
from gridsync.audit import Actor
from gridsync.cli import cli
from gridsync.db import Store
from gridsync.models import OrgUnit
from tests.servers import ServerProcess

CLI = Actor.cli()
# The variables that choose a database, unset for every run unless a case sets them.
CLEAN_ENV = {"GRIDSYNC_DB": None, "GRIDSYNC_CONFIG": None, "GRIDSYNC_HOST": None}


def make_db(path: Path, person_id: str) -> str:
    """A database in its own folder holding a district named ``person_id`` and one admin,
    ``person_id``; returns that admin's device token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with Store(str(path)) as store:
        store.write(org.add_units, [OrgUnit(id="d1", kind="district", name=person_id)])
        store.write(
            org.add_people,
            [org.NewPerson(id=person_id, name="管理员", roles=["admin"], scope=["d1"])],
            CLI,
        )
        return store.write(auth.enroll, person_id, CLI).token


def write_settings(path: Path, db: Path, **more: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f'db = "{db}"', *(f"{k} = {v!r}" for k, v in more.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A working directory with its own ./gridsync.db ("cwd"), and a settings file in another
    folder naming a database in a third folder ("configured")."""
    work = tmp_path / "work"
    make_db(work / "gridsync.db", "cwd")
    configured = tmp_path / "var" / "lib" / "gridsync" / "gridsync.db"
    token = make_db(configured, "configured")
    settings = write_settings(tmp_path / "etc" / "gridsync" / "gridsync.toml", configured)
    monkeypatch.chdir(work)
    return {"work": work, "configured": configured, "settings": settings, "token": token}


def people_ids(args: list[str], env: dict[str, str | None]) -> list[str]:
    result = CliRunner().invoke(cli, ["people", "--json", *args], env={**CLEAN_ENV, **env})
    assert result.exit_code == 0, result.output
    return [p["id"] for p in msgspec.json.decode(result.stdout)]


def test_a_command_without_config_reads_the_settings_files_db(place, tmp_path):
    env_db = tmp_path / "env" / "gridsync.db"
    make_db(env_db, "env")
    flag_db = tmp_path / "flag" / "gridsync.db"
    make_db(flag_db, "flag")
    settings = str(place["settings"])
    # nothing named: ./gridsync.db
    assert people_ids([], {}) == ["cwd"]
    # $GRIDSYNC_CONFIG names the settings file: its db
    assert people_ids([], {"GRIDSYNC_CONFIG": settings}) == ["configured"]
    # GRIDSYNC_DB beats the settings file
    assert people_ids([], {"GRIDSYNC_CONFIG": settings, "GRIDSYNC_DB": str(env_db)}) == ["env"]
    # --db beats both
    assert people_ids(
        ["--db", str(flag_db)], {"GRIDSYNC_CONFIG": settings, "GRIDSYNC_DB": str(env_db)}
    ) == ["flag"]


def test_a_gridsync_toml_in_the_working_directory_is_the_settings_file(place):
    write_settings(place["work"] / "gridsync.toml", place["configured"])
    assert people_ids([], {}) == ["configured"]


def test_a_command_with_config_reads_that_files_db(place, tmp_path):
    """``--config`` names the file for the database too, and beats $GRIDSYNC_CONFIG."""
    other = write_settings(tmp_path / "other.toml", tmp_path / "nowhere" / "x.db")
    result = CliRunner().invoke(
        cli,
        ["coverage", "--json", "--config", str(place["settings"])],
        env={**CLEAN_ENV, "GRIDSYNC_CONFIG": str(other)},
    )
    assert result.exit_code == 0, result.output
    rows = msgspec.json.decode(result.stdout)["rows"]
    assert [r["name"] for r in rows if r["level"] == "district"] == ["configured"]


def test_backup_and_init_use_the_settings_files_db(place, tmp_path):
    env = {**CLEAN_ENV, "GRIDSYNC_CONFIG": str(place["settings"])}
    copy = tmp_path / "copy.db"
    result = CliRunner().invoke(cli, ["backup", "-o", str(copy), "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert msgspec.json.decode(result.stdout)["path"] == str(copy)
    with sqlite3.connect(copy) as conn:
        assert conn.execute("SELECT id FROM people").fetchall() == [("configured",)]
    # init creates the configured database where the settings file says, not in the cwd
    fresh = tmp_path / "srv" / "new.db"
    fresh.parent.mkdir()
    write_settings(place["settings"], fresh)
    result = CliRunner().invoke(cli, ["init"], env=env)
    assert result.exit_code == 0, result.output
    assert str(fresh) in result.output and fresh.stat().st_size > 0


def test_a_bad_settings_file_is_one_line_when_it_is_needed(place, tmp_path):
    """Read only when neither --db nor GRIDSYNC_DB names the database."""
    broken = tmp_path / "broken.toml"
    broken.write_text("db = [\n", encoding="utf-8")
    env = {**CLEAN_ENV, "GRIDSYNC_CONFIG": str(broken)}
    result = CliRunner().invoke(cli, ["people", "--json"], env=env)
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "broken.toml" in lines[0], result.output
    result = CliRunner().invoke(cli, ["people", "--json", "--db", "gridsync.db"], env=env)
    assert result.exit_code == 0, result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_takes_db_and_port_from_the_settings_file(place):
    """A real ``gridsync serve --config FILE`` as the systemd unit in deploy/ runs it: no --db,
    no --port. It serves the configured database (the token enrolled there is accepted) on the
    configured port."""
    port = free_port()
    settings = write_settings(place["settings"], place["configured"], port=port)
    with ServerProcess(None, port=None, extra_args=("--config", str(settings))) as server:
        assert server.url == f"http://127.0.0.1:{port}"
        assert f"(db {place['configured']})" in "".join(server.output)
        me = httpx.get(
            server.url + "/api/v1/me",
            headers={"Authorization": f"Bearer {place['token']}"},
            timeout=10,
        )
        assert me.status_code == 200, me.text
        assert me.json()["person"]["id"] == "configured"

"""A wrong ``--db`` is a one-line error with exit code 1 on every command, never a traceback, and
never leaves a database behind (issue 12, clumsy operators).

The commands are found by walking the click tree, and their required arguments are made up from
their types, so a command added later is covered without touching this file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gridsync
from gridsync.cli import cli
from gridsync.db import DatabaseUnusable, Store, check_database

REPO = Path(gridsync.__file__).resolve().parent.parent

# Commands that do not read a database: ``--db`` is accepted (SPEC 7) and has no use.
NO_DATABASE = {("schemas",)}
# Commands that make a database where there is none (or an empty file). A restore puts a backup
# in place, a missing file included (``restore --from REPLICA --db new.db``).
CREATES = {("init",), ("demo",), ("restore",)}


def _runnable(group: click.Group = cli, path: tuple[str, ...] = ()):
    """Every command that runs something: leaf commands and groups that run without one."""
    for name, command in group.commands.items():
        here = (*path, name)
        if isinstance(command, click.Group):
            if command.invoke_without_command:
                yield here, command
            yield from _runnable(command, here)
        else:
            yield here, command


def _made_up(param: click.Parameter) -> str:
    if isinstance(param.type, click.Choice):
        return str(param.type.choices[0])
    if isinstance(param.type, click.types._NumberParamTypeBase):
        return "1"
    return "x"  # text, paths (relative: the test runs in a temporary folder), URLs


def _required_args(command: click.Command) -> list[str]:
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        if isinstance(param, click.Option):
            args += [param.opts[0], _made_up(param)]
        else:
            args.append(_made_up(param))
    return args


COMMANDS = {path: command for path, command in _runnable() if path not in NO_DATABASE}


def _invoke(path: tuple[str, ...], db: str):
    command = COMMANDS[path]
    return CliRunner().invoke(cli, [*path, "--db", db, *_required_args(command)])


def _assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for word in words:
        assert word in lines[0], result.output


def _gridsync_db(path: Path) -> Path:
    Store(path).close()
    return path


def _newer_db(path: Path) -> Path:
    _gridsync_db(path)
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
        "VALUES ('gridsync', '9999_from_a_newer_gridsync', '2030-01-01')"
    )
    conn.commit()
    conn.close()
    return path


def _foreign_db(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    conn.commit()
    conn.close()
    return path


def _damaged_db(path: Path) -> Path:
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 4080)  # the header, then nothing valid
    return path


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, tuple[Path, tuple[str, ...]]]:
    """Paths that every command must refuse, with the words its error must carry."""
    root = tmp_path_factory.mktemp("bad")
    text = root / "notes.db"
    text.write_text("这不是数据库\nnot a database\n", "utf-8")
    folder = root / "a-folder.db"
    folder.mkdir()
    return {
        "missing folder": (root / "nowhere" / "g.db", ("no_database", "nowhere")),
        "folder": (folder, ("not_a_database", "a-folder.db")),
        "text file": (text, ("not_a_database", "notes.db")),
        "damaged": (_damaged_db(root / "damaged.db"), ("not_a_database", "damaged.db")),
        "another program's": (_foreign_db(root / "other.db"), ("not_a_database", "notes")),
        "newer schema": (_newer_db(root / "newer.db"), ("schema_too_new", "9999_from")),
    }


BAD_CASES = [
    "missing folder",
    "folder",
    "text file",
    "damaged",
    "another program's",
    "newer schema",
]


@pytest.mark.parametrize("case", BAD_CASES)
@pytest.mark.parametrize("path", sorted(COMMANDS), ids=" ".join)
def test_every_command_refuses_a_bad_db(path, case, bad, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # made-up file arguments land here
    db, words = bad[case]
    before = db.read_bytes() if db.is_file() else None
    _assert_one_line_error(_invoke(path, str(db)), *words)
    assert (db.read_bytes() if db.is_file() else None) == before  # nothing written to it
    assert not db.parent.joinpath("nowhere").exists()
    assert list(tmp_path.iterdir()) == []  # and nothing made beside it


@pytest.mark.parametrize("path", sorted(set(COMMANDS) - CREATES), ids=" ".join)
def test_every_command_but_init_and_demo_refuses_a_missing_or_empty_db(path, tmp_path):
    typo = tmp_path / "dmeo.db"
    _assert_one_line_error(_invoke(path, str(typo)), "no_database", "gridsync init")
    assert not typo.exists()  # `serve --db dmeo.db` used to create and serve an empty database
    empty = tmp_path / "empty.db"
    empty.touch()
    _assert_one_line_error(_invoke(path, str(empty)), "no_database", "empty")
    assert empty.stat().st_size == 0


def test_the_walk_finds_every_command():
    """The tables above are not silently empty, and every command but ``schemas`` is in them."""
    assert {("serve",), ("init",), ("demo",), ("people",), ("people", "add"), ("simulate",)} <= set(
        COMMANDS
    )
    assert ("coverage", "policy", "set") in COMMANDS and len(COMMANDS) >= 25
    for path in NO_DATABASE:
        r = CliRunner().invoke(cli, [*path, "--help"])
        assert r.exit_code == 0 and "--db" in r.output


def test_init_and_demo_take_a_missing_or_empty_file(tmp_path):
    """An empty file is what ``touch`` or a bare ``sqlite3 FILE`` leaves: init makes the schema
    in it (as it does for a missing file); the other commands refuse it (above)."""
    empty = tmp_path / "empty.db"
    empty.touch()
    r = CliRunner().invoke(cli, ["init", "--db", str(empty)])
    assert r.exit_code == 0 and "is ready" in r.output, r.output
    r = CliRunner().invoke(cli, ["people", "--db", str(empty), "--json"])
    assert r.exit_code == 0 and r.output.strip().startswith("[]"), r.output
    check_database(tmp_path / "new.db", create=True)  # a missing file in an existing folder
    with pytest.raises(DatabaseUnusable) as refused:
        check_database(tmp_path / "new.db")
    assert refused.value.code == "no_database"


def test_the_store_refuses_a_newer_schema_before_migrating(tmp_path):
    """Whoever opens it (the CLI, create_app, a test): an older gridsync never runs on it."""
    db = _newer_db(tmp_path / "newer.db")
    with pytest.raises(DatabaseUnusable) as refused:
        Store(db)
    assert refused.value.code == "schema_too_new"
    with pytest.raises(DatabaseUnusable) as refused:
        Store(_damaged_db(tmp_path / "damaged.db"))
    assert refused.value.code == "not_a_database"


def test_serve_with_a_typo_exits_1_with_one_line_and_creates_nothing(tmp_path):
    """The real process, as an operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "gridsync", "serve", "--db", "dmeo.db", "--port", "0"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        "Error: no_database: 数据库不存在 (no database at dmeo.db): "
        "run 'gridsync init --db dmeo.db' (or 'gridsync demo') first"
    ]
    assert list(tmp_path.iterdir()) == []

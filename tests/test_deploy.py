"""The deployment files in deploy/ are well formed and name what gridsync really has (README
"Running in production"): each systemd unit parses, runs a real ``gridsync`` command with
options that command takes (parsed by the click tree itself), as an unprivileged user with
the hardening options; the nginx site parses (balanced blocks, every directive ended), proxies
to the port gridsync listens on by default and caps bodies at the push's limit, answering over
it in gridsync's error shape. A parse check only: CI has neither systemd nor nginx (with them,
``systemd-analyze verify`` and ``nginx -t``, as the README says)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import msgspec
import pytest

import gridsync
from gridsync.cli import cli
from gridsync.config import Settings
from gridsync.models import ErrorBody

REPO = Path(gridsync.__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
SETTINGS_FILE = "/etc/gridsync/gridsync.toml"


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat). Refuses what systemd
    would warn about: a line outside a section, a line that is not ``key=value``."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}:{number}: {line}"
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}:{number}: outside a section"
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z]+", key), f"{path.name}:{number}: {line}"
        current.setdefault(key, []).append(value)
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section][key]
    assert len(values) == 1, (section, key, values)
    return values[0]


def environment(unit: dict) -> dict[str, str]:
    return dict(v.split("=", 1) for v in unit["Service"].get("Environment", []))


def gridsync_args(exec_start: str) -> list[str]:
    """The gridsync command line of ExecStart, through ``/bin/sh -c '...'`` if need be, with
    systemd's own escapes undone ($$ -> $, %% -> %)."""
    argv = shlex.split(exec_start.replace("$$", "$").replace("%%", "%"))
    if argv[:2] == ["/bin/sh", "-c"]:
        argv = shlex.split(argv[2])
        if argv[0] == "exec":
            argv = argv[1:]
    assert argv[0].endswith("/bin/gridsync"), argv  # the venv's console script
    return argv[1:]


def check_command(args: list[str], tmp_path: Path) -> str:
    """The click tree parses ``args`` as it would run them (names, option types, choices);
    returns the command's name. The settings file is stood in for by an empty one."""
    stand_in = tmp_path / "gridsync.toml"
    stand_in.write_text("", encoding="utf-8")
    args = [str(stand_in) if a == SETTINGS_FILE else a for a in args]
    name, rest = args[0], args[1:]
    assert name in cli.commands, f"no gridsync command {name!r}"
    cli.commands[name].make_context(name, rest)  # raises a UsageError on a wrong option
    return name


UNITS = {
    "gridsync.service": "serve",
    "gridsync-replicate.service": "replicate",
    "gridsync-backup.service": "backup",
}


@pytest.mark.parametrize("file", sorted(UNITS))
def test_each_service_runs_a_real_command_hardened(file, tmp_path):
    unit = parse_unit(DEPLOY / file)
    service = unit["Service"]
    assert one(unit, "Service", "User") == "gridsync"
    assert one(unit, "Service", "WorkingDirectory") == "/var/lib/gridsync"
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    assert one(unit, "Service", "StateDirectory") == "gridsync"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""
    # every gridsync command of the machine reads the same settings file (the database in it)
    assert environment(unit)["GRIDSYNC_CONFIG"] == SETTINGS_FILE
    args = gridsync_args(one(unit, "Service", "ExecStart"))
    assert check_command(args, tmp_path) == UNITS[file]
    assert "--db" not in args  # the database is the settings file's (one place to change it)
    if file == "gridsync-backup.service":
        assert one(unit, "Service", "Type") == "oneshot"
    else:
        assert service["Restart"] in (["on-failure"], ["always"])
        assert one(unit, "Install", "WantedBy") == "multi-user.target"


def test_the_server_unit_reads_the_settings_file():
    args = gridsync_args(one(parse_unit(DEPLOY / "gridsync.service"), "Service", "ExecStart"))
    assert args[args.index("--config") + 1] == SETTINGS_FILE
    assert args[args.index("--log-format") + 1] == "json"


def test_the_backup_timer_starts_the_backup():
    timer = parse_unit(DEPLOY / "gridsync-backup.timer")
    assert "OnCalendar" in timer["Timer"] and one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Install", "WantedBy") == "timers.target"
    # a timer starts the service of its own name
    assert (DEPLOY / "gridsync-backup.service").exists()
    args = gridsync_args(
        one(parse_unit(DEPLOY / "gridsync-backup.service"), "Service", "ExecStart")
    )
    assert args[args.index("-o") + 1] == "/var/backups/gridsync/gridsync-$(date +%a).db"


# -- nginx ------------------------------------------------------------------------------------

TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|[{};]|[^\s{};'\"]+")


def parse_nginx(text: str) -> list:
    """nginx's syntax: directives ``name args... ;`` and blocks ``name args... { ... }``;
    returns [(name, args, children or None)]. Fails on an unbalanced brace or a directive
    left without its ``;``."""
    tokens = TOKEN.findall(re.sub(r"(?m)^\s*#.*$|\s#.*$", "", text))
    position = 0

    def block(depth: int) -> list:
        nonlocal position
        items, words = [], []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                assert words, "an empty directive"
                items.append((words[0], words[1:], None))
                words = []
            elif token == "{":
                assert words, "a block without a name"
                items.append((words[0], words[1:], block(depth + 1)))
                words = []
            elif token == "}":
                assert depth > 0 and not words, f"unbalanced braces or a missing ';': {words}"
                return items
            else:
                words.append(token)
        assert depth == 0 and not words, f"unclosed block or a missing ';': {words}"
        return items

    return block(0)


def find(items: list, name: str) -> list:
    return [item for item in items if item[0] == name]


def unquote(word: str) -> str:
    return word[1:-1] if word[:1] in "'\"" else word


def test_nginx_site_parses_and_fronts_gridsync():
    site = parse_nginx((DEPLOY / "nginx.conf").read_text(encoding="utf-8"))
    defaults = Settings()
    (upstream,) = find(site, "upstream")
    assert find(upstream[2], "server")[0][1] == [f"{defaults.host}:{defaults.port}"]
    servers = find(site, "server")
    tls = [s for s in servers if any("ssl" in d[1] for d in find(s[2], "listen"))]
    assert len(tls) == 1
    body = tls[0][2]
    # the push's cap, as nginx writes sizes
    (cap,) = find(body, "client_max_body_size")
    assert cap[1] == [f"{defaults.max_push_bytes // (1024 * 1024)}m"]
    assert find(body, "gzip")[0][1] == ["on"]
    (location,) = [b for b in find(body, "location") if b[1] == ["/"]]
    headers = {d[1][0]: d[1][1] for d in find(location[2], "proxy_set_header")}
    assert find(location[2], "proxy_pass")[0][1] == [f"http://{upstream[1][0]}"]
    assert {"Host", "X-Forwarded-For", "X-Forwarded-Proto", "X-Request-ID"} <= set(headers)
    # over the cap, nginx answers in gridsync's error shape, naming the limits
    (error_page,) = find(body, "error_page")
    assert error_page[1][0] == "413"
    (named,) = [b for b in find(body, "location") if b[1] == [error_page[1][-1].lstrip("=")]]
    status, text = find(named[2], "return")[0][1]
    error = msgspec.json.decode(unquote(text), type=ErrorBody)
    assert status == "413" and error.code == "payload_too_large"
    assert f"at most {defaults.max_push_mutations} mutations" in error.message
    # plain HTTP only redirects
    (plain,) = [s for s in servers if s is not tls[0]]
    assert find(plain[2], "return")[0][1][0] == "301"


def test_the_nginx_parser_refuses_a_broken_site():
    with pytest.raises(AssertionError):
        parse_nginx("server { listen 80 }")
    with pytest.raises(AssertionError):
        parse_nginx("server { listen 80; ")
    with pytest.raises(AssertionError):
        parse_nginx("gzip on")


# -- the quick start --------------------------------------------------------------------------


def test_ci_runs_the_readme_test_line_and_the_quick_start_uses_a_venv():
    """The test line is the first README line an install tool starts that runs pytest (the
    rule of the session hook); .ci/run runs it as written."""
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    pattern = re.compile(r"^\s*(pip|python3? -m pip|uv)[^#]*pytest")
    test_line = next(line.strip() for line in readme if pattern.match(line))
    assert test_line in (REPO / ".ci" / "run").read_text(encoding="utf-8")
    serve_line = next(line.strip() for line in readme if "gridsync serve" in line)
    assert serve_line.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")

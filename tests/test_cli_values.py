"""Every value an option takes is checked by its click type, before any work (issue 12's review):
numbers have a range, times are ``TimeParam`` (ISO 8601 within 1970-2199, a bare date being
midnight in China). An odd value is a usage error (exit 2) naming the option, never a traceback:
``prune --now 0001-01-01``, ``prune --keep-days 99999999999999``, ``sweep --now 9999-12-31``
with an open case and ``serve --port 99999`` all were.

The walk over the click tree makes a new numeric or time option without a range fail here.
"""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest
from click.testing import CliRunner

from gridsync.cli import cli
from gridsync.cli.base import TimeParam
from gridsync.clock import uuid7
from tests.sync_helpers import Phone

TIME_NAMES = {"now", "now_ms", "since_ms", "until_ms", "as_of", "at"}


def _params(group: click.Group, path: tuple[str, ...] = ("gridsync",)):
    for param in group.params:
        yield path, param
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _params(command, (*path, name))
        else:
            for param in command.params:
                yield (*path, name), param


def test_every_numeric_option_has_a_range_and_every_time_option_is_a_time():
    problems = []
    for path, param in _params(cli):
        where = f"{' '.join(path)} {'/'.join(param.opts)}"
        t = param.type
        if isinstance(t, (click.types.IntParamType, click.types.FloatParamType)):
            if not isinstance(t, (click.IntRange, click.FloatRange)):
                problems.append(f"{where}: {t.name} without a range")
            elif t.min is None or t.max is None:
                problems.append(f"{where}: range {t} open on one side")
        if isinstance(t, click.DateTime):
            problems.append(f"{where}: click.DateTime (use cli.base.TIME: bounds, China time)")
        if param.name in TIME_NAMES and not isinstance(t, TimeParam):
            problems.append(f"{where}: a time option that is not a TimeParam")
    assert problems == [], "\n".join(problems)


ODD = [
    (["prune", "--now", "0001-01-01T00:00:00+00:00"], "--now"),
    (["prune", "--now", "2200-01-01T00:00:00+00:00"], "--now"),
    (["prune", "--keep-days", "99999999999999"], "--keep-days"),
    (["prune", "--keep-days", "3"], "--keep-days"),
    (["sweep", "--no-dispatch", "--now", "9999-12-31T23:59:59+00:00"], "--now"),
    (["sweep", "--no-dispatch", "--now", "yesterday"], "--now"),
    (["sweep", "--no-dispatch", "--now", "1969-12-31"], "--now"),
    (["whistle", "report", "--since", "0001-01-01"], "--since"),
    (["whistle", "report", "--until", "10000-01-01"], "--until"),
    (["coverage", "--now", "9999-12-31T23:59:59-12:00"], "--now"),
    (["coverage", "violations", "--offset", "100000000000000000000"], "--offset"),
    (["coverage", "violations", "--limit", "0"], "--limit"),
    (["coverage", "sample", "--scope", "c1", "--seed", "s", "--n", "99999999999"], "--n"),
    (["coverage", "policy", "set", "c1", "--cycle-days", "99999999999999999999"], "--cycle-days"),
    (["coverage", "policy", "set", "c1", "--min", "-1"], "--min"),
    (["export", "coverage", "--format", "json", "-o", "x.json", "--now", "0001-01-01"], "--now"),
    (["outbox", "--limit", "99999999999"], "--limit"),
    (["cases", "--limit", "0"], "--limit"),
    (["demo", "--as-of", "0001-01-01"], "--as-of"),
    (["demo", "--seed", str(2**64)], "--seed"),
    (["serve", "--port", "99999"], "--port"),
    (["serve", "--port", "-1"], "--port"),
]


@pytest.mark.parametrize("args, option", ODD, ids=[" ".join(a) for a, _ in ODD])
def test_odd_values_are_usage_errors_naming_the_option(client, tiny, store, db_path, args, option):
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    raised = m1.push(  # an open case: a sweep far ahead would escalate it
        [m1.mutation("whistle.raise", uuid7(), data={"category": "漏水", "grid_id": "g1"})]
    )
    assert raised.json()["results"][0]["status"] == "applied"
    before = store.read(lambda db: db.execute("SELECT max(seq) FROM org_units").fetchone())
    r = CliRunner().invoke(cli, [*args, "--db", db_path])
    assert r.exit_code == 2, (r.exit_code, r.output, r.exception)
    assert isinstance(r.exception, SystemExit)
    assert f"Invalid value for '{option}'" in r.stderr, r.stderr
    assert store.read(lambda db: db.execute("SELECT max(seq) FROM org_units").fetchone()) == before


def _ms(*args: int, tz=UTC) -> int:
    return int(datetime(*args, tzinfo=tz).timestamp() * 1000)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-23", _ms(2026, 11, 22, 16)),  # a bare date: midnight in China
        ("2026-11-23T09:00", _ms(2026, 11, 23, 1)),  # no offset: China wall time
        ("2026-11-23T09:00:00+08:00", _ms(2026, 11, 23, 1)),
        ("2026-11-23T01:00:00Z", _ms(2026, 11, 23, 1)),
        (" 2026-11-23T01:00:00.250+00:00 ", _ms(2026, 11, 23, 1) + 250),
        ("1970-01-01T00:00:00+00:00", 0),
        ("2199-12-31T23:59:59.999+00:00", _ms(2200, 1, 1) - 1),
    ],
)
def test_time_param_reads_iso_8601_in_china_time(text, expected):
    assert TimeParam().convert(text, None, None) == expected


@pytest.mark.parametrize(
    "text", ["1970-01-01", "2200-01-01T00:00:00+00:00", "0001-01-01", "9999-12-31", "2026-13-01"]
)
def test_time_param_refuses_what_phones_times_may_not_be(text):
    with pytest.raises(click.BadParameter):
        TimeParam().convert(text, None, None)


def test_sweep_at_the_last_day_of_the_window_escalates_without_a_traceback(client, tiny, db_path):
    m1 = Phone(client, tiny.tokens["m1"], tiny.devices["m1"])
    m1.push([m1.mutation("whistle.raise", uuid7(), data={"category": "漏水", "grid_id": "g1"})])
    r = CliRunner().invoke(
        cli, ["sweep", "--db", db_path, "--no-dispatch", "--now", "2199-12-31", "--json"]
    )
    assert r.exit_code == 0, (r.output, r.exception)
    assert '"escalated":1' in r.stdout


@pytest.mark.parametrize("host", ["a\x00b", "no-such-host.invalid", "x" * 300])
def test_serve_refuses_a_host_it_cannot_listen_on_with_one_line(store, tiny, db_path, host):
    store.close()
    r = CliRunner().invoke(cli, ["serve", "--db", db_path, "--host", host, "--port", "0"])
    assert r.exit_code == 1, (r.output, r.exception)
    assert isinstance(r.exception, SystemExit)
    assert r.stderr.startswith("Error: cannot listen on"), r.stderr

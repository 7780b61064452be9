"""Time the way people read it (issue 15): human-facing times in the district's zone (the
``timezone`` setting), the wire unchanged. A case the server received at 01:30 UTC reads 09:30
in China, in the CLI, in its notification and in an XLSX cell; ``--now 2026-12-06`` is local
midnight; another zone in the settings file moves all of it."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import openpyxl
import pytest
from click.testing import CliRunner

from gridsync import localtime, whistle
from gridsync.auth import authenticate
from gridsync.cli import cli
from gridsync.config import ConfigError, Settings, load_settings
from gridsync.models import WhistleRaise
from gridsync.notify import outbox
from tests.conftest import bearer

RECEIVED = datetime(2026, 12, 6, 1, 30, tzinfo=UTC)  # 09:30 in China, 07:30 in Urumqi
RECEIVED_MS = int(RECEIVED.timestamp() * 1000)


def _raise(
    store, tiny, settings: Settings, raised_at: str | None = None, case_id: str = "case-1"
) -> None:
    data = WhistleRaise(
        category="漏水", grid_id="g1", location="3号楼", description="楼道漏水", raised_at=raised_at
    )
    store.write(
        whistle.raise_case,
        store.read(authenticate, tiny.tokens["sec"]),
        case_id,
        data,
        received_ms=RECEIVED_MS,
        settings=settings,
    )


def _cli(*args: str, env: dict[str, str] | None = None) -> str:
    r = CliRunner().invoke(cli, list(args), env=env)
    assert r.exit_code == 0, r.output
    return r.output


def _urumqi(tmp_path) -> str:
    path = tmp_path / "gridsync.toml"
    path.write_text('timezone = "Asia/Urumqi"\n')
    return str(path)


# -- the CLI ----------------------------------------------------------------------------------


def test_cases_list_and_show_read_local_time(db_path, store, tiny, settings):
    _raise(store, tiny, settings, raised_at="2026-12-06T01:29:00Z")  # the phone's own clock
    listing = _cli("cases", "--db", db_path)
    line = next(x for x in listing.splitlines() if x.startswith("case-1"))
    # accept within 1 minute at the grid level: 09:31 local
    assert "received 2026-12-06 09:30" in line and "accept by 2026-12-06 09:31" in line
    assert "01:30" not in listing and "Asia/Shanghai (UTC+08:00)" in listing
    shown = _cli("cases", "show", "case-1", "--db", db_path)
    assert "at 2026-12-06 09:29 (device), received 2026-12-06 09:30 (server)" in shown
    assert "since 2026-12-06 09:30: accept 2026-12-06 09:31, arrive 2026-12-06 09:40" in shown
    assert "  2026-12-06 09:30  raise" in shown
    # --json keeps the wire: ISO 8601 with its offset, as the API sends it
    wire = json.loads(_cli("cases", "show", "case-1", "--db", db_path, "--json"))
    assert wire["received_at"] == "2026-12-06T01:30:00.000+00:00"
    assert wire["raised_at"] == "2026-12-06T01:29:00Z"


def test_the_settings_zone_moves_the_cli(db_path, store, tiny, settings, tmp_path):
    _raise(store, tiny, settings)
    env = {"GRIDSYNC_CONFIG": _urumqi(tmp_path)}
    shown = _cli("cases", "show", "case-1", "--db", db_path, env=env)
    assert "received 2026-12-06 07:30 (server)" in shown
    devices = _cli("device", "list", "--db", db_path, env=env)
    assert "Asia/Urumqi (UTC+06:00)" in devices


def test_now_is_local_midnight_and_an_offset_is_kept(db_path, store, tiny, tmp_path):
    def at(*args: str) -> str:
        out = _cli("sweep", "--db", db_path, "--no-dispatch", "--json", *args)
        return json.loads(out)["at"]

    assert at("--now", "2026-12-06") == "2026-12-05T16:00:00.000+00:00"  # 00:00 in China
    assert at("--now", "2026-12-06T09:30") == "2026-12-06T01:30:00.000+00:00"
    assert at("--now", "2026-12-06T09:30:00+00:00") == "2026-12-06T09:30:00.000+00:00"
    # --config is read before --now whatever their order: midnight in Urumqi is 18:00 UTC
    config = _urumqi(tmp_path)
    assert at("--now", "2026-12-06", "--config", config) == "2026-12-05T18:00:00.000+00:00"
    text = _cli("sweep", "--db", db_path, "--no-dispatch", "--now", "2026-12-06")
    assert text.startswith("sweep at 2026-12-06 00:00:")


def test_coverage_report_footer_is_local(db_path, comm):
    out = _cli("coverage", "--db", db_path, "--now", "2026-11-20T12:00:00Z")
    assert "时间 2026-11-20 20:00 (times in Asia/Shanghai (UTC+08:00))" in out


# -- notification texts -----------------------------------------------------------------------


def test_notification_text_shows_the_districts_local_time(store, tiny, db_path):
    store.write(  # the grid's member hears of new cases (queued only: nothing is delivered)
        lambda db: db.execute(
            "UPDATE people SET channels = ? WHERE id = 'm1'", ['["json://127.0.0.1:9/x"]']
        )
    )
    for zone_name, local in (("Asia/Shanghai", "12-06 09:30"), ("Asia/Urumqi", "12-06 07:30")):
        _raise(store, tiny, Settings(db=db_path, timezone=zone_name), case_id=zone_name[5:])
        page = store.read(outbox.list_outbox, cause=zone_name[5:], kind="whistle_raised", limit=9)
        bodies = [e.body for e in page.items if e.locale == "zh-CN"]
        assert bodies and all(f"（服务器接收 {local}）" in b for b in bodies), (zone_name, bodies)
        assert all("01:30" not in b for b in bodies)


# -- XLSX date cells --------------------------------------------------------------------------


def test_xlsx_last_visit_is_a_date_cell_in_local_time(cov_client, comm):
    r = cov_client.get(
        "/api/v1/exports/coverage", params={"format": "xlsx"}, headers=bearer(comm.tokens["admin"])
    )
    assert r.status_code == 200, r.text
    ws = openpyxl.load_workbook(io.BytesIO(r.content))["问题清单"]
    rows = list(ws.iter_rows())
    header = [c.value for c in rows[0]]
    col = header.index("最近走访")
    cells = {row[header.index("编号")].value: row[col] for row in rows[1:]}
    h3 = cells["h3"]  # last visited 40 days before 2026-11-20 12:00 UTC
    assert isinstance(h3.value, datetime) and h3.is_date
    assert h3.value == datetime(2026, 10, 11, 20, 0)  # Beijing wall time
    assert h3.number_format == localtime.XLSX_DATETIME_FORMAT
    assert cells["h4"].value is None  # never visited: an empty cell, not a text
    # JSON keeps the wire format
    doc = cov_client.get(
        "/api/v1/exports/coverage", params={"format": "json"}, headers=bearer(comm.tokens["admin"])
    ).json()
    v = next(v for v in doc["violations"] if v["id"] == "h3")
    assert v["last_visit_at"] == "2026-10-11T12:00:00.000+00:00"


# -- the setting ------------------------------------------------------------------------------


def test_one_timezone_setting(tmp_path):
    def load(text: str) -> Settings:
        path = tmp_path / "s.toml"
        path.write_text(text)
        return load_settings(str(path))

    assert load("").timezone == "Asia/Shanghai"
    s = load('timezone = "Asia/Urumqi"\n')
    assert (s.timezone, s.notify.timezone) == ("Asia/Urumqi", "Asia/Urumqi")
    s = load('[notify]\ntimezone = "Asia/Urumqi"\n')  # a file written before issue 15
    assert (s.timezone, s.notify.timezone) == ("Asia/Urumqi", "Asia/Urumqi")
    with pytest.raises(ConfigError, match="differ"):
        load('timezone = "Asia/Urumqi"\n[notify]\ntimezone = "Asia/Shanghai"\n')
    with pytest.raises(ConfigError, match="unknown time zone"):
        load('timezone = "Mars/Olympus"\n')
    r = CliRunner().invoke(
        cli, ["sweep", "--now", "2026-12-06", "--config", str(tmp_path / "s.toml")]
    )
    assert r.exit_code == 1 and "unknown time zone" in r.output  # one line, no traceback


def test_local_text_reads_ms_and_wire_times():
    assert localtime.local_text(RECEIVED_MS) == "2026-12-06 09:30"
    assert localtime.local_text("2026-12-06T01:30:00.000+00:00") == "2026-12-06 09:30"
    assert localtime.local_text("2026-12-06T03:30:00+02:00", "Asia/Urumqi") == "2026-12-06 07:30"
    assert localtime.local_text(None) == "" and localtime.local_text("not a time") == "not a time"
    assert localtime.operator_ms("2026-12-06") == RECEIVED_MS - int(9.5 * 3600 * 1000)

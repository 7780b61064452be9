"""Review of issue 12 (hardening) after its merge: what is still wrong, one test per finding.

Every test here was ``xfail(strict=True)``: it failed for the reason it names, and turns the
suite red (XPASS) the day the finding is fixed, so that the mark is removed with the fix. The
marks of findings 2, 3, 4, 5, 8 and 9 are gone (fixed in h12-fixes); findings 1, 6 and 7 were
fixed in h12-fixes2 and their tests live in tests/test_review12_cases.py. Real
parts only: the app through the TestClient, the reference client, the CLI through CliRunner.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from gridsync.backup import replica_config
from gridsync.cli import cli
from gridsync.clock import FixedClock, uuid7
from gridsync.privacy import mask_phone
from gridsync.sync.client import DeviceClient, SyncError
from tests.conftest import bearer
from tests.sync_helpers import Phone


def _phone(client, tiny, person: str = "m1") -> Phone:
    return Phone(client, tiny.tokens[person], tiny.devices[person])


def _raise_case(phone: Phone, **data) -> str:
    case_id = uuid7()
    r = phone.push([phone.mutation("whistle.raise", case_id, data={"category": "漏水", **data})])
    assert r.status_code == 200 and r.json()["results"][0]["status"] == "applied", r.text
    return case_id


def _no_traceback(result) -> bool:
    """A CLI run that ended on purpose (an exit code, a coded line), not on an exception."""
    return result.exception is None or isinstance(result.exception, SystemExit)


# -- 1. a whistle case grows without bound ---------------------------------------------------------


def test_the_last_admin_cannot_drop_the_admin_role_over_the_api(client, tiny):
    admin = bearer(tiny.tokens["admin"])
    r = client.put(
        "/api/v1/people/admin",
        headers=admin,
        json={"name": "区管理员", "roles": ["member"], "scope": ["g1"]},
    )
    assert r.status_code == 409, r.text
    assert client.post("/api/v1/devices", headers=admin, json={"person_id": "m1"}).status_code in (
        200,
        201,
    )


# -- 3. a repeated unit in a scope is a 500 ----------------------------------------------------------


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/v1/people/p9", {"name": "新党员", "roles": ["member"], "scope": ["g1", "g1"]}),
        ("/api/v1/people/m1/scope", {"units": ["g1", "g1"]}),
    ],
)
def test_a_unit_named_twice_in_a_scope_is_not_a_500(client, tiny, path, body):
    r = client.put(path, headers=bearer(tiny.tokens["admin"]), json=body)
    assert r.status_code < 500, r.text


def test_cli_people_add_with_a_unit_named_twice_is_not_a_traceback(store, tiny, db_path):
    r = CliRunner().invoke(
        cli,
        [
            *("people", "add", "--db", db_path, "p9", "--name", "新党员", "--role", "member"),
            *("--scope", "g1", "--scope", "g1"),
        ],
    )
    assert _no_traceback(r), repr(r.exception)


# -- 4. the CLI enrols a device whose phone can never push ----------------------------------------


def test_a_device_the_cli_enrols_can_push(client, tiny, store, db_path):
    device_id = "张伟 的手机"  # an operator's natural choice; the API refuses it (models.Id)
    r = CliRunner().invoke(
        cli,
        ["device", "enroll", "--db", db_path, "--person", "m1", "--device-id", device_id, "--json"],
    )
    if r.exit_code != 0:  # refused: fixed that way
        assert _no_traceback(r)
        return
    token = json.loads(r.stdout)["token"]
    phone = DeviceClient(
        client,
        token=token,
        device_id=device_id,
        person_id="m1",
        clock=FixedClock(int(time.time() * 1000)),
        sleep=lambda _s: None,
    )
    phone.sync()
    phone.update_household("hh-g1-1", fields={"notes": "新手机"})
    try:
        phone.push()
    except SyncError as exc:
        pytest.fail(f"the enrolled device cannot push: {exc}")


# -- 5. the mask of a landline shows all but one digit --------------------------------------------


@pytest.mark.parametrize("number", ["88881234", "053288881"])
def test_a_masked_landline_hides_at_least_four_digits(number):
    masked = mask_phone(number)
    assert masked.count("*") >= 4, masked


# -- 6. one phone clock skews the whistle report ---------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["prune", "--now", "0001-01-01T00:00:00+00:00"],
        ["prune", "--keep-days", "99999999999999"],
        ["sweep", "--no-dispatch", "--now", "9999-12-31T23:59:59+00:00"],
    ],
    ids=["prune-now-year-1", "prune-keep-days-huge", "sweep-now-9999"],
)
def test_odd_cli_values_end_with_a_coded_line_not_a_traceback(client, tiny, store, db_path, args):
    _raise_case(_phone(client, tiny), grid_id="g1")  # an open case for the sweep to escalate
    r = CliRunner().invoke(cli, [args[0], "--db", db_path, *args[1:]])
    assert _no_traceback(r), repr(r.exception)
    assert r.exit_code != 0


def test_serve_refuses_a_port_out_of_range_with_one_line(store, tiny, db_path):
    store.close()
    r = subprocess.run(
        [sys.executable, "-m", "gridsync", "serve", "--db", db_path, "--port", "99999"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-2000:]


def test_an_empty_replica_destination_is_refused():
    with pytest.raises(ValueError):
        replica_config("", "1s")

"""Personal data (SPEC 2, issue 12): who reads a household's phone number in full, on every
surface, and a mask never written back as the number.

The oracle is the table below, written from SPEC 2 and not from gridsync/privacy.py: a full
number goes to an admin, the community secretary of the household's community, a grid worker
of its grid and its responsible member; everyone else reads ``137****0003``.

The target is household h3 of the hand-built coverage district (grid g1 of community c1, its
responsible member m1, overdue: it is in the violations list too). People added here:
``sec2`` (community secretary of c2 whose scope also holds g1), ``gw1`` (grid worker of g1),
``gw2`` (grid worker of g2 whose scope also holds branch b1, so g1), ``dept`` (a department).
"""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import datetime, timedelta, timezone

import msgspec
import openpyxl
import pytest
from click.testing import CliRunner
from litestar.testing import TestClient

from gridsync import auth, org
from gridsync.app import create_app
from gridsync.cli import cli
from gridsync.clock import FixedClock
from gridsync.db import current_seq
from gridsync.models import OrgUnit, is_masked
from gridsync.notify.routing import people_for_tag
from gridsync.privacy import mask_phone
from gridsync.sweep import run_once
from gridsync.sync.client import DeviceClient
from gridsync.sync.hlc import format_hlc
from tests.conftest import CLI, bearer
from tests.sync_helpers import Phone

H3 = "h3"
FULL = "13700000003"
MASKED = "137****0003"
M1_FULL = "13811110001"  # member m1's own number (member rows of exports)
M1_MASKED = "138****0001"
HIDDEN = "hidden"  # the household is not in the reader's scope at all
REFUSED = "refused"  # the surface is not for this role (403)

# role -> how they read h3's number (and member m1's): the model of SPEC 2
READS = {
    "admin": FULL,
    "street1": MASKED,  # street
    "sec1": FULL,  # community secretary of c1, h3's community
    "sec2": MASKED,  # community secretary of c2 (g1 in scope, not their community)
    "bs1": MASKED,  # branch secretary of b1 (g1)
    "gw1": FULL,  # grid worker of g1
    "gw2": MASKED,  # grid worker of g2 (g1 in scope through branch b1)
    "m1": FULL,  # member responsible for h3
    "m2": MASKED,  # member of g1, not responsible for h3
    "dept": HIDDEN,  # department responder: no households at all
}
ROLES = list(READS)
REPORT_ROLES = {"admin", "street1", "sec1", "sec2", "bs1"}  # coverage reports and exports
SECRETARY_ROLES = REPORT_ROLES  # the conflict log


@pytest.fixture
def people(store, comm):
    """The coverage district plus the people of this module, each with a device."""

    def load(db):
        org.add_units(db, [OrgUnit(id="deptA", kind="department", name="城管局", parent_id="d1")])
        org.add_people(
            db,
            [
                org.NewPerson(
                    id="sec2", name="孙书记", roles=["community_secretary"], scope=["c2", "g1"]
                ),
                org.NewPerson(id="gw1", name="周网格员", roles=["grid_worker"], scope=["g1"]),
                org.NewPerson(id="gw2", name="吴网格员", roles=["grid_worker"], scope=["g2", "b1"]),
                org.NewPerson(id="dept", name="城管队员", roles=["department"], scope=["deptA"]),
            ],
            CLI,
        )

    store.write(load)
    for pid in ("sec2", "gw1", "gw2", "dept"):
        comm.tokens[pid] = store.write(auth.enroll, pid, CLI, device_id=f"dev-{pid}").token
    return comm


def expected(role: str, allowed: set[str] | None = None, full=FULL, masked=MASKED) -> str:
    if allowed is not None and role not in allowed:
        return REFUSED
    return {FULL: full, MASKED: masked}.get(READS[role], READS[role])


def get(client, people, who, path, **params):
    return client.get(path, params=params, headers=bearer(people.tokens[who]))


# -- every role on every surface ----------------------------------------------------------------


def rest_list(client, people, role):
    r = get(client, people, role, "/api/v1/households", limit=500)
    assert r.status_code == 200, r.text
    found = [h["phone"] for h in r.json()["items"] if h["id"] == H3]
    return found[0] if found else HIDDEN


def rest_item(client, people, role):
    r = get(client, people, role, f"/api/v1/households/{H3}")
    if r.status_code == 404:
        return HIDDEN
    assert r.status_code == 200, r.text
    return r.json()["phone"]


def pull(client, people, role):
    changes = Phone(client, people.tokens[role], f"dev-{role}").pull_all()
    found = [c["data"]["phone"] for c in changes if c["type"] == "household" and c["id"] == H3]
    return found[-1] if found else HIDDEN


def violations(client, people, role):
    r = get(client, people, role, "/api/v1/coverage/violations", kind="overdue", limit=500)
    if r.status_code == 403:
        return REFUSED
    assert r.status_code == 200, r.text
    found = [v["phone"] for v in r.json()["items"] if v["id"] == H3]
    return found[0] if found else HIDDEN


def sample(client, people, role):
    r = get(client, people, role, "/api/v1/coverage/sample", scope="g1", n=100, seed="s")
    if r.status_code == 403:
        return REFUSED
    assert r.status_code == 200, r.text
    return {i["household"]["id"]: i["household"]["phone"] for i in r.json()["items"]}[H3]


def export_json(client, people, role):
    r = get(client, people, role, "/api/v1/exports/coverage", format="json")
    if r.status_code == 403:
        return REFUSED
    assert r.status_code == 200, r.text
    return {v["id"]: v["phone"] for v in r.json()["violations"]}[H3]


def export_xlsx(client, people, role):
    r = get(client, people, role, "/api/v1/exports/coverage", format="xlsx")
    if r.status_code == 403:
        return REFUSED
    assert r.status_code == 200, r.text
    rows = list(
        openpyxl.load_workbook(io.BytesIO(r.content))["问题清单"].iter_rows(values_only=True)
    )
    return {row[2]: dict(zip(rows[0], row))["电话"] for row in rows[1:]}[H3]


SURFACES = {
    "rest_list": (rest_list, None),
    "rest_item": (rest_item, None),
    "pull": (pull, None),
    "violations": (violations, REPORT_ROLES),
    "sample": (sample, REPORT_ROLES),
    "export_json": (export_json, REPORT_ROLES),
    "export_xlsx": (export_xlsx, REPORT_ROLES),
}


@pytest.mark.parametrize("surface", list(SURFACES))
@pytest.mark.parametrize("role", ROLES)
def test_each_role_on_each_surface(cov_client, people, role, surface):
    read, allowed = SURFACES[surface]
    assert read(cov_client, people, role) == expected(role, allowed)


def member_phone_json(client, people, role):
    r = get(client, people, role, "/api/v1/exports/coverage", format="json")
    if r.status_code == 403:
        return REFUSED
    return r.json()["member_phones"].get("m1", HIDDEN)


def member_phone_xlsx(client, people, role):
    r = get(client, people, role, "/api/v1/exports/coverage", format="xlsx")
    if r.status_code == 403:
        return REFUSED
    rows = list(openpyxl.load_workbook(io.BytesIO(r.content))["成员"].iter_rows(values_only=True))
    return {row[0]: dict(zip(rows[0], row))["电话"] for row in rows[1:]}.get("m1", HIDDEN)


@pytest.mark.parametrize("read", [member_phone_json, member_phone_xlsx])
@pytest.mark.parametrize("role", ROLES)
def test_a_members_own_number_follows_the_same_rule(cov_client, people, role, read):
    """m1's number, read as a record of m1's home grid (g1) that m1 is responsible for."""
    assert read(cov_client, people, role) == expected(role, REPORT_ROLES, M1_FULL, M1_MASKED)


@pytest.mark.parametrize("role", sorted(REPORT_ROLES))
def test_the_csv_export_carries_no_phone_column(cov_client, people, role):
    r = get(cov_client, people, role, "/api/v1/exports/coverage", format="csv")
    assert r.status_code == 200, r.text
    text = r.content.decode("utf-8-sig")
    header = next(csv.reader(io.StringIO(text)))
    assert "电话" not in header
    assert not re.search(r"1[37]\d[\d*]{4}\d{4}", text)


def _phone_conflict(client, people, store):
    """A conflict on h3's phone: m1's newer edit wins over the secretary's older one."""
    base = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'h3'").fetchone()
    )
    m1, sec = (Phone(client, people.tokens[p], f"dev-{p}") for p in ("m1", "sec1"))
    edit = {"base_seq": base[0]}
    r = m1.push(
        [
            m1.mutation(
                "household.update",
                H3,
                hlc=format_hlc(1763860009000, 0, "dev-m1"),
                fields={"phone": "13700000009"},
                **edit,
            )
        ]
    )
    assert r.json()["results"][0]["status"] == "applied", r.text
    r = sec.push(
        [
            sec.mutation(
                "household.update",
                H3,
                hlc=format_hlc(1763860000000, 0, "dev-sec1"),
                fields={"phone": "13700000008"},
                **edit,
            )
        ]
    )
    assert r.json()["results"][0]["status"] == "merged", r.text


@pytest.mark.parametrize("role", ROLES)
def test_the_conflict_log_shows_both_sides_by_the_rule(cov_client, people, store, role):
    _phone_conflict(cov_client, people, store)
    r = get(cov_client, people, role, "/api/v1/sync/conflicts", household_id=H3)
    if role not in SECRETARY_ROLES:
        assert r.status_code == 403
        return
    assert r.status_code == 200, r.text
    (entry,) = r.json()["items"]
    want = expected(role, full="full", masked="masked")
    seen = (entry["value"], entry["winner"])
    if want == "full":
        assert seen == ("13700000008", "13700000009")
    else:
        assert seen == ("137****0008", "137****0009")


def test_a_restore_writes_the_stored_number_not_the_mask_its_reader_saw(cov_client, people, store):
    _phone_conflict(cov_client, people, store)
    conflict = get(cov_client, people, "bs1", "/api/v1/sync/conflicts").json()["items"][0]
    assert conflict["value"] == "137****0008"  # the branch secretary reads it masked
    r = cov_client.post(
        f"/api/v1/sync/conflicts/{conflict['id']}/restore", headers=bearer(people.tokens["bs1"])
    )
    assert r.status_code == 200, r.text
    assert r.json()["value"] == "137****0008"
    stored = store.read(lambda db: db.execute("SELECT phone FROM households WHERE id = 'h3'"))
    assert stored.fetchone()[0] == "13700000008"


def test_push_answers_show_another_phones_number_by_the_rule(cov_client, people, store):
    """m2 (not responsible for h3) loses to m1's newer number: the answer shows m2's own value
    as sent and m1's masked. Then m2 overwrites a number it never saw: the lost one is masked."""
    base = store.read(
        lambda db: db.execute("SELECT seq FROM households WHERE id = 'h3'").fetchone()
    )
    m1, m2 = (Phone(cov_client, people.tokens[p], f"dev-{p}") for p in ("m1", "m2"))
    m1.push(
        [
            m1.mutation(
                "household.update",
                H3,
                base_seq=base[0],
                hlc=format_hlc(1763860009000, 0, "dev-m1"),
                fields={"phone": "13700000009"},
            )
        ]
    )
    lost = m2.push(
        [
            m2.mutation(
                "household.update",
                H3,
                base_seq=base[0],
                hlc=format_hlc(1763860000000, 0, "dev-m2"),
                fields={"phone": "13700000007"},
            ),
            m2.mutation(
                "household.update",
                H3,
                base_seq=base[0],
                hlc=format_hlc(1763860099000, 0, "dev-m2"),
                fields={"phone": "13700000006"},
            ),
        ]
    ).json()["results"]
    assert [(x["value"], x["winner"]) for r in lost for x in r["lost"]] == [
        ("13700000007", "137****0009"),  # m2's own value lost to m1's
        ("137****0009", "13700000006"),  # m2 overwrote m1's unseen number
    ]


# -- the CLI: an operator, masked unless --show-phones ---------------------------------------------


@pytest.mark.parametrize("show", [False, True])
@pytest.mark.parametrize("as_json", [False, True])
@pytest.mark.parametrize("command", ["violations", "sample"])
def test_cli_masks_unless_show_phones(db_path, people, command, as_json, show):
    args = ["coverage", command, "--db", db_path]
    args += ["--scope", "g1", "--n", "100", "--seed", "s"] if command == "sample" else []
    args += ["--now", "2026-11-20T12:00:00Z"] if command == "violations" else []
    args += ["--json"] * as_json + ["--show-phones"] * show
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    if as_json:
        doc = json.loads(r.stdout)
        items = (
            {i["household"]["id"]: i["household"]["phone"] for i in doc["items"]}
            if command == "sample"
            else {v["id"]: v["phone"] for v in doc["items"]}
        )
        assert items[H3] == (FULL if show else MASKED)
    else:
        (line,) = [x for x in r.stdout.splitlines() if re.search(rf"\b{H3}\b", x)]
        assert (FULL if show else MASKED) in line
        assert (MASKED if show else FULL) not in line


@pytest.mark.parametrize("show", [False, True])
def test_cli_export_masks_unless_show_phones(db_path, people, tmp_path, show):
    out = tmp_path / "coverage.json"
    args = ["export", "coverage", "--db", db_path, "--format", "json", "-o", str(out)]
    r = CliRunner().invoke(cli, args + ["--show-phones"] * show)
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert {v["id"]: v["phone"] for v in doc["violations"]}[H3] == (FULL if show else MASKED)
    assert doc["member_phones"]["m1"] == (M1_FULL if show else M1_MASKED)


# -- notifications --------------------------------------------------------------------------------


def test_notification_texts_carry_no_phone_numbers(store, people, cov_settings):
    """Digests (daily, weekly) and whistle alerts name households by address and head of
    household only: no number, full or masked, of any household or person."""
    for pid in ("m1", "m2", "sec1", "bs1", "gw1", "admin"):
        store.write(
            lambda db, pid=pid: db.execute(
                "UPDATE people SET channels = ? WHERE id = ?", ['["json://127.0.0.1:9/x"]', pid]
            )
        )
    clock = FixedClock(datetime(2026, 11, 23, 8, 5, tzinfo=timezone(timedelta(hours=8))))
    with TestClient(app=create_app(cov_settings, store=store, clock=clock)) as client:
        r = client.post(
            "/api/v1/whistle/cases",
            json={"category": "噪音扰民", "household_id": H3, "description": "楼上装修"},
            headers=bearer(people.tokens["m1"]),
        )
        assert r.status_code in (200, 201), r.text
    run_once(store, cov_settings, clock, dispatch=False)
    texts = store.read(
        lambda db: db.execute("SELECT kind, recipient, title || ' ' || body FROM outbox").fetchall()
    )
    kinds = {k for k, _, _ in texts}
    assert {"digest_daily", "digest_weekly", "whistle_raised"} <= kinds, kinds
    assert "member:gw1" in {to for _, to, _ in texts}  # the grid worker is on the grid's team
    numbers = store.read(
        lambda db: [
            r[0]
            for r in db.execute("SELECT phone FROM households UNION SELECT phone FROM people")
            if r[0]
        ]
    )
    for _, _, text in texts:
        for number in numbers:
            assert number not in text and mask_phone(number) not in text
        assert not re.search(r"\d{3}\*+\d{4}|1\d{10}", text)


# -- a mask is never written back as the number ---------------------------------------------------


def stored(store, hid: str) -> tuple:
    return store.read(
        lambda db: db.execute(
            "SELECT phone, notes, seq FROM households WHERE id = ?", [hid]
        ).fetchone()
    )


def test_a_masked_phone_in_an_update_is_dropped_and_the_rest_applies(cov_client, people, store):
    m2 = Phone(cov_client, people.tokens["m2"], "dev-m2")
    seen = [c for c in m2.pull_all() if c["type"] == "household" and c["id"] == H3][-1]["data"]
    assert seen["phone"] == MASKED
    form = {**{k: seen[k] for k in ("building", "unit", "room", "head_name", "phone")}}
    results = m2.push(
        [
            m2.mutation(
                "household.update", H3, base_seq=stored(store, H3)[2], fields={**form, "notes": "x"}
            ),
            m2.mutation("household.update", H3, fields={"phone": "1**"}),  # only a mask
        ]
    ).json()["results"]
    assert [(r["status"], r.get("ignored")) for r in results] == [
        ("applied", [{"field": "phone", "code": "masked_phone"}]),
        ("applied", [{"field": "phone", "code": "masked_phone"}]),
    ]
    phone, notes, _ = stored(store, H3)
    assert (phone, notes) == (FULL, "x")
    log = store.read(lambda db: db.execute("SELECT count(*) FROM sync_conflicts").fetchone()[0])
    assert log == 0  # the mask was not a value that lost either


def test_a_household_created_with_a_masked_phone_is_stored_without_a_number(
    cov_client, people, store
):
    m2 = Phone(cov_client, people.tokens["m2"], "dev-m2")
    r = m2.push(
        [m2.mutation("household.create", "hh-new", data={"grid_id": "g1", "phone": "138****1234"})]
    ).json()["results"][0]
    assert (r["status"], r["ignored"]) == ("applied", [{"field": "phone", "code": "masked_phone"}])
    assert stored(store, "hh-new")[0] == ""


def test_a_mask_is_refused_by_the_import_too(db_path, people, tmp_path):
    f = tmp_path / "households.csv"
    f.write_text("外部编号,网格,户主姓名,联系电话\nX1,g1,钱多,138****1234\n", encoding="utf-8")
    r = CliRunner().invoke(cli, ["import", "households", str(f), "--db", db_path])
    assert r.exit_code == 1 and "bad_phone" in r.output


def test_the_reference_client_never_sends_its_masked_view_back(cov_client, people, store):
    """m2's phone shows h3 masked. Sending the shown form back (the whole record, phone
    included) edits only what changed; another mask is refused before anything is queued."""
    phone = DeviceClient(cov_client, token=people.tokens["m2"], device_id="dev-m2")
    try:
        phone.sync()
        shown = phone.household(H3)
        assert shown["phone"] == MASKED
        editable = ("building", "unit", "room", "head_name", "phone", "size", "notes")
        form = {k: shown[k] for k in editable}
        queued = phone.update_household(H3, fields={**form, "notes": "门铃坏了"})
        assert "phone" not in queued.fields and queued.fields["notes"] == "门铃坏了"
        with pytest.raises(ValueError, match="masked"):
            phone.update_household(H3, fields={"phone": "139****0000"})
        with pytest.raises(ValueError, match="masked"):
            phone.create_household("g1", head_name="新户", phone="139****0000")
        assert phone.pending_count() == 1
        phone.sync()
        assert stored(store, H3)[:2] == (FULL, "门铃坏了")
        assert phone.household(H3)["phone"] == MASKED and phone.household(H3)["notes"] == "门铃坏了"
    finally:
        phone.close()


def test_mask_shape():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("0532-88886666") == "053******6666"
    assert mask_phone("12345") == "1****"
    assert mask_phone("") == ""
    assert is_masked("138****5678") and is_masked("*") and is_masked("138＊＊＊＊5678")
    assert not is_masked("13812345678") and not is_masked("") and not is_masked(None)


# -- a change of responsible member, or of role, re-sends the number as now read ------------------


def test_a_new_responsible_member_pulls_the_full_number_and_the_old_one_the_mask(
    cov_client, people, store
):
    phones = {p: Phone(cov_client, people.tokens[p], f"dev-{p}") for p in ("m1", "m2", "bs1")}

    def read(p):
        got = [c for c in phones[p].pull_all() if c["type"] == "household" and c["id"] == H3]
        return got[-1]["data"]["phone"] if got else None

    assert [read(p) for p in phones] == [FULL, MASKED, MASKED]
    seq = stored(store, H3)[2]
    r = cov_client.post(
        "/api/v1/coverage/assignments",
        json={"household_id": H3, "member_id": "m2", "replace": True, "override_cap": True},
        headers=bearer(people.tokens["sec1"]),
    )
    assert r.status_code == 200, r.text
    assert stored(store, H3)[2] > seq  # the assignment gives the household a new seq
    assert [read(p) for p in phones] == [MASKED, FULL, MASKED]


def _person(client, token, pid, **body):
    r = client.put(f"/api/v1/people/{pid}", json=body, headers=bearer(token))
    assert r.status_code == 200, r.text


def test_a_role_change_resends_the_grids_whose_numbers_read_otherwise(cov_client, people, store):
    """m2 becomes a grid worker of g1 too: the next pull re-sends g1's households, in full; the
    role taken away, they come masked again. No reset: the scope's grids did not change."""
    m2 = Phone(cov_client, people.tokens["m2"], "dev-m2")

    def numbers(changes):
        return {c["id"]: c["data"]["phone"] for c in changes if c["type"] == "household"}

    first = numbers(m2.pull_all())
    assert first["h3"] == MASKED and first["h5"] == "13700000005"  # m2 is responsible for h5
    admin = people.tokens["admin"]
    member = {"name": "李娜", "scope": ["g1"], "branch_id": "b1"}
    _person(cov_client, admin, "m2", roles=["member", "grid_worker"], **member)
    changes = m2.pull_all()
    assert not any(c.get("reset") for c in changes)
    got = numbers(changes)
    assert set(got) == {"h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"}  # all of g1
    assert got["h3"] == FULL and not any(is_masked(p) for p in got.values())
    _person(cov_client, admin, "m2", roles=["member"], **member)
    got = numbers(m2.pull_all())
    assert got["h3"] == MASKED and got["h5"] == "13700000005"
    assert m2.pull_all() == []  # and then nothing more


def test_a_scope_version_recorded_before_migration_0011_resends_every_grid(
    cov_client, people, store
):
    m2 = Phone(cov_client, people.tokens["m2"], "dev-m2")
    m2.pull_all()
    store.write(lambda db: db.execute("UPDATE scope_versions SET phone_grids = NULL"))
    member = {"name": "李娜", "roles": ["member"], "branch_id": "b1"}
    _person(cov_client, people.tokens["admin"], "m2", scope=["g1", "g2"], **member)
    got = {c["id"] for c in m2.pull_all() if c["type"] == "household"}
    assert {"h3", "h9"} <= got  # g1 (kept, unknown masking) and g2 (entered)


def test_migration_0011_takes_full_numbers_back_from_synced_phones(cov_client, people, store):
    """A phone synced before the upgrade holds full numbers: its next pull is a reset, and the
    new snapshot is masked."""
    from gridsync.migrations import m0011_phone_privacy

    m2 = Phone(cov_client, people.tokens["m2"], "dev-m2")
    m2.pull_all()

    def upgrade(db):
        db.execute("ALTER TABLE scope_versions DROP COLUMN phone_grids")
        m0011_phone_privacy(db)

    before = store.read(current_seq)
    store.write(upgrade)
    assert store.read(current_seq) == before + 1
    changes = m2.pull_all()
    assert changes[0] == {"reset": True}
    assert [c for c in changes if c.get("id") == H3][-1]["data"]["phone"] == MASKED
    assert m2.pull_all() == []  # once: the new cursor is past the horizon


# -- grid_worker, a first-class role --------------------------------------------------------------


def test_a_grid_worker_must_serve_a_grid(cov_client, people):
    admin = people.tokens["admin"]
    r = cov_client.put(
        "/api/v1/people/gw3",
        json={"name": "郑网格员", "roles": ["grid_worker"], "scope": ["c1"]},
        headers=bearer(admin),
    )
    assert (r.status_code, r.json()["code"], r.json()["field"]) == (
        400,
        "grid_worker_scope",
        "scope",
    )
    r = cov_client.put("/api/v1/people/gw1/scope", json={"units": ["c1"]}, headers=bearer(admin))
    assert (r.status_code, r.json()["code"]) == (400, "grid_worker_scope")
    _person(cov_client, admin, "gw3", name="郑网格员", roles=["grid_worker"], scope=["g2"])
    listed = get(cov_client, people, "admin", "/api/v1/people", role="grid_worker").json()
    assert [p["id"] for p in listed["items"]] == ["gw1", "gw2", "gw3"]


def test_a_grid_worker_sees_their_grids_and_is_no_party_member(cov_client, people, store):
    mine = get(cov_client, people, "gw1", "/api/v1/households", limit=500).json()["items"]
    assert {h["grid_id"] for h in mine} == {"g1"} and len(mine) == 8
    report = get(cov_client, people, "admin", "/api/v1/coverage", level="district").json()
    assert report["rows"][0]["members"] == 5  # gw1, gw2 are not counted
    admin = people.tokens["admin"]
    _person(
        cov_client, admin, "gw1", name="周网格员", roles=["grid_worker", "member"], scope=["g1"]
    )
    report = get(cov_client, people, "admin", "/api/v1/coverage", level="district").json()
    assert report["rows"][0]["members"] == 6


def test_a_grid_worker_acts_for_the_grid_level_of_a_case(cov_client, people, store):
    r = cov_client.post(
        "/api/v1/whistle/cases",
        json={"category": "环境卫生", "grid_id": "g1", "description": "垃圾满了"},
        headers=bearer(people.tokens["sec1"]),
    )
    assert r.status_code in (200, 201), r.text
    case = r.json()["id"]
    assert "gw1" in store.read(people_for_tag, "grid:g1")  # on the grid's team
    r = cov_client.post(
        f"/api/v1/whistle/cases/{case}/actions",
        json={"action": "accept"},
        headers=bearer(people.tokens["gw1"]),
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted_by"] == "gw1"


def test_the_cli_adds_a_grid_worker(db_path, people):
    add = ["people", "add", "--db", db_path, "gw9", "--name", "王网格员"]
    r = CliRunner().invoke(cli, [*add, "--role", "grid_worker", "--scope", "g3"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["people", "--db", db_path, "--role", "grid_worker", "--json"])
    assert {p["id"] for p in msgspec.json.decode(r.stdout)} == {"gw1", "gw2", "gw9"}

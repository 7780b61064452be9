"""Convergence (SPEC section 8): any interleaving of offline edits and syncs from several phones
ends with every phone equal to the server, no visit duplicated or lost, household fields equal to
the last writer by HLC, and every losing value in the conflict log.

A hypothesis state machine drives four phones through the reference client over the real app in
process: m1 and m3 (both grid g1), m2 (grid g2) and the community secretary (both grids). They
edit the same few households offline (fields and tags), log and void visits, sync, push or pull
alone, and lose push answers (the client resends the same batch). Every written field value is
unique, so the model can tell exactly which write won and which ones lost.

Phone numbers: none of the members is responsible for the hot households, so their phones read
the numbers masked and the secretary's in full (SPEC 2, gridsync/privacy.py). "Equal to the
server" is equal to the server as that person may read it, and a masked value a phone pulled
counts as that value seen.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
import msgspec
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule
from litestar.testing import TestClient

from gridsync import org
from gridsync.app import create_app
from gridsync.clock import FixedClock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.households import HOUSEHOLD_SELECT, VISIT_SELECT, household_from_row, visit_from_row
from gridsync.privacy import ALL_PHONES, mask_phone
from gridsync.sync.client import DeviceClient
from tests.conftest import CLI, build_tiny_org

PHONES = ("m1", "m3", "m2", "sec")
HOT = ("hh-g1-1", "hh-g1-2", "hh-g2-1")  # few households, so edits collide
FIELDS = ("phone", "notes", "head_name", "size")
TAGS = ("elderly_alone", "renter", "disabled")
CODECS = {"m2": {"encoding": "msgpack", "gzip": True}, "sec": {"gzip": True}}  # m1, m3: JSON
FULL_PHONES = {"sec"}  # the community secretary; the members are responsible for none of HOT


def as_read_by(p: str, household: dict) -> dict:
    """The server's household as person ``p`` reads it (the model of SPEC 2's phone rule)."""
    if p in FULL_PHONES or not household["phone"]:
        return household
    return {**household, "phone": mask_phone(household["phone"])}


def seen_value(value: object, seen: frozenset) -> bool:
    """Whether a phone had seen ``value``: itself, or its mask as a member's phone shows it."""
    return value in seen or (isinstance(value, str) and mask_phone(value) in seen)


class LossyNetwork:
    """The app's TestClient, except that an armed push reaches the server and its answer is
    lost (a timeout): the client must resend the very same batch."""

    def __init__(self, http: httpx.Client):
        self.http = http
        self.lose_next_push = False
        self.lost = 0
        self.clamped = 0

    def request(self, method: str, url: str, **kwargs):
        response = self.http.request(method, url, **kwargs)
        if url.endswith("/sync/push") and response.status_code == 200:
            body = (
                msgspec.msgpack.decode(response.content)
                if response.headers["content-type"].startswith("application/msgpack")
                else response.json()
            )
            self.clamped += sum(1 for r in body["results"] if r.get("clock"))
        if self.lose_next_push and url.endswith("/sync/push"):
            self.lose_next_push = False
            self.lost += 1
            raise httpx.ReadTimeout("answer lost")
        return response


class Write(msgspec.Struct, frozen=True):
    phone: str
    household: str
    field: str
    value: object
    hlc: str
    seen: frozenset  # values of this field the phone had seen (pulled or its own) when writing


class Convergence(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        db_path = str(Path(self.tmp.name) / "gridsync.db")
        self.store = Store(db_path)
        self.tiny = build_tiny_org(self.store)
        self.store.write(
            org.add_people,
            [org.NewPerson(id="m3", name="陈静", roles=["member"], scope=["g1"], branch_id="b1")],
            CLI,
        )
        from gridsync import auth

        enrolled = self.store.write(auth.enroll, "m3", CLI, device_id="dev-m3")
        self.tiny.tokens["m3"], self.tiny.devices["m3"] = enrolled.token, enrolled.device_id
        self.app_client = TestClient(app=create_app(Settings(db=db_path), store=self.store))
        self.app_client.__enter__()
        self.net = LossyNetwork(self.app_client)
        # Phone clocks start at the real time, like the server's HLC; steps move them forward
        # by at most 1 s per edit (5 in a burst), so 30 steps stay inside the 5-minute skew bound
        # and no HLC is clamped: the model's last writer is the highest HLC sent.
        self.clock = FixedClock(int(time.time() * 1000))
        self.phones = {
            p: DeviceClient(
                self.net,
                token=self.tiny.tokens[p],
                device_id=self.tiny.devices[p],
                person_id=p,
                clock=self.clock,
                sleep=lambda _s: None,
                **CODECS.get(p, {}),
            )
            for p in PHONES
        }
        for phone in self.phones.values():
            phone.sync()
        self.writes: list[Write] = []
        self.visits: dict[str, str] = {}  # visit id -> phone that logged it
        self.voided: set[str] = set()
        self.counter = 0

    def teardown(self) -> None:
        if not hasattr(self, "phones"):
            return
        try:
            self.check_convergence()
        finally:
            for phone in self.phones.values():
                phone.close()
            self.app_client.__exit__(None, None, None)
            self.store.close()
            self.tmp.cleanup()

    # -- rules ------------------------------------------------------------------------------

    def _households_of(self, p: str) -> list[str]:
        return [h for h in HOT if self.phones[p].household(h) is not None]

    def _seen(self, p: str, household: str, field: str) -> frozenset:
        phone = self.phones[p]
        values = {(phone.household(household) or {}).get(field)}
        base = phone.server_copy("household").get(household)
        if base is not None:
            values.add(base.get(field))
        return frozenset(values)

    def _edit(self, data: st.DataObject) -> None:
        """One offline household edit by a random phone: some fields, maybe a tag change."""
        p = data.draw(st.sampled_from(PHONES), label="phone")
        h = data.draw(st.sampled_from(self._households_of(p)), label="household")
        names = data.draw(
            st.lists(st.sampled_from(FIELDS), max_size=2, unique=True), label="fields"
        )
        tag_change = data.draw(
            st.none() | st.tuples(st.sampled_from(TAGS), st.booleans()), label="tag (add?)"
        )
        if not names and tag_change is None:
            names = ["phone"]
        self.clock.advance(seconds=data.draw(st.integers(1, 1000), label="ms") / 1000)
        fields: dict[str, object] = {}
        for name in names:
            self.counter += 1
            fields[name] = 10 + self.counter if name == "size" else f"{name}-{p}-{self.counter}"
        seen = {name: self._seen(p, h, name) for name in names}
        tags_add = [tag_change[0]] if tag_change and tag_change[1] else []
        tags_remove = [tag_change[0]] if tag_change and not tag_change[1] else []
        m = self.phones[p].update_household(
            h, fields=fields, tags_add=tags_add, tags_remove=tags_remove
        )
        for name, value in fields.items():
            self.writes.append(Write(p, h, name, value, m.hlc, seen[name]))

    @rule(data=st.data())
    def edit(self, data: st.DataObject) -> None:
        self._edit(data)

    @rule(data=st.data(), n=st.integers(2, 5))
    def offline_burst(self, data: st.DataObject, n: int) -> None:
        """Several phones edit the same few households before anyone syncs."""
        for _ in range(n):
            self._edit(data)

    @rule(
        p=st.sampled_from(PHONES),
        data=st.data(),
        kinds=st.sets(st.sampled_from(("policy", "opinion", "safety")), max_size=2),
    )
    def log_visit(self, p: str, data: st.DataObject, kinds: set[str]) -> None:
        h = data.draw(st.sampled_from(self._households_of(p)), label="household")
        self.clock.advance(seconds=1)
        m = self.phones[p].log_visit(h, "door", kinds, f"note {self.counter}")
        self.visits[m.id] = p

    @precondition(lambda self: any(v not in self.voided for v in self.visits))
    @rule(data=st.data())
    def void_visit(self, data: st.DataObject) -> None:
        visit_id = data.draw(
            st.sampled_from(sorted(v for v in self.visits if v not in self.voided))
        )
        self.phones[self.visits[visit_id]].void_visit(visit_id)
        self.voided.add(visit_id)

    @rule(p=st.sampled_from(PHONES))
    def sync(self, p: str) -> None:
        self.phones[p].sync()

    @rule(p=st.sampled_from(PHONES))
    def push_only(self, p: str) -> None:
        self.phones[p].push()

    @rule(p=st.sampled_from(PHONES))
    def pull_only(self, p: str) -> None:
        self.phones[p].pull()

    @rule(p=st.sampled_from(PHONES))
    def push_with_lost_answer(self, p: str) -> None:
        if not self.phones[p].pending_count():
            return
        self.net.lose_next_push = True
        report = self.phones[p].push()
        assert report.applied == 0 and report.sent > 0  # the resend was answered duplicate
        assert self.phones[p].pending_count() == 0

    # -- the invariants, once everyone has synced ----------------------------------------------

    def check_convergence(self) -> None:
        for _round in range(3):
            for phone in self.phones.values():
                phone.sync()
        households = self.store.read(
            lambda db: {
                r[0]: msgspec.to_builtins(household_from_row(r, ALL_PHONES))
                for r in db.execute(f"SELECT {HOUSEHOLD_SELECT} FROM households h").fetchall()
            }
        )
        visits = self.store.read(
            lambda db: {
                # as a phone receives it: JSON (Visit.kinds is a tuple on the server; issue 13)
                r[0]: msgspec.json.decode(msgspec.json.encode(visit_from_row(r)))
                for r in db.execute(f"SELECT {VISIT_SELECT} FROM visits v").fetchall()
            }
        )
        # Every phone equals the server, within its scope.
        for p, phone in self.phones.items():
            assert phone.pending_count() == 0
            assert phone.rejected() == [], p
            mine = phone.households()
            assert mine == {h: as_read_by(p, households[h]) for h in mine}, p
            scope = self.store.read(org.resolve_scope, p)
            in_scope = {h for h, v in households.items() if scope.allows_grid(v["grid_id"])}
            assert set(mine) == in_scope, p
            assert phone.visits() == {v: visits[v] for v in phone.visits()}, p
            expected_visits = {
                v
                for v, row in visits.items()
                if households[row["household_id"]]["grid_id"]
                in {households[h]["grid_id"] for h in in_scope}
            }
            assert set(phone.visits()) == expected_visits, p
        # No visit duplicated or lost; voids applied.
        assert set(visits) == set(self.visits)
        assert {v for v, row in visits.items() if row["voided"]} == self.voided
        # Field-level last writer wins by HLC (the HLCs the phones sent: none was clamped).
        assert self.net.clamped == 0
        final: dict[tuple[str, str], Write] = {}
        for w in self.writes:
            key = (w.household, w.field)
            if key not in final or w.hlc > final[key].hlc:
                final[key] = w
        for (h, field), w in final.items():
            assert households[h][field] == w.value, (h, field, w)
        # Every losing value is in the conflict log.
        logged = conflict_values(self.store)
        event(f"conflicts logged: {min(len(logged), 5)}{'+' if len(logged) >= 5 else ''}")
        event(f"answers lost and resent: {min(self.net.lost, 2)}")
        for phone in self.phones.values():  # what phones were told they lost is logged too
            for outcome in phone.outcomes("merged"):
                for lost in outcome["lost"]:
                    assert any(
                        (outcome["id"], lost["field"]) == (h, f)
                        and (
                            v == lost["value"] or (f == "phone" and seen_value(v, {lost["value"]}))
                        )
                        for h, f, v in logged
                    ), lost
        for w in self.writes:
            if final[(w.household, w.field)] is w:
                continue
            overwritten_knowingly = any(
                o.household == w.household
                and o.field == w.field
                and o.hlc > w.hlc
                and seen_value(w.value, o.seen)
                for o in self.writes
            )
            if not overwritten_knowingly:
                assert (w.household, w.field, w.value) in logged, w


def conflict_values(store: Store) -> set[tuple[str, str, object]]:
    """(household, field, losing value) of every entry in the server's conflict log."""

    def read(db):
        rows = db.execute("SELECT household_id, field, value FROM sync_conflicts").fetchall()
        return {(r[0], r[1], msgspec.json.decode(r[2])) for r in rows}

    return store.read(read)


Convergence.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConvergence = Convergence.TestCase

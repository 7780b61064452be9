"""``gridsync simulate``: N phones doing realistic offline work against a server, then a check
that everything converged.

Each simulated day every phone visits households of its scope (door, phone, WeChat; a few
service kinds; now and then a visit voided), edits household fields and tags (a few "hot"
households per grid are edited by several phones, so concurrent edits of the same fields and tags
happen), goes offline for stretches of one to three days, and syncs at random moments in random
order. At the end every phone syncs until nothing moves, and each phone's local view is compared
with a fresh full pull of the same scope from the server.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from gridsync.clock import SYSTEM_CLOCK, Clock
from gridsync.sync.client import CHINA, DeviceClient, SyncError

CHANNELS = ("door", "door", "door", "phone", "wechat", "other")
KINDS = ("policy", "opinion", "hardship", "safety", "dispute", "environment")
TAGS = ("elderly_alone", "disabled", "low_income", "renter")
NOTES = (
    "独居老人，需每周探访",
    "子女在外地",
    "已登记低保",
    "租户，合同到期续租",
    "反映楼道照明问题",
    "家中有残疾人",
    "电话无人接听",
    "",
)


@dataclass(frozen=True)
class Phone:
    """Who a simulated phone belongs to and how it authenticates."""

    person_id: str
    device_id: str
    token: str


@dataclass
class Result:
    devices: int
    days: int
    seed: int
    mutations_pushed: int = 0
    applied: int = 0
    merged: int = 0
    duplicate: int = 0
    rejected: int = 0
    lost_values: int = 0
    visits_created: int = 0
    visits_rejected: int = 0
    visits_on_server: int = 0
    visits_voided: int = 0
    household_edits: int = 0
    syncs: int = 0
    rounds_to_quiescence: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    converged_devices: int = 0
    diverged: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (
            not self.diverged
            and not self.errors
            and self.converged_devices == self.devices
            and self.visits_on_server == self.visits_created - self.visits_rejected
        )


class Simulation:
    def __init__(
        self,
        http: httpx.Client,
        phones: list[Phone],
        *,
        days: int,
        seed: int,
        clock: Clock = SYSTEM_CLOCK,
        encoding: str = "json",
        gzip: bool = True,
        progress: Callable[[int], None] | None = None,
    ):
        self.http = http
        self.rng = random.Random(seed)
        self.days = days
        self.clock = clock
        self.progress = progress or (lambda _n: None)
        self.result = Result(devices=len(phones), days=days, seed=seed)
        self.phones = phones
        self.clients = [
            DeviceClient(
                http,
                token=p.token,
                device_id=p.device_id,
                person_id=p.person_id,
                clock=clock,
                encoding=encoding,
                gzip=gzip,
                sleep=lambda _s: None,
                rng=random.Random(seed + i),
            )
            for i, p in enumerate(phones)
        ]
        self.offline_days = [0] * len(phones)
        self.my_visits: list[list[str]] = [[] for _ in phones]
        self.created_visits: set[str] = set()
        self.voided_visits: set[str] = set()

    # -- the work of a day ------------------------------------------------------------------

    def run(self) -> Result:
        for client in self.clients:
            self._sync(client)
        # Visits are dated on the simulated days, squeezed into the last four weeks so that
        # they all stay inside the pull window (current and previous coverage cycle).
        now = datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=CHINA)
        step = timedelta(days=min(self.days, 28) / self.days)
        for day in range(self.days):
            self._day(now - step * (self.days - day))
            self.progress(1)
        self._quiesce()
        self._verify()
        return self.result

    def _day(self, date: datetime) -> None:
        events: list[tuple[str, int]] = []
        for i in range(len(self.clients)):
            if self.offline_days[i] == 0 and self.rng.random() < 0.2:
                self.offline_days[i] = self.rng.randint(1, 3)  # a stretch without network
            events += [("work", i)] * self.rng.randint(2, 6)
            if self.offline_days[i] == 0:
                events += [("sync", i)] * self.rng.randint(1, 2)
        self.rng.shuffle(events)
        for kind, i in events:
            if kind == "sync":
                self._sync(self.clients[i])
            else:
                self._work(i, date)
        self.offline_days = [max(0, d - 1) for d in self.offline_days]

    def _work(self, i: int, date: datetime) -> None:
        client, rng = self.clients[i], self.rng
        households = sorted(h for h, v in client.households().items() if v["status"] == "active")
        if not households:
            return
        roll = rng.random()
        if roll < 0.5:
            hid = rng.choice(households)
            at = (date - timedelta(minutes=rng.randint(0, 600))).replace(microsecond=0)
            kinds = rng.sample(KINDS, rng.randint(1, 3))
            q = client.log_visit(hid, rng.choice(CHANNELS), kinds, rng.choice(NOTES), at=at)
            self.my_visits[i].append(q.id)
            self.created_visits.add(q.id)
        elif roll < 0.55 and self.my_visits[i]:
            visit_id = rng.choice(self.my_visits[i])
            if visit_id not in self.voided_visits:
                client.void_visit(visit_id)
                self.voided_visits.add(visit_id)
        else:
            # Hot households: the first few of the device's list, shared with the other phones
            # of the same grid, so concurrent edits of the same fields really happen.
            hid = rng.choice(households[:3]) if rng.random() < 0.7 else rng.choice(households)
            choice = rng.random()
            if choice < 0.4:
                client.update_household(hid, fields={"phone": f"13{rng.randint(0, 10**9 - 1):09d}"})
            elif choice < 0.7:
                client.update_household(
                    hid, fields={"notes": rng.choice(NOTES), "size": rng.randint(1, 6)}
                )
            else:
                tag = rng.choice(TAGS)
                if rng.random() < 0.6:
                    client.update_household(hid, tags_add=[tag])
                else:
                    client.update_household(hid, tags_remove=[tag])
            self.result.household_edits += 1

    # -- syncing ----------------------------------------------------------------------------

    def _sync(self, client: DeviceClient) -> tuple[int, int]:
        """Sync one phone; returns (mutations sent, changes pulled)."""
        try:
            report = client.sync()
        except SyncError as exc:
            self.result.errors.append(f"{client.device_id}: {exc}")
            return 0, 0
        push = report.push
        r = self.result
        r.syncs += 1
        r.mutations_pushed += push.applied + push.merged + push.rejected
        r.applied += push.applied
        r.merged += push.merged
        r.duplicate += push.duplicate
        r.rejected += push.rejected
        r.lost_values += len(push.lost)
        return push.sent, report.pull.changes

    def _quiesce(self, max_rounds: int = 10) -> None:
        """Sync everyone, in random order, until a whole round moves nothing."""
        for round_no in range(1, max_rounds + 1):
            order = list(self.clients)
            self.rng.shuffle(order)
            moved = 0
            for client in order:
                sent, pulled = self._sync(client)
                moved += sent + pulled
            self.result.rounds_to_quiescence = round_no
            if moved == 0 and not any(c.pending_count() for c in self.clients):
                return
        self.result.errors.append(f"no quiescence after {max_rounds} rounds")

    def _verify(self) -> None:
        """Each phone's view against a fresh full pull of its scope from the server."""
        r = self.result
        on_server: set[str] = set()
        for phone, client in zip(self.phones, self.clients, strict=True):
            r.bytes_up += client.bytes_up
            r.bytes_down += client.bytes_down
            fresh = DeviceClient(
                self.http,
                token=phone.token,
                device_id=phone.device_id,
                person_id=phone.person_id,
                sleep=lambda _s: None,
            )
            try:
                fresh.pull()
                problems = diff_views(client, fresh)
                on_server |= set(fresh.visits())
            except SyncError as exc:
                problems = [f"fresh pull failed: {exc}"]
            finally:
                fresh.close()
            if client.pending_count():
                problems.append(f"{client.pending_count()} mutations still queued")
            if problems:
                r.diverged.append({"device_id": phone.device_id, "problems": problems[:10]})
            else:
                r.converged_devices += 1
        rejected = {
            o["id"] for c in self.clients for o in c.rejected() if o["op"] == "visit.create"
        }
        r.visits_created = len(self.created_visits)
        r.visits_rejected = len(self.created_visits & rejected)
        r.visits_on_server = len(self.created_visits & on_server)
        r.visits_voided = len(self.voided_visits)

    def close(self) -> None:
        for client in self.clients:
            client.close()


def diff_views(
    device: DeviceClient, server: DeviceClient, types: tuple[str, ...] = ("household", "visit")
) -> list[str]:
    """Differences between a device's view and the server's copy, one line each."""
    problems: list[str] = []
    for type_ in types:
        mine, theirs = device.all(type_), server.all(type_)
        for key in sorted(set(mine) | set(theirs)):
            if key not in theirs:
                problems.append(f"{type_} {key}: on the device only")
            elif key not in mine:
                problems.append(f"{type_} {key}: on the server only")
            elif mine[key] != theirs[key]:
                fields = sorted(
                    k
                    for k in set(mine[key]) | set(theirs[key])
                    if mine[key].get(k) != theirs[key].get(k)
                )
                problems.append(f"{type_} {key}: differs in {', '.join(fields)}")
    return problems

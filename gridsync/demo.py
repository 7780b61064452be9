"""Realistic demo data: one community (出头社区-like) or a whole district, deterministic for a seed.

The community scale follows the published figures of 出头社区 (DOMAIN.md): 6 branches, 71 party
members, 520 households, every household linked to one member. The district scale follows the
Qingdao district: 137 communities, 940 grids, about 300,000 households and 2 million visits.

Everything is drawn from ``random.Random`` instances seeded from ``(seed, stage)``, and times are
counted back from ``as_of`` (a date, midnight Asia/Shanghai), so the same seed and date give the
same rows, ids included. Visit ids are UUIDv7 built from the visit's own time and seeded random
bits; visits are written in id (= time) order so B-tree inserts stay at the end (PERFORMANCE.md).

Bulk rows go in with ``executemany`` inside chunked write transactions; the secondary indexes of
households and visits are dropped for the load and rebuilt afterwards (one sort instead of two
million random index inserts).

Stages, each a small function: :func:`plan_org`, :func:`plan_people`, :func:`plan_households`
(with :func:`assign_members`), :func:`schedule_visits` and :func:`visit_rows`; :func:`build`
writes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import msgspec
import sqlite_utils

from gridsync import audit, coverage, hotline, lifecycle, visits, whistle
from gridsync.audit import Actor
from gridsync.auth import Principal
from gridsync.clock import DAY_MS, FixedClock, iso_ms
from gridsync.config import DEFAULT_SERVICE_KINDS, CoveragePolicy, Settings
from gridsync.db import Store, next_seq
from gridsync.errors import Conflict
from gridsync.models import (
    CallbackCreate,
    ForwardRequest,
    OrderCreate,
    OrderType,
    SuperviseRequest,
    WhistleAct,
    WhistleAction,
    WhistleRaise,
)
from gridsync.notify.routing import Router
from gridsync.org import Scope, resolve_scope

CHINA = timezone(timedelta(hours=8))
CHUNK_ROWS = 50_000
POLICY = CoveragePolicy()
_EVERYTHING = Scope("demo", True, frozenset(), frozenset(), 0)  # the summary reads it all


@dataclass(frozen=True)
class Scale:
    """How big the demo is. Totals are exact; they are spread over the tree with some variation."""

    name: str
    streets: int
    communities: int
    grids: int
    households: int
    members: int
    days: int = 60


SCALES = {
    "community": Scale("community", streets=1, communities=1, grids=6, households=520, members=71),
    "district": Scale(
        "district", streets=10, communities=137, grids=940, households=300_000, members=36_000
    ),
}


# -- name lists -------------------------------------------------------------------------------

_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
# Rough frequencies (per cent) of the first 16 surnames; the rest share the remainder evenly.
_SURNAME_WEIGHTS = (
    7.1,
    7.0,
    6.7,
    5.4,
    4.6,
    3.1,
    2.2,
    2.0,
    1.8,
    1.7,
    1.3,
    1.2,
    1.1,
    1.0,
    0.9,
    0.9,
) + (0.35,) * (len(_SURNAMES) - 16)
_GIVEN_WHOLE = [
    "建国",
    "建华",
    "国强",
    "志强",
    "志明",
    "海涛",
    "文斌",
    "德胜",
    "永刚",
    "秀英",
    "桂英",
    "玉兰",
    "秀兰",
    "桂芳",
    "淑珍",
    "淑兰",
    "凤英",
    "丽华",
    "春梅",
    "红梅",
    "晓东",
    "晓燕",
    "立新",
    "卫东",
    "振华",
    "玉珍",
    "金凤",
    "宝山",
    "长青",
    "庆华",
    "子涵",
    "梓萱",
    "浩然",
    "一诺",
    "欣怡",
    "雨桐",
    "俊杰",
    "思远",
    "家豪",
    "嘉怡",
]
_GIVEN_CHARS = "伟强磊军勇杰涛斌超明刚平辉鹏华飞鑫波宇浩凯健俊帆旭宁龙林洋芳娜敏静丽艳娟霞婷雪慧颖琳晶红燕丹萍玲秀兰英梅"
_STREET_NAMES = (
    "八大峡",
    "云南路",
    "中山路",
    "江苏路",
    "八大关",
    "湛山",
    "金门路",
    "珠海路",
    "香港中路",
    "金湖路",
    "八大湖",
    "浮山新区",
)
_COMMUNITY_FIRST = "金银福安和康华兴新春丰永明清嘉宁瑞泰德鑫"
_COMMUNITY_SECOND = "山湖港园苑城桥岭湾林河泉"
_NUMERALS = "零一二三四五六七八九十"
_DEPARTMENTS = (("dept-cg", "城管局"), ("dept-zj", "住建局"))

TAG_RATES = {"elderly_alone": 0.07, "disabled": 0.04, "low_income": 0.04, "renter": 0.14}
_HOUSEHOLD_NOTES = {
    "elderly_alone": (
        "子女在外地，每周电话联系",
        "高龄独居，需定期上门",
        "患高血压，已签约家庭医生",
    ),
    "disabled": ("行动不便，需上门服务", "持残疾证，已申请护理补贴", "需轮椅出行，楼道无电梯"),
    "low_income": ("已纳入低保，每年复核", "家庭收入不稳定，关注就业帮扶", "有学生需助学帮扶"),
    "renter": ("租户，租期至年底", "外来务工人员，已登记居住证", "群租房，已提醒消防安全"),
    "": ("夜班工作，白天休息", "家有小学生", "养犬已登记", "新搬入住户", "热心参与社区志愿活动"),
}
_VISIT_NOTES = {
    "policy": (
        "宣传医保缴费政策",
        "讲解养老金资格认证流程",
        "宣传防范电信诈骗",
        "告知燃气安全检查安排",
        "宣传垃圾分类新规",
    ),
    "opinion": (
        "收集对小区停车管理的意见",
        "居民反映楼道灯不亮",
        "建议增设健身器材",
        "反映物业服务问题",
        "征求老旧小区改造意见",
    ),
    "hardship": (
        "帮助申请临时救助",
        "协助办理残疾人补贴",
        "联系志愿者代购药品",
        "协助预约就医",
        "送去慰问品",
    ),
    "safety": (
        "检查燃气管道和报警器",
        "提醒电动车不要楼道充电",
        "排查阳台堆放杂物",
        "检查独居老人家用电安全",
        "楼道消防通道已清理",
    ),
    "dispute": ("调解邻里噪音纠纷", "调解楼上漏水纠纷", "协调停车位争议", "调解家庭矛盾"),
    "environment": (
        "督促清理楼道杂物",
        "反映垃圾清运不及时",
        "检查化粪池外溢情况",
        "组织清理小广告",
    ),
}
_KIND_WEIGHTS = {
    "policy": 35,
    "opinion": 25,
    "hardship": 10,
    "safety": 20,
    "dispute": 4,
    "environment": 15,
}
PRIORITY_TAGS = frozenset(POLICY.priority_tags)


# -- plans (what will be written) -------------------------------------------------------------


@dataclass
class Grid:
    id: str
    branch_id: str
    community_id: str
    households: int
    members: int
    member_ids: list[str] = field(default_factory=list)


@dataclass
class OrgPlan:
    district_id: str
    units: list[tuple]  # org_units rows without seq: (id, kind, name, parent_id, grid_id)
    streets: list[str]
    communities: dict[str, str]  # community id -> street id
    grids: list[Grid]


@dataclass
class PersonRow:
    id: str
    name: str
    roles: list[str]
    scope: list[str]
    branch_id: str | None = None
    phone: str = ""


@dataclass
class HouseholdFacts:
    """What the visit stage needs to know about the households, one list entry per household."""

    ids: list[str] = field(default_factory=list)
    grid_ids: list[str] = field(default_factory=list)
    members: list[str | None] = field(default_factory=list)
    priority: list[bool] = field(default_factory=list)
    active: list[bool] = field(default_factory=list)


def _rng(seed: int, stage: str) -> random.Random:
    return random.Random(f"gridsync-demo:{seed}:{stage}")


def split(
    total: int, parts: int | list[int], rng: random.Random, spread: float = 0.25
) -> list[int]:
    """``total`` split into integers that vary by about +-``spread`` (around equal shares, or
    around shares proportional to ``parts`` when it is a list) and sum exactly to ``total``
    (largest remainder)."""
    base = [1] * parts if isinstance(parts, int) else parts
    weights = [b * rng.uniform(1 - spread, 1 + spread) for b in base]
    parts = len(base)
    scale = total / sum(weights)
    raw = [w * scale for w in weights]
    out = [int(r) for r in raw]
    by_remainder = sorted(range(parts), key=lambda i: raw[i] - out[i], reverse=True)
    for i in by_remainder[: total - sum(out)]:
        out[i] += 1
    return out


def _chinese_number(n: int) -> str:
    if n <= 10:
        return _NUMERALS[n]
    if n < 20:
        return "十" + _NUMERALS[n - 10]
    tens, ones = divmod(n, 10)
    return _NUMERALS[tens] + "十" + (_NUMERALS[ones] if ones else "")


def person_name(rng: random.Random) -> str:
    surname = rng.choices(_SURNAMES, weights=_SURNAME_WEIGHTS)[0]
    if rng.random() < 0.4:
        return surname + rng.choice(_GIVEN_WHOLE)
    if rng.random() < 0.3:
        return surname + rng.choice(_GIVEN_CHARS)
    return surname + rng.choice(_GIVEN_CHARS) + rng.choice(_GIVEN_CHARS)


def mobile_phone(rng: random.Random) -> str:
    """An 11-digit mainland mobile number (1xx-xxxx-xxxx without the dashes)."""
    return "1" + rng.choice("35789") + str(rng.randrange(10)) + f"{rng.randrange(10**8):08d}"


def plan_org(scale: Scale, seed: int) -> OrgPlan:
    rng = _rng(seed, "org")
    district = "d1"
    units: list[tuple] = [
        (district, "district", "市南区" if scale.communities > 1 else "端州区", None, None)
    ]
    for dept_id, name in _DEPARTMENTS:
        units.append((dept_id, "department", name, district, None))
    streets = [f"s{i:02d}" for i in range(1, scale.streets + 1)]
    street_names = (
        ["城东"]
        if scale.streets == 1
        else [
            (_STREET_NAMES[i] if i < len(_STREET_NAMES) else f"第{i + 1}")
            for i in range(scale.streets)
        ]
    )
    for sid, name in zip(streets, street_names):
        units.append((sid, "street", name + "街道", district, None))
    if scale.communities == 1:
        community_names = ["出头社区"]
    else:
        pool = [a + b for a in _COMMUNITY_FIRST for b in _COMMUNITY_SECOND]
        community_names = [n + "社区" for n in rng.sample(pool, scale.communities)]
    per_street = split(scale.communities, scale.streets, rng, spread=0.3)
    street_of = [sid for sid, n in zip(streets, per_street) for _ in range(n)]
    grids_per_community = split(scale.grids, scale.communities, rng, spread=0.3)
    households_per_grid = split(scale.households, scale.grids, rng)
    members_per_grid = split(scale.members, households_per_grid, rng, spread=0.1)
    communities: dict[str, str] = {}
    grids: list[Grid] = []
    g = 0
    for c, (street_id, name, n_grids) in enumerate(
        zip(street_of, community_names, grids_per_community), start=1
    ):
        cid = f"c{c:03d}"
        communities[cid] = street_id
        units.append((cid, "community", name, street_id, None))
        for k in range(1, n_grids + 1):
            grid = Grid(
                id=f"{cid}-g{k:02d}",
                branch_id=f"{cid}-b{k:02d}",
                community_id=cid,
                households=households_per_grid[g],
                members=members_per_grid[g],
            )
            g += 1
            grids.append(grid)
            label = f"第{_chinese_number(k)}网格"
            units.append((grid.id, "grid", label, cid, None))
            units.append((grid.branch_id, "branch", label + "党支部", cid, grid.id))
    return OrgPlan(district, units, streets, communities, grids)


def plan_people(org: OrgPlan, seed: int) -> list[PersonRow]:
    """Admin, street admins, community and branch secretaries, members, department responders.
    Fills ``grid.member_ids``."""
    rng = _rng(seed, "people")

    def person(
        pid: str, roles: list[str], scope: list[str], branch: str | None = None
    ) -> PersonRow:
        return PersonRow(pid, person_name(rng), roles, scope, branch, mobile_phone(rng))

    people = [person("admin", ["admin"], [org.district_id])]
    people += [person(f"{sid}-admin", ["street"], [sid]) for sid in org.streets]
    people += [person(f"{cid}-sec", ["community_secretary"], [cid]) for cid in org.communities]
    for dept_id, _ in _DEPARTMENTS:
        people.append(person(f"{dept_id}-r1", ["department"], [dept_id]))
    for grid in org.grids:
        people.append(person(f"{grid.branch_id}-sec", ["branch_secretary"], [grid.branch_id]))
        for m in range(1, grid.members + 1):
            pid = f"{grid.id}-m{m:02d}"
            grid.member_ids.append(pid)
            people.append(person(pid, ["member"], [grid.id], grid.branch_id))
    # last, so that every name drawn before stays as it was (issue 17)
    people.append(person("supervisor", ["supervisor"], [org.district_id]))
    people.append(PersonRow("hotline", "12345热线平台", ["hotline"], [org.district_id]))
    # one party-building instructor (党建指导员) per community (last: earlier names unchanged)
    people += [person(f"{cid}-ins", ["instructor"], [cid]) for cid in org.communities]
    return people


def assign_members(
    n: int, members: list[str], under_minimum: set[str], rng: random.Random
) -> list[str | None]:
    """Responsible members for ``n`` households in address order: each member gets a block of
    neighbours, between the policy's minimum and maximum (members in ``under_minimum`` get
    fewer; households beyond every member's maximum stay unassigned)."""
    lo, hi = POLICY.min_households_per_member, POLICY.max_households_per_member
    loads = {m: 0 for m in members}
    remaining = n
    for m in members:
        take = min(rng.randint(2, lo - 1) if m in under_minimum else lo, remaining)
        loads[m] = take
        remaining -= take
    room = [m for m in members if m not in under_minimum for _ in range(hi - loads[m])]
    for m in rng.sample(room, min(remaining, len(room))):
        loads[m] += 1
    out: list[str | None] = [m for m in members for _ in range(loads[m])]
    return out + [None] * (n - len(out))


def _addresses(n: int, first_building: int, rng: random.Random) -> Iterator[tuple[str, str, str]]:
    """Building / unit / room for ``n`` households, filling buildings of a random type."""
    building = first_building
    while True:
        floors, units, doors = rng.choice(((6, 3, 2), (6, 2, 2), (11, 2, 3), (18, 2, 4), (7, 4, 2)))
        for u in range(1, units + 1):
            for floor in range(1, floors + 1):
                for door in range(1, doors + 1):
                    if rng.random() < 0.12:  # empty or unregistered flat
                        continue
                    yield f"{building}号楼", f"{u}单元", f"{floor}{door:02d}"
                    n -= 1
                    if n == 0:
                        return
        building += 1


def _tags(rng: random.Random) -> list[str]:
    return sorted(t for t, rate in TAG_RATES.items() if rng.random() < rate)


def _size(tags: list[str], rng: random.Random) -> int:
    if "elderly_alone" in tags:
        return 1
    return rng.choices((1, 2, 3, 4, 5, 6), weights=(12, 30, 28, 17, 9, 4))[0]


def plan_households(org: OrgPlan, seed: int, created_at: str) -> Iterator[tuple]:
    """Household rows (without seq), grid by grid, in id order. Assigns responsible members:
    a few households are left unassigned and one member in a hundred (at least one) is under
    the minimum, as in real data. Yields ``(row, member_id, priority, active)``."""
    rng = _rng(seed, "households")
    all_members = [m for g in org.grids for m in g.member_ids]
    under_minimum = set(rng.sample(all_members, max(1, len(all_members) // 100)))
    total = sum(g.households for g in org.grids)
    unassigned = set(rng.sample(range(total), max(3, total // 120)))
    moved_out = set(rng.sample(range(total), total // 100))
    index = 0
    buildings: dict[str, int] = {}
    for grid in org.grids:
        first_building = buildings.get(grid.community_id, 1)
        addresses = list(_addresses(grid.households, first_building, rng))
        buildings[grid.community_id] = int(addresses[-1][0].removesuffix("号楼")) + 1
        living = [
            i
            for i in range(grid.households)
            if index + i not in unassigned and index + i not in moved_out
        ]
        members = dict(
            zip(living, assign_members(len(living), grid.member_ids, under_minimum, rng))
        )
        for i, (building, unit, room) in enumerate(addresses):
            tags = _tags(rng)
            note_key = next((t for t in tags if t in _HOUSEHOLD_NOTES), "")
            notes = rng.choice(_HOUSEHOLD_NOTES[note_key]) if rng.random() < 0.15 else ""
            status = "moved_out" if index in moved_out else "active"
            phone = mobile_phone(rng) if rng.random() < 0.96 else ""
            hid = f"{grid.id}-{i + 1:04d}"
            member = members.get(i)
            row = (
                f"hh-{hid}",
                f"demo-{hid}",
                grid.id,
                building,
                unit,
                room,
                person_name(rng),
                phone,
                _size(tags, rng),
                msgspec.json.encode(tags).decode(),
                notes,
                member,
                status,
                created_at,
                created_at,
            )
            yield row, member, bool(PRIORITY_TAGS.intersection(tags)), status == "active"
            index += 1


def schedule_visits(facts: HouseholdFacts, days: int, seed: int) -> list[list[int]]:
    """For each day of the history, the households (by index) visited that day.

    Priority households are visited every 4-7 days, others every 6.5-13 days; one member in eight
    is slow (twice the interval) and one in thirty stopped visiting halfway, so some households
    are overdue. Unassigned and moved-out households get no visits."""
    rng = _rng(seed, "schedule")
    pace: dict[str, float] = {}
    by_day: list[list[int]] = [[] for _ in range(days)]
    for i, member in enumerate(facts.members):
        if member is None or not facts.active[i]:
            continue
        if member not in pace:
            r = rng.random()
            pace[member] = 2.0 if r < 0.125 else (-1.0 if r < 0.158 else 1.0)
        interval = rng.uniform(4, 7) if facts.priority[i] else rng.uniform(6.5, 13)
        stop = days // 2 if pace[member] < 0 else days
        interval *= abs(pace[member])
        t = rng.uniform(0, interval)
        while t < stop:
            by_day[int(t)].append(i)
            t += interval * rng.uniform(0.75, 1.25)
    return by_day


def uuid7_at(ms: int, rng: random.Random) -> str:
    """A UUIDv7 for the instant ``ms`` with seeded random bits (deterministic demo ids)."""
    rand = rng.getrandbits(74)
    value = (ms << 80) | (0x7 << 76) | ((rand >> 62) << 64) | (0b10 << 62) | (rand & (2**62 - 1))
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def visit_rows(
    facts: HouseholdFacts,
    members_by_grid: dict[str, list[str]],
    day: int,
    day_start_ms: int,
    households: list[int],
    rng: random.Random,
) -> list[list]:
    """One day's visits, in id (= time) order, as visit rows without seq (seq is last)."""
    date_prefix = datetime.fromtimestamp(day_start_ms / 1000, CHINA).strftime("%Y-%m-%dT")
    kinds_all = list(DEFAULT_SERVICE_KINDS)
    kind_weights = [_KIND_WEIGHTS[k] for k in kinds_all]
    rows: list[list[Any]] = []
    for i in households:
        grid_id = facts.grid_ids[i]
        member = facts.members[i]
        if rng.random() < 0.08:  # a colleague of the grid stood in
            member = rng.choice(members_by_grid[grid_id])
        second = rng.randint(8 * 3600, 20 * 3600 + 1800)
        at_ms = day_start_ms + second * 1000
        h, rest = divmod(second, 3600)
        at = f"{date_prefix}{h:02d}:{rest // 60:02d}:{rest % 60:02d}+08:00"
        channel = rng.choices(("door", "phone", "wechat"), weights=(60, 25, 15))[0]
        kinds = sorted(
            set(
                rng.choices(
                    kinds_all,
                    weights=kind_weights,
                    k=rng.choices((1, 2, 3), weights=(60, 30, 10))[0],
                )
            )
        )
        note = rng.choice(_VISIT_NOTES[kinds[0]]) if rng.random() < 0.8 else ""
        voided = 1 if rng.random() < 0.004 else 0
        received_ms = at_ms + rng.randint(5, 6 * 3600) * 1000
        rows.append(
            [
                uuid7_at(at_ms, rng),
                facts.ids[i],
                grid_id,
                member,
                None,
                at,
                at_ms,
                channel,
                msgspec.json.encode(kinds).decode(),
                note,
                None,
                voided,
                iso_ms(received_ms),
            ]
        )
    rows.sort(key=lambda r: r[0])
    return rows


# -- writing ----------------------------------------------------------------------------------


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int) -> None:
        return None


# (label, total) -> a context manager with .update(n): a bar per step of the build. Not
# exports.Progress, which is one callback that advances one bar.
ProgressBars = Callable[[str, int], Any]


def _no_progress(label: str, total: int) -> _NoProgress:
    return _NoProgress()


def has_data(db: sqlite_utils.Database) -> bool:
    return any(
        db.execute(f"SELECT EXISTS (SELECT 1 FROM {t})").fetchone()[0]
        for t in ("households", "people", "org_units")
    )


def _refuse_if_data(db: sqlite_utils.Database) -> None:
    if has_data(db):
        raise Conflict(
            "this database already holds data (org units, people or households): "
            "serve it as it is, or add --force to delete it and build the demo anew",
            code="database_not_empty",
        )


def _write_org_and_people(
    db: sqlite_utils.Database, org: OrgPlan, people: list[PersonRow], created_at: str
) -> None:
    _refuse_if_data(db)
    first = next_seq(db, len(org.units))
    db.conn.executemany(
        "INSERT INTO org_units (id, kind, name, parent_id, grid_id, seq) VALUES (?,?,?,?,?,?)",
        [(*u, first + i) for i, u in enumerate(org.units)],
    )
    first = next_seq(db, len(people))
    db.conn.executemany(
        "INSERT INTO people (id, name, phone, roles, branch_id, seq, created_at) "
        "VALUES (?,?,?,?,?,?,?)",
        [
            (
                p.id,
                p.name,
                p.phone,
                msgspec.json.encode(sorted(p.roles)).decode(),
                p.branch_id,
                first + i,
                created_at,
            )
            for i, p in enumerate(people)
        ],
    )
    db.conn.executemany(
        "INSERT INTO person_scope (person_id, unit_id) VALUES (?, ?)",
        [(p.id, u) for p in people for u in p.scope],
    )


def _insert_households(db: sqlite_utils.Database, rows: list[tuple]) -> None:
    first = next_seq(db, len(rows))
    db.conn.executemany(
        "INSERT INTO households (id, external_id, grid_id, building, unit, room, head_name, phone,"
        " size, tags, notes, responsible_member_id, status, created_at, updated_at, seq)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        [(*r, first + i) for i, r in enumerate(rows)],
    )


def _insert_visits(db: sqlite_utils.Database, rows: list[list]) -> None:
    first = next_seq(db, len(rows))
    # visit_rows() lists a visit's columns as the demo has always written them
    visits.load(
        db,
        (
            visits.NewVisit(
                vid,
                hid,
                grid,
                member,
                device,
                at,
                at_ms,
                channel,
                kinds,
                note,
                geo,
                first + i,
                received,
                voided,
            )
            for i, (
                vid,
                hid,
                grid,
                member,
                device,
                at,
                at_ms,
                channel,
                kinds,
                note,
                geo,
                voided,
                received,
            ) in enumerate(rows)
        ),
    )


_BULK_TABLES = ("households", "visits")


def _drop_indexes(db: sqlite_utils.Database) -> list[str]:
    """Drop the explicit secondary indexes of the bulk tables; returns their CREATE statements."""
    rows = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL AND "
        f"tbl_name IN ({', '.join('?' * len(_BULK_TABLES))}) ORDER BY name",
        _BULK_TABLES,
    ).fetchall()
    for name, _ in rows:
        db.execute(f'DROP INDEX "{name}"')
    return [sql for _, sql in rows]


def _finish(db: sqlite_utils.Database, index_sql: list[str], detail: dict[str, Any]) -> None:
    for sql in index_sql:
        db.execute(sql)
    visits.recount(db)  # each household's newest visits and the kept service kinds
    audit.record(db, Actor.cli(), "demo.build", detail=detail)


# A building meeting (楼栋会) gathers at most this many households in the demo.
GROUP_VISIT_HOUSEHOLDS = 10


def _people_at_work(db: sqlite_utils.Database, org: OrgPlan, end_ms: int) -> None:
    """Issue 18's people, through the live writers (after the bulk load, with the indexes):

    - each community's instructor (``{community}-ins``) holds a building meeting (楼栋会) where
      the community's least recently contacted household lives: ONE group visit of that
      building's active households, least recently contacted first (at most
      :data:`GROUP_VISIT_HOUSEHOLDS`), and visits the next three households of the grid alone,
      on the evening of the history's last day (``gridsync report instructors`` shows them,
      the roll-up counts the households the meeting alone contacted this cycle);
    - the last member of the last grid moved away (迁出) at the end of that day, made inactive by
      :func:`gridsync.lifecycle.deactivate`, so their households are unassigned (and suggested
      by ``gridsync coverage rebalance``).

    Deterministic: no random draw, only the plan's ids and the households' order."""
    # 21:30 of the history's last day, China time: after every bulk visit (08:00-20:30), so
    # that visit ids and seqs still follow time
    at_ms = end_ms - 150 * 60_000

    def at(ms: int) -> str:
        return datetime.fromtimestamp(ms / 1000, CHINA).isoformat(timespec="seconds")

    grids_of: dict[str, list[str]] = {}
    for grid in org.grids:
        grids_of.setdefault(grid.community_id, []).append(grid.id)
    rows: list[visits.NewVisit] = []
    links: list[visits.GroupLink] = []
    for cid, grids in sorted(grids_of.items()):
        # the least recently contacted households first (never contacted: first of all)
        households = db.execute(
            "SELECT id, grid_id, building FROM households WHERE status = 'active' "
            "AND grid_id IN (SELECT value FROM json_each(?)) "
            "ORDER BY coalesce(last_visit_ms, 0), id",
            [msgspec.json.encode(grids).decode()],
        ).fetchall()
        if not households:
            continue
        _, grid_id, building = households[0]
        here = [h for h, g, b in households if g == grid_id]
        group = [h for h, g, b in households if (g, b) == (grid_id, building)]
        group = group[:GROUP_VISIT_HOUSEHOLDS]
        alone = [h for h in here if h not in group][:3]
        seq = next_seq(db, 1 + len(alone))
        instructor = f"{cid}-ins"
        rng = _rng(0, f"group-{cid}")  # the ids' random bits only: no figure depends on them
        gid = uuid7_at(at_ms, rng)
        size = len(group)  # one household only: an ordinary visit
        rows.append(
            visits.NewVisit(
                gid, group[0], grid_id, instructor, None, at(at_ms), at_ms, "door", '["policy"]', "楼栋会",
                None, seq, iso_ms(at_ms), 0, size,
            )
        )  # fmt: skip
        if size > 1:
            links += [visits.GroupLink(gid, h, grid_id) for h in group]
        rows += [
            visits.NewVisit(
                uuid7_at(at_ms + i * 60_000, rng), h, grid_id, instructor, None,
                at(at_ms + i * 60_000), at_ms + i * 60_000, "door",
                '["opinion"]', "入户走访", None, seq + i, iso_ms(at_ms),
            )
            for i, h in enumerate(alone, 1)
        ]  # fmt: skip
    visits.insert(db, rows, links)

    # the last member of the last grid (a member the other examples do not name) moved away
    leaving = org.grids[-1].member_ids[-1:] if org.grids else []
    if leaving:
        lifecycle.deactivate(
            db,
            Settings(),
            leaving[0],
            "moved_away",
            Actor.cli(),
            clock=FixedClock(end_ms - 60_000),
        )


def build(
    store: Store,
    scale: Scale,
    seed: int = 1,
    as_of: date | None = None,
    progress: ProgressBars = _no_progress,
) -> dict[str, Any]:
    """Write the demo into an empty database; returns :func:`summary`.

    ``as_of`` is the day after the history (default: today in China); the history is the
    ``scale.days`` days before its midnight. Raises Conflict when the database holds data."""
    as_of = as_of or datetime.now(CHINA).date()
    end_ms = int(datetime(as_of.year, as_of.month, as_of.day, tzinfo=CHINA).timestamp() * 1000)
    start_ms = end_ms - scale.days * DAY_MS
    created_at = iso_ms(start_ms - 30 * DAY_MS)

    org = plan_org(scale, seed)
    people = plan_people(org, seed)
    store.write(_write_org_and_people, org, people, created_at)
    index_sql = store.write(_drop_indexes)

    facts = HouseholdFacts()
    chunk: list[tuple] = []
    with progress("households", scale.households) as bar:
        for row, member, priority, active in plan_households(org, seed, created_at):
            chunk.append(row)
            facts.ids.append(row[0])
            facts.grid_ids.append(row[2])
            facts.members.append(member)
            facts.priority.append(priority)
            facts.active.append(active)
            if len(chunk) == CHUNK_ROWS:
                store.write(_insert_households, chunk)
                bar.update(len(chunk))
                chunk = []
        if chunk:
            store.write(_insert_households, chunk)
            bar.update(len(chunk))

    by_day = schedule_visits(facts, scale.days, seed)
    members_by_grid = {g.id: g.member_ids for g in org.grids}
    rng = _rng(seed, "visits")
    with progress("visits", sum(len(d) for d in by_day)) as bar:
        pending: list[list] = []
        for day, households in enumerate(by_day):
            pending += visit_rows(
                facts, members_by_grid, day, start_ms + day * DAY_MS, households, rng
            )
            if len(pending) >= CHUNK_ROWS or day == len(by_day) - 1:
                store.write(_insert_visits, pending)
                bar.update(len(pending))
                pending = []

    detail = {"scale": scale.name, "seed": seed, "as_of": as_of.isoformat()}
    store.write(_finish, index_sql, detail)
    with progress("cases", 1) as bar:
        store.write(write_cases, org, seed, end_ms)
        bar.update(1)
    store.write(_people_at_work, org, end_ms)
    store.write_unsafe_outside_transaction(lambda db: db.execute("ANALYZE"))
    return store.read(summary, end_ms)


def summary(
    db: sqlite_utils.Database, now_ms: int, settings: Settings | None = None
) -> dict[str, Any]:
    """Counts that show the demo's shape, including its realistic 1-5-N violations: every
    coverage figure is the coverage engine's (the counts of ``gridsync coverage violations`` at
    ``now_ms``), under each community's policy."""

    def one(sql: str, *params: Any) -> int:
        return db.execute(sql, params).fetchone()[0]

    units = dict(db.execute("SELECT kind, count(*) FROM org_units GROUP BY kind").fetchall())
    roles = dict(
        db.execute(
            "SELECT value, count(*) FROM people, json_each(people.roles) GROUP BY value"
        ).fetchall()
    )
    # the engine's own counts of what is at fault (what `gridsync coverage violations` counts)
    at_fault = coverage.violations(
        db, settings or Settings(), _EVERYTHING, None, now_ms=now_ms, limit=0
    ).counts
    return {
        "org_units": units,
        "people": roles,
        "households": one("SELECT count(*) FROM households"),
        "visits": one("SELECT count(*) FROM visits"),
        "unassigned_households": at_fault["unassigned"],
        "members_under_minimum": at_fault["member_under_min"],
        "overdue_households": at_fault["overdue"],
        "contacted_by_others_only": at_fault["contacted_by_others_only"],
        "group_visits": one("SELECT count(*) FROM visits WHERE group_size > 1"),
        "inactive_people": one("SELECT count(*) FROM people WHERE active = 0"),
    }


# -- a month of hotline orders and whistle cases (issue 17) ------------------------------------

CASE_DAYS = 30
MAX_CASE_COMMUNITIES = 20  # the district scale: the first 20 communities, to stay fast
_ORDER_TYPES: tuple[OrderType, ...] = ("complaint", "help", "consult", "report", "suggestion")
_ORDER_WEIGHTS: tuple[int, ...] = (30, 20, 25, 10, 15)
_ORDER_TEXTS = {
    "complaint": (
        "楼上装修噪音扰民",
        "小区垃圾清运不及时",
        "楼道堆放杂物无人清理",
        "夜间广场舞噪音",
    ),
    "help": ("独居老人家中停水", "老人走失，家属求助", "下水道堵塞，污水外溢", "电梯困人"),
    "consult": ("咨询医保缴费办法", "咨询老旧小区改造时间", "咨询居住证办理", "咨询养老补贴申领"),
    "report": ("小区内违建", "商户占道经营", "群租房安全隐患"),
    "suggestion": ("建议增设健身器材", "建议增加停车位", "建议延长社区食堂开放时间"),
}
_WHISTLE_TEXTS = (
    ("漏水", "楼道水管破裂"),
    ("安全隐患", "电动车楼道充电"),
    ("环境卫生", "绿化带垃圾堆积"),
    ("邻里纠纷", "楼上楼下漏水纠纷"),
    ("设施损坏", "单元门禁损坏"),
)


def write_cases(db: sqlite_utils.Database, org: OrgPlan, seed: int, end_ms: int) -> None:
    """A month of hotline orders and whistle cases in the demo's communities (at most
    :data:`MAX_CASE_COMMUNITIES`), handled as people do: most contacted in time, a few not
    (escalated by the same deadline check the sweep runs), most resolved, most of those called
    back by someone who did not handle them, a few supervised. Every step goes through the
    domain (``hotline``, ``whistle``) at the step's own time, so the reports (``gridsync report
    hotline``, ``gridsync whistle report``) read real figures. Deterministic for a seed."""
    settings = Settings()
    router = Router(None)
    rng = _rng(seed, "cases")
    start_ms = end_ms - CASE_DAYS * DAY_MS
    principals: dict[str, Principal] = {}

    def who(person_id: str) -> Principal:
        if person_id not in principals:
            row = db.execute("SELECT roles FROM people WHERE id = ?", [person_id]).fetchone()
            principals[person_id] = Principal(
                person_id,
                "demo",
                frozenset(msgspec.json.decode(row[0])),
                resolve_scope(db, person_id),
            )
        return principals[person_id]

    def step(
        case_id: str,
        person: str,
        action: WhistleAction,
        at_ms: int,
        note: str = "",
        satisfaction: int | None = None,
    ) -> None:
        whistle.apply_action(
            db,
            who(person),
            case_id,
            WhistleAct(action=action, note=note, satisfaction=satisfaction),
            now_ms=at_ms,
            settings=settings,
            router=router,
        )

    grids_of: dict[str, list[Grid]] = {}
    for grid in org.grids:
        grids_of.setdefault(grid.community_id, []).append(grid)
    n = 0
    for cid in list(org.communities)[:MAX_CASE_COMMUNITIES]:
        sid = org.communities[cid]
        for day in range(CASE_DAYS):
            day_ms = start_ms + day * DAY_MS
            for _ in range(rng.choices((0, 1, 2, 3), weights=(15, 35, 35, 15))[0]):
                n += 1
                kind = rng.choices(_ORDER_TYPES, weights=_ORDER_WEIGHTS)[0]
                where = rng.choices(("community", "street", "grid"), weights=(70, 15, 15))[0]
                grid = rng.choice(grids_of[cid])
                unit, handler = {
                    "community": (cid, f"{cid}-sec"),
                    "street": (sid, f"{sid}-admin"),
                    "grid": (grid.id, grid.member_ids[0]),
                }[where]
                received = day_ms + rng.randint(8 * 60, 19 * 60) * 60_000
                data = OrderCreate(
                    order_no=f"{datetime.fromtimestamp(day_ms / 1000, CHINA):%Y%m%d}{n:05d}",
                    type=kind,
                    caller_name=person_name(rng),
                    caller_phone=mobile_phone(rng),
                    address=f"{rng.randint(1, 30)}号楼",
                    description=rng.choice(_ORDER_TEXTS[kind]),
                    unit_id=unit,
                    received_at=iso_ms(received),
                )
                case, _ = hotline.receive_order(
                    db,
                    who("hotline"),
                    data,
                    now_ms=received + rng.randint(1, 20) * 60_000,
                    settings=settings,
                    router=router,
                )
                if where == "street" and rng.random() < 0.5:  # the street forwards it down
                    hotline.forward_order(
                        db,
                        who(handler),
                        case.id,
                        ForwardRequest(unit_id=cid, note="请社区核实处理"),
                        now_ms=received + 30 * 60_000,
                        settings=settings,
                        router=router,
                    )
                    handler = f"{cid}-sec"
                _handle_order(db, case.id, handler, received, end_ms, rng, step, who, settings)
    for grid in org.grids:
        if grid.community_id not in list(org.communities)[:MAX_CASE_COMMUNITIES]:
            continue
        for week in range(CASE_DAYS // 7):
            if rng.random() < 0.4:
                continue
            n += 1
            raised = (
                start_ms + (week * 7 + rng.randint(0, 6)) * DAY_MS + rng.randint(8, 18) * 3_600_000
            )
            category, text = rng.choice(_WHISTLE_TEXTS)
            raiser, *others = grid.member_ids
            case_id = f"demo-case-{n:05d}"
            whistle.raise_case(
                db,
                who(raiser),
                case_id,
                WhistleRaise(category=category, grid_id=grid.id, description=text),
                received_ms=raised,
                settings=settings,
                router=router,
            )
            handler = others[0] if others else raiser
            t = raised + rng.randint(1, 3) * 20_000
            if t >= end_ms:
                continue
            step(case_id, handler, "accept", t)
            step(case_id, handler, "arrive", t + rng.randint(3, 12) * 60_000)
            t += rng.randint(15, 60) * 60_000
            if t < end_ms:
                step(case_id, handler, "resolve", t)
                step(
                    case_id,
                    f"{grid.community_id}-sec",
                    "close",
                    t + 3_600_000,
                    satisfaction=rng.choices((5, 4, 3, 2), weights=(60, 25, 10, 5))[0],
                )
    whistle.check_deadlines(db, now_ms=end_ms, settings=settings, router=router)


def _handle_order(
    db: sqlite_utils.Database,
    case_id: str,
    handler: str,
    received: int,
    end_ms: int,
    rng: random.Random,
    step: Callable[..., None],
    who: Callable[[str], Any],
    settings: Any,
) -> None:
    """One order's life after it arrived: contact, resolution, a callback, supervision."""
    if rng.random() < 0.12:  # 督办: the supervisor presses an order of the day
        due = received + rng.randint(1, 3) * DAY_MS
        hotline.supervise(
            db,
            who("supervisor"),
            case_id,
            SuperviseRequest(note="群众反映强烈，请尽快办结", due_at=iso_ms(due)),
            now_ms=received + 3_600_000,
            settings=settings,
        )
    if rng.random() < 0.08:  # not contacted: the deadline check escalates it
        return
    t = received + rng.randint(10, 150) * 60_000
    if t >= end_ms:
        return
    step(case_id, handler, "accept", t)
    t += rng.randint(2, 96) * 3_600_000
    if t >= end_ms or rng.random() < 0.1:
        return
    step(case_id, handler, "resolve", t, note="已处理，已告知来电人")
    t += rng.randint(1, 2) * DAY_MS
    if t >= end_ms or rng.random() < 0.2:
        return  # not yet called back: not yet rated
    reached = rng.random() < 0.9
    resolved = reached and rng.random() < 0.8
    verdict: dict[str, bool] = (
        {
            "contacted": rng.random() < 0.95,
            "resolved": resolved,
            "satisfied": rng.random() < (0.85 if resolved else 0.3),
        }
        if reached
        else {}
    )
    # the district's 12345 platform calls back: it handled none of the orders
    hotline.record_callback(
        db,
        who("hotline"),
        case_id,
        CallbackCreate(
            reached=reached,
            contacted=verdict.get("contacted"),
            resolved=verdict.get("resolved"),
            satisfied=verdict.get("satisfied"),
        ),
        now_ms=t,
    )

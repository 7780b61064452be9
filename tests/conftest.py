"""Small fixtures: a fresh database file, a tiny hand-built org, the real app over it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import uvicorn
from litestar.testing import TestClient

from gridsync import auth, org
from gridsync.app import create_app
from gridsync.audit import Actor
from gridsync.clock import now_iso
from gridsync.config import Settings
from gridsync.db import Store, next_seq
from gridsync.models import OrgUnit

CLI = Actor.cli()

# fixtures of the hand-built coverage district: comm, cov_settings, cov_client
pytest_plugins = ["tests.coverage_community"]


@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "gridsync.db")


@pytest.fixture
def store(db_path) -> Iterator[Store]:
    with Store(db_path) as s:
        yield s


@dataclass
class TinyOrg:
    """district d1 > street s1 > community c1 > grids g1, g2 (branches b1, b2);
    admin, a community secretary, member m1 (g1), member m2 (g2), a department responder;
    four households per grid. ``tokens`` maps person id -> bearer token."""

    tokens: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    households: dict[str, list[str]] = field(default_factory=dict)


def build_tiny_org(store: Store) -> TinyOrg:
    units = [
        OrgUnit(id="d1", kind="district", name="市南区"),
        OrgUnit(id="s1", kind="street", name="八大峡街道", parent_id="d1"),
        OrgUnit(id="c1", kind="community", name="出头社区", parent_id="s1"),
        OrgUnit(id="g1", kind="grid", name="第一网格", parent_id="c1"),
        OrgUnit(id="g2", kind="grid", name="第二网格", parent_id="c1"),
        OrgUnit(id="b1", kind="branch", name="第一网格党支部", parent_id="c1", grid_id="g1"),
        OrgUnit(id="b2", kind="branch", name="第二网格党支部", parent_id="c1", grid_id="g2"),
        OrgUnit(id="dept1", kind="department", name="城管局", parent_id="d1"),
    ]
    people = [
        org.NewPerson(id="admin", name="区管理员", roles=["admin"], scope=["d1"]),
        org.NewPerson(id="sec", name="王书记", roles=["community_secretary"], scope=["c1"]),
        org.NewPerson(id="m1", name="张伟", roles=["member"], scope=["g1"], branch_id="b1"),
        org.NewPerson(id="m2", name="李娜", roles=["member"], scope=["g2"], branch_id="b2"),
        org.NewPerson(id="resp", name="赵强", roles=["department"], scope=["dept1"]),
    ]
    tiny = TinyOrg()

    def load(db):
        org.add_units(db, units)
        org.add_people(db, people, CLI)
        created = now_iso()
        for grid in ("g1", "g2"):
            ids = [f"hh-{grid}-{i}" for i in range(1, 5)]
            tiny.households[grid] = ids
            for i, hid in enumerate(ids, start=1):
                db.execute(
                    "INSERT INTO households (id, grid_id, building, unit, room, head_name, phone,"
                    " size, tags, seq, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [
                        hid,
                        grid,
                        "3号楼",
                        "1单元",
                        f"10{i}",
                        f"住户{grid}{i}",
                        f"1380000{i:04d}",
                        2,
                        '["elderly_alone"]' if i == 1 else "[]",
                        next_seq(db),
                        created,
                        created,
                    ],
                )

    store.write(load)
    for person in people:
        enrolled = store.write(auth.enroll, person.id, CLI, device_id=f"dev-{person.id}")
        tiny.tokens[person.id] = enrolled.token
        tiny.devices[person.id] = enrolled.device_id
    return tiny


@pytest.fixture
def tiny(store) -> TinyOrg:
    return build_tiny_org(store)


@pytest.fixture
def settings(db_path) -> Settings:
    return Settings(db=db_path)


@pytest.fixture
def client(store, settings) -> Iterator[TestClient]:
    with TestClient(app=create_app(settings, store=store)) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def served(store, settings, tiny) -> Iterator[str]:
    """The real app on a real port of 127.0.0.1 (uvicorn in a thread); yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(settings, store=store)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:  # readiness of the server, not synchronisation of the test
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)

"""Helpers for the sync server tests: build mutations and call push/pull like a phone."""

from __future__ import annotations

import itertools
import time
from typing import Any

from gridsync.clock import uuid7
from gridsync.sync.hlc import format_hlc
from tests.conftest import bearer

SYNC = {"X-Gridsync-Schema": "1", "X-Gridsync-App": "test/1.0"}


class Phone:
    """A minimal device for tests: numbers its mutations, stamps HLCs, pushes and pulls."""

    def __init__(self, client, token: str, device_id: str, *, now_ms: int | None = None):
        self.client = client
        self.token = token
        self.device_id = device_id
        self.seq = 0
        self.now_ms = now_ms
        self.counter = itertools.count()
        self.cursor: str | None = None

    def headers(self, **extra: str) -> dict[str, str]:
        return {**bearer(self.token), **SYNC, **extra}

    def hlc(self, ms: int | None = None) -> str:
        ms = ms if ms is not None else (self.now_ms or time.time_ns() // 1_000_000)
        return format_hlc(ms, next(self.counter) % 99999, self.device_id)

    def mutation(self, op: str, id: str, *, hlc: str | None = None, **rest: Any) -> dict:
        self.seq += 1
        return {
            "mid": uuid7(),
            "seq": self.seq,
            "hlc": hlc or self.hlc(),
            "op": op,
            "id": id,
            **rest,
        }

    def visit(self, household_id: str, **data: Any) -> dict:
        body = {
            "household_id": household_id,
            "at": "2026-11-20T09:30:00+08:00",
            "channel": "door",
            "kinds": ["policy"],
            "note": "",
            **data,
        }
        return self.mutation("visit.create", uuid7(), data=body)

    def push(self, mutations: list[dict], **headers: str):
        return self.client.post(
            "/api/v1/sync/push",
            headers=self.headers(**headers),
            json={"device_id": self.device_id, "mutations": mutations},
        )

    def pull_page(self, cursor: str | None = None, limit: int = 500):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        r = self.client.get("/api/v1/sync/pull", headers=self.headers(), params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def pull_all(self, limit: int = 500) -> list[dict]:
        """Pull until has_more is false; returns every change, advancing self.cursor."""
        changes = []
        while True:
            page = self.pull_page(self.cursor, limit)
            if page["reset"]:
                changes.append({"reset": True})
            changes.extend(page["changes"])
            self.cursor = page["cursor"]
            if not page["has_more"]:
                return changes


def state(changes: list[dict]) -> dict[tuple[str, str], dict]:
    """Apply changes to an empty replica: (type, id) -> data."""
    out: dict[tuple[str, str], dict] = {}
    for c in changes:
        if c.get("reset"):
            out.clear()
            continue
        key = (c["type"], c["id"])
        if c["op"] == "put":
            out[key] = c["data"]
        else:
            out.pop(key, None)
    return out

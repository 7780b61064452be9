"""今日: what waits for me today. The cases my level holds, with live countdowns to their next
deadline; the households overdue in my scope (report roles, as the violations API); values lost
in merges waiting for me (secretaries, as the conflicts API); the alerts sent to me."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.response import Template

from gridsync import coverage, whistle
from gridsync.api.console.base import Viewer, page
from gridsync.api.coverage import REPORT_ROLES
from gridsync.api.sync import SECRETARY_ROLES
from gridsync.audit import record
from gridsync.clock import Clock, iso_ms
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.notify import inbox
from gridsync.sync import conflicts

OVERDUE_KINDS = ["priority_overdue", "overdue"]


class TodayController(Controller):
    path = "/console"
    include_in_schema = False

    @get("/")
    async def today(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Template:
        p = viewer.principal
        now = clock.now_ms()
        held = await store.aread(whistle.cases_held, p.scope, limit=100)
        overdue = None
        if p.has_role(*REPORT_ROLES):
            overdue = await store.aread(
                coverage.violations,
                settings,
                p.scope,
                None,
                now_ms=now,
                kinds=OVERDUE_KINDS,
                limit=20,
            )
            await store.awrite(
                record,
                p.actor,
                "read.coverage.violations",
                None,
                {"kinds": OVERDUE_KINDS, "offset": 0, "count": len(overdue.items)},
            )
        lost = None
        if p.has_role(*SECRETARY_ROLES):
            items, total = await store.aread(
                conflicts.list_conflicts, p.scope, status="open", limit=10
            )
            lost = {"items": items, "total": total}
        # the inbox, not the outbox: a person without a channel is alerted all the same
        alerts, _ = await store.aread(inbox.list_notices, p.person_id, limit=10)
        return page(
            "today.html",
            viewer,
            "today",
            held=held,
            next_deadline=whistle.next_deadline,
            overdue=overdue,
            lost=lost,
            alerts=alerts,
            now=iso_ms(now),
        )

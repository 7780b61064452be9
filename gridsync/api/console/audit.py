"""审计 (admins): the audit log, newest first, filterable by person, action (and the actions
below it) and date, a page at a time: ``audit.list_entries`` as ``GET /api/v1/audit``, and the
read audited as that one is (``read.audit``). Dates are days in the settings' time zone."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from gridsync import audit
from gridsync.api.console.base import Viewer, page
from gridsync.api.params import PageOffset
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Invalid

PAGE = 100
DateQuery = Annotated[str | None, QueryParameter(max_length=10)]
FilterQuery = Annotated[str | None, QueryParameter(max_length=64)]


def day_ms(value: str | None, name: str, timezone: str, next_day: bool = False) -> int | None:
    """The start of a day (``YYYY-MM-DD``, the form's date field) in ``timezone``, in ms; the
    start of the next day for ``next_day`` (an "until" that includes its day)."""
    if not value:
        return None
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise Invalid(f"{name}: 日期格式应为 YYYY-MM-DD", field=name) from None
    if next_day:
        day += timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(timezone))
    return int(start.timestamp() * 1000)


class AuditController(Controller):
    path = "/console/audit"
    include_in_schema = False

    @get("/")
    async def audit_log(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        person: FilterQuery = None,
        action: FilterQuery = None,
        since: DateQuery = None,
        until: DateQuery = None,
        offset: PageOffset = 0,
    ) -> Template:
        p = viewer.principal
        p.require_role("admin")
        person, action = (person or "").strip() or None, (action or "").strip() or None
        result = await store.aread(
            audit.list_entries,
            person_id=person,
            action=action,
            since_ms=day_ms(since, "since", settings.timezone),
            until_ms=day_ms(until, "until", settings.timezone, next_day=True),
            limit=PAGE,
            offset=offset,
        )
        filters = {"person": person, "action": action, "since": since, "until": until}
        await store.awrite(
            audit.record,
            p.actor,
            "read.audit",
            None,
            {
                **{k: v for k, v in filters.items() if v},
                "offset": offset,
                "count": len(result.items),
            },
        )
        query = urlencode({k: v for k, v in filters.items() if v})
        return page(
            "audit.html",
            viewer,
            "audit",
            result=result,
            details={e.id: msgspec.json.encode(e.detail).decode() for e in result.items},
            filters={k: v or "" for k, v in filters.items()},
            query=query,
            offset=offset,
            page_size=PAGE,
        )

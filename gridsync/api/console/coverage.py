"""覆盖: the 1-5-N roll-up of my scope with drill-down (street -> community -> grid -> member ->
households), contact rate by unit as a server-rendered SVG bar chart, the grids coloured by
overdue share, the violations, the latest verified rate, and the export buttons. Every figure is
the REST API's: ``coverage.rollup`` as ``GET /api/v1/coverage?scope=``, ``coverage.violations``
as ``GET /api/v1/coverage/violations``, the export through ``api.coverage.build_coverage_export`` and ``attachment``;
reads audited as those are (``read.coverage``, ``read.coverage.violations``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Template

from gridsync import coverage, exports, households, org
from gridsync.api.console.base import Viewer, names_of, page
from gridsync.api.coverage import REPORT_ROLES, attachment, build_coverage_export
from gridsync.api.params import PageOffset, PathId
from gridsync.audit import record
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.models import CoverageRow, OrgUnit
from gridsync.org import Scope

VIOLATIONS_PAGE = 20
HOUSEHOLDS_PAGE = 100
UnitQuery = Annotated[str | None, QueryParameter(min_length=1, max_length=64)]

# The overdue share of a grid's assigned households -> its colour class (legend in the page).
OVERDUE_BANDS: list[tuple[float, str, str]] = [
    (0.0, "od0", "无逾期"),
    (0.10, "od1", "≤10%"),
    (0.25, "od2", "10–25%"),
    (1.01, "od3", ">25%"),
]


def overdue_band(rate: float | None) -> str:
    if not rate:
        return "od0"
    for bound, css, _ in OVERDUE_BANDS[1:]:
        if rate <= bound:
            return css
    return "od3"


@dataclass(frozen=True)
class Bar:
    row: CoverageRow
    y: int
    contact_w: float  # 0..CHART_W
    compliance_w: float


CHART_W = 240  # the bars' full width (100%) in the SVG's user units
BAR_H = 10
ROW_H = 30


def bars(rows: list[CoverageRow]) -> list[Bar]:
    """The bar chart's geometry: two bars a unit (已走访, 责任党员走访), 0..100%."""
    return [
        Bar(
            row=r,
            y=i * ROW_H,
            contact_w=round((r.contact_rate or 0) * CHART_W, 1),
            compliance_w=round((r.compliance_rate or 0) * CHART_W, 1),
        )
        for i, r in enumerate(rows)
    ]


def children_of(
    rows: list[CoverageRow], focus: CoverageRow, branch_grid: dict[str, str | None]
) -> list[CoverageRow]:
    """The drill-down's next level below ``focus``: the units whose parent it is, and for a grid
    its members (a member's row hangs under their branch, which serves one grid)."""
    if focus.level == "grid":
        return [
            r
            for r in rows
            if r.level == "member" and branch_grid.get(r.parent_id or "") == focus.unit_id
        ]
    if focus.level == "community":  # branches sit beside the grids: drill by grid
        return [r for r in rows if r.parent_id == focus.unit_id and r.level == "grid"]
    return [r for r in rows if r.parent_id == focus.unit_id and r.level != "branch"]


def ancestors(db: Any, scope: Scope, unit_id: str | None) -> list[OrgUnit]:
    """The units above the page's unit that my scope holds, top first: the breadcrumb trail
    (read with the org's own function)."""
    out: list[OrgUnit] = []
    while unit_id is not None and scope.allows_unit(unit_id) and len(out) < 10:
        unit = org.get_unit(db, unit_id)
        out.insert(0, unit)
        unit_id = unit.parent_id
    return out


class CoverageController(Controller):
    path = "/console/coverage"
    include_in_schema = False

    @get("/")
    async def coverage_page(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        unit: UnitQuery = None,
        offset: PageOffset = 0,
    ) -> Template:
        p = viewer.principal
        p.require_role(*REPORT_ROLES)
        now = clock.now_ms()
        report = await store.aread(coverage.rollup, settings, p.scope, unit, now_ms=now)
        await store.awrite(
            record, p.actor, "read.coverage", unit, {"levels": None, "rows": len(report.rows)}
        )
        found = await store.aread(
            coverage.violations,
            settings,
            p.scope,
            unit,
            now_ms=now,
            limit=VIOLATIONS_PAGE,
            offset=offset,
        )
        await store.awrite(
            record,
            p.actor,
            "read.coverage.violations",
            unit,
            {"kinds": None, "offset": offset, "count": len(found.items)},
        )
        rows = report.rows
        focus = next((r for r in rows if r.unit_id == unit), None) if unit else None
        focus = focus or (rows[0] if rows else None)
        branch_grid: dict[str, str | None] = {}
        if focus is not None and focus.level == "grid":
            branches, _ = await store.aread(org.list_units, p.scope, kind="branch", limit=500)
            branch_grid = {b.id: b.grid_id for b in branches}
        children = children_of(rows, focus, branch_grid) if focus else []
        grids = [r for r in rows if r.level == "grid"]
        trail = await store.aread(ancestors, p.scope, focus.parent_id if focus else None)
        people = {v.member_id for v in found.items if v.member_id}
        names = await store.aread(names_of, people, {v.grid_id for v in found.items if v.grid_id})
        return page(
            "coverage.html",
            viewer,
            "coverage",
            report=report,
            focus=focus,
            trail=trail,
            children=children,
            bars=bars(children),
            chart_w=CHART_W,
            bar_h=BAR_H,
            row_h=ROW_H,
            grids=grids,
            band=overdue_band,
            bands=OVERDUE_BANDS,
            violations=found,
            names=names,
            unit=unit or "",
            offset=offset,
            page_size=VIOLATIONS_PAGE,
            levels={**coverage.LEVEL_LABELS["zh"], "member": "党员"},
            vlabels=coverage.VIOLATION_LABELS["zh"],
        )

    @get("/members/{member_id:str}")
    async def member(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        member_id: PathId,
        offset: PageOffset = 0,
    ) -> Template:
        """A member's households (the drill-down's last step), as the households list answers
        ``responsible_member_id`` in my scope."""
        p = viewer.principal
        p.require_role(*REPORT_ROLES)
        items, total = await store.aread(
            households.list_households,
            p.scope,
            responsible_member_id=member_id,
            limit=HOUSEHOLDS_PAGE,
            offset=offset,
        )
        await store.awrite(
            record,
            p.actor,
            "read.households",
            detail={"responsible_member_id": member_id, "offset": offset, "count": len(items)},
        )
        # the member's name only with households of my scope to show (no name leaks by id)
        names = await store.aread(
            names_of, {member_id} if items else set(), {h.grid_id for h in items}
        )
        return page(
            "coverage_member.html",
            viewer,
            "coverage",
            member_id=member_id,
            items=items,
            total=total,
            names=names,
            offset=offset,
            page_size=HOUSEHOLDS_PAGE,
        )

    @get("/export")
    async def export(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        format: Annotated[exports.Format, QueryParameter()] = "xlsx",
        unit: UnitQuery = None,
    ) -> Response[bytes]:
        """The export buttons: ``GET /api/v1/exports/coverage``'s own functions (Chinese)."""
        p = viewer.principal
        data, body = await build_coverage_export(
            p, store, settings, clock.now_ms(), format, unit, "zh"
        )
        await store.awrite(exports.record_export, p.actor, format, data, clock=clock)
        return attachment(data, body, format, unit)

"""HTTP controllers of the coverage area: roll-ups, violations, assignments, rebalancing,
the assessors' sample, recorded checks (抽检), policy overrides and exports. Scope comes from the token, and with it
whose phone numbers the caller reads in full (``Scope.phones``, gridsync/privacy.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from litestar import Controller, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.spec import Operation
from litestar.params import JSONBody, QueryParameter

from gridsync import coverage, exports
from gridsync.api.errors import error_responses
from gridsync.api.params import PageLimit, PageOffset, PathId
from gridsync.audit import record
from gridsync.auth import Principal
from gridsync.clock import Clock, parse_ms
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Invalid, NotFound
from gridsync.models import (
    ApplyRequest,
    ApplyResult,
    Assignment,
    AssignRequest,
    Check,
    CheckRequest,
    CheckResult,
    CommunityPolicy,
    CoverageLevel,
    CoverageReport,
    PolicyOverride,
    RebalancePlan,
    Sample,
    ViolationKind,
    ViolationPage,
)

if TYPE_CHECKING:  # an annotation only: controllers hand the connection on and run no SQL
    import sqlite_utils

# Coverage reports, violations, samples and exports are for secretaries and admins.
REPORT_ROLES = coverage.ASSIGNER_ROLES

ScopeQuery = Annotated[
    str | None,
    QueryParameter(
        name="scope",
        min_length=1,
        max_length=64,
        description="org unit id (default: your whole scope)",
    ),
]
AtQuery = Annotated[
    str | None,
    QueryParameter(
        min_length=10,
        max_length=40,
        format="date-time",
        description="ISO 8601 time the cycle counts back from (default: now)",
    ),
]


def _now(clock: Clock, at: str | None) -> int:
    if at is None:
        return clock.now_ms()
    try:
        return parse_ms(at)
    except ValueError as exc:
        raise Invalid(f"bad time {at!r}: use ISO 8601", field="at") from exc


class CoverageController(Controller):
    path = "/api/v1/coverage"
    tags = ["coverage"]

    @get(
        "/",
        summary="1-5-N coverage roll-up at every level (member to district) of a scope",
        responses=error_responses(400, 403, 404, 503),
    )
    async def report(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        scope_id: ScopeQuery = None,
        level: Annotated[
            list[CoverageLevel] | None,
            QueryParameter(description="only these levels (repeatable)", max_length=10),
        ] = None,
        at: AtQuery = None,
    ) -> CoverageReport:
        principal.require_role(*REPORT_ROLES)
        now = _now(clock, at)
        result = await store.aread(
            coverage.rollup, settings, principal.scope, scope_id, now_ms=now, levels=level
        )
        await store.awrite(
            record,
            principal.actor,
            "read.coverage",
            scope_id,
            {"levels": level, "rows": len(result.rows)},
        )
        return result

    @get(
        "/violations",
        summary="Households and members at fault, and why (paged)",
        responses=error_responses(400, 403, 404, 503),
    )
    async def list_violations(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        scope_id: ScopeQuery = None,
        kind: Annotated[
            list[ViolationKind] | None,
            QueryParameter(description="only these kinds (repeatable)", max_length=20),
        ] = None,
        at: AtQuery = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> ViolationPage:
        principal.require_role(*REPORT_ROLES)
        page = await store.aread(
            coverage.violations,
            settings,
            principal.scope,
            scope_id,
            now_ms=_now(clock, at),
            kinds=kind,
            limit=limit,
            offset=offset,
        )
        await store.awrite(
            record,
            principal.actor,
            "read.coverage.violations",
            scope_id,
            {"kinds": kind, "offset": offset, "count": len(page.items)},
        )
        return page

    @post(
        "/assignments",
        status_code=200,
        summary="Assign or move a household's responsible member (secretaries, admins)",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def assign(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        data: JSONBody[AssignRequest],
    ) -> Assignment:
        return await store.awrite(
            coverage.assign,
            settings,
            principal.actor,
            principal.roles,
            principal.scope,
            data.household_id,
            data.member_id,
            replace=data.replace,
            override_cap=data.override_cap,
            reason=data.reason,
            clock=clock,
        )

    @get(
        "/rebalance",
        summary="Suggested members for unassigned households (nothing written)",
        responses=error_responses(400, 403, 404),
    )
    async def rebalance(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        scope_id: ScopeQuery = None,
    ) -> RebalancePlan:
        principal.require_role(*coverage.ASSIGNER_ROLES)
        return await store.aread(
            coverage.rebalance, settings, principal.scope, scope_id, now_ms=clock.now_ms()
        )

    @post(
        "/rebalance",
        status_code=200,
        summary="Apply the suggestions a secretary confirmed, each as an assignment",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def apply(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        data: JSONBody[ApplyRequest],
    ) -> ApplyResult:
        return await store.awrite(
            coverage.apply_suggestions,
            settings,
            principal.actor,
            principal.roles,
            principal.scope,
            data.items,
            clock=clock,
        )

    @get(
        "/sample",
        summary="Assessors' sample: N random households with their last visits",
        responses=error_responses(400, 403, 404, 503),
    )
    async def sample(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        seed: Annotated[str, QueryParameter(min_length=1, max_length=100)],
        scope_id: ScopeQuery = None,
        n: Annotated[int, QueryParameter(ge=1, le=1000)] = 20,
        visits: Annotated[int, QueryParameter(ge=0, le=20)] = 3,
    ) -> Sample:
        principal.require_role(*REPORT_ROLES)
        result = await store.aread(
            coverage.sample,
            principal.scope,
            scope_id,
            n,
            seed,
            visits=visits,
        )
        await store.awrite(
            record,
            principal.actor,
            "read.coverage.sample",
            scope_id,
            {"seed": seed, "n": n, "households": [i.household.id for i in result.items]},
        )
        return result

    @post(
        "/checks",
        status_code=201,
        summary="Draw a recorded check (抽检) with a server seed: from above the unit only",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def draw_check(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        data: JSONBody[CheckRequest],
    ) -> Check:
        return await store.awrite(
            coverage.draw_check,
            principal.actor,
            principal.roles,
            principal.scope,
            data.scope,
            data.n,
            clock=clock,
        )

    @put(
        "/checks/{check_id:str}/results/{household_id:str}",
        summary="Record the checker's outcome for one household of a check",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def record_check_result(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        check_id: PathId,
        household_id: PathId,
        data: JSONBody[CheckResult],
    ) -> Check:
        return await store.awrite(
            coverage.record_result,
            principal.actor,
            principal.roles,
            principal.scope,
            check_id,
            household_id,
            data,
            clock=clock,
        )

    @get(
        "/checks/{check_id:str}",
        summary="A recorded check: its households, outcomes and verified rate",
        responses=error_responses(400, 403, 404, 503),
    )
    async def show_check(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        check_id: PathId,
    ) -> Check:
        result = await store.aread(
            coverage.get_check, principal.person_id, principal.roles, principal.scope, check_id
        )
        await store.awrite(record, principal.actor, "read.coverage.check", check_id)
        return result

    @get(
        "/policies/{community_id:str}",
        summary="A community's coverage policy in force",
        responses=error_responses(400, 403, 404),
    )
    async def get_policy(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        community_id: PathId,
    ) -> CommunityPolicy:
        if not principal.scope.allows_unit(community_id):
            raise NotFound(f"no community {community_id}")
        return await store.aread(coverage.community_policy, settings, community_id)

    @put(
        "/policies/{community_id:str}",
        summary="Set a community's override (admin)",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def set_policy(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        community_id: PathId,
        data: JSONBody[PolicyOverride],
    ) -> CommunityPolicy:
        principal.require_role("admin")
        return await store.awrite(
            coverage.set_policy, settings, principal.actor, community_id, data, clock=clock
        )

    @delete(
        "/policies/{community_id:str}",
        status_code=200,
        summary="Clear a community's override: the district default applies (admin)",
        responses=error_responses(400, 403, 404, 503),
    )
    async def clear_policy(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        community_id: PathId,
    ) -> CommunityPolicy:
        principal.require_role("admin")
        return await store.awrite(
            coverage.clear_policy, settings, principal.actor, community_id, clock=clock
        )


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


# The export's body in each format (exports.CONTENT_TYPES); the JSON one as exports.write_json
# writes it. Its rows and violations are the report's own types, in the document already.
_EXPORT_CONTENT: dict[str, Any] = {
    exports.CONTENT_TYPES["csv"]: {"schema": {"type": "string"}},
    exports.CONTENT_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
    exports.CONTENT_TYPES["json"]: {
        "schema": {
            "type": "object",
            "required": ["scope_id", "at", "levels", "member_phones", "violations"],
            "properties": {
                "scope_id": {"type": ["string", "null"]},
                "at": {"type": "string", "format": "date-time"},
                "levels": {
                    "type": "object",
                    "description": "rows by level, district first",
                    "additionalProperties": {"type": "array", "items": _ref("CoverageRow")},
                },
                "member_phones": {
                    "type": "object",
                    "description": "member id -> phone, masked unless the reader may see it",
                    "additionalProperties": {"type": "string"},
                },
                "violations": {"type": "array", "items": _ref("Violation")},
            },
        }
    },
}


@dataclass
class ExportOperation(Operation):
    """Describes the export's body in each of its formats (Litestar names one media type per
    response, and this handler returns bytes of the format asked for)."""

    def to_schema(self) -> dict[str, Any]:
        result = super().to_schema()
        ok = result["responses"]["200"]
        ok["description"] = "the export, in the format asked for (as an attachment)"
        ok["content"] = _EXPORT_CONTENT
        return result


class ExportController(Controller):
    path = "/api/v1/exports"
    tags = ["coverage"]

    @get(
        "/coverage",
        summary="Coverage export (CSV, XLSX or JSON) of a scope; audited",
        media_type="application/octet-stream",
        operation_class=ExportOperation,
        responses=error_responses(400, 403, 404, 503),
    )
    async def export_coverage(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
        format: Annotated[exports.Format, QueryParameter()] = "xlsx",
        scope_id: ScopeQuery = None,
        lang: Annotated[str, QueryParameter(pattern="^(zh|en)$", max_length=2)] = "zh",
        at: AtQuery = None,
    ) -> Response[bytes]:
        principal.require_role(*REPORT_ROLES)
        data, body = await build_coverage_export(
            principal, store, settings, _now(clock, at), format, scope_id, lang
        )
        await store.awrite(exports.record_export, principal.actor, format, data, clock=clock)
        return attachment(data, body, format, scope_id)


async def build_coverage_export(
    principal: Principal,
    store: Store,
    settings: Settings,
    now: int,
    format: exports.Format,
    scope_id: str | None,
    lang: str,
) -> tuple[exports.ExportData, bytes]:
    """The coverage export's data and file (report roles only): the REST export's and the
    console's 覆盖 page's export buttons; each then audits it (``exports.record_export``)."""
    principal.require_role(*REPORT_ROLES)

    def build(db: sqlite_utils.Database) -> tuple[exports.ExportData, bytes]:
        data = exports.export_data(db, settings, principal.scope, scope_id, now_ms=now)
        return data, exports.render(data, format, lang)

    return await store.aread(build)


def attachment(
    data: exports.ExportData, body: bytes, format: exports.Format, scope_id: str | None
) -> Response[bytes]:
    """The export as a download, named after its scope and day."""
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", scope_id or "all")
    name = f"coverage-{stem}-{data.at[:10].replace('-', '')}.{format}"
    return Response(
        content=body,
        media_type=exports.CONTENT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


CONTROLLERS: list[type] = [CoverageController, ExportController]

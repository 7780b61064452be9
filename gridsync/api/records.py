"""HTTP controllers of every record in and out (issue 18): imports of people and org units
(admins), exports of visits, cases, the assignment log, the conflict log and the audit log
(secretaries and admins, in their scope; the audit log for admins), and the audit log read a
page at a time (admins)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.openapi.spec import Operation
from litestar.params import PathParameter, QueryParameter

from gridsync import audit, exports, importer, org_import, record_exports
from gridsync.api.coverage import REPORT_ROLES, AtQuery, ScopeQuery, _now
from gridsync.api.errors import error_responses
from gridsync.api.params import PageLimit, PageOffset
from gridsync.auth import Principal
from gridsync.clock import Clock, parse_ms
from gridsync.db import Store
from gridsync.errors import Invalid
from gridsync.models import AuditPage, ImportResult

if TYPE_CHECKING:  # an annotation only: controllers hand the connection on and run no SQL
    import sqlite_utils

XLSX = exports.CONTENT_TYPES["xlsx"]
TimeQuery = Annotated[datetime | None, QueryParameter(description="ISO 8601 time")]


def _ms(value: datetime | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return parse_ms(value)
    except (ValueError, OverflowError) as exc:
        raise Invalid(f"{name} is not an ISO 8601 time", field=name) from exc


@dataclass
class ImportOperation(Operation):
    """Describes the file the import handler reads itself (the raw body: a CSV or an XLSX)."""

    def to_schema(self) -> dict[str, Any]:
        result = super().to_schema()
        result["requestBody"] = {
            "required": True,
            "description": "the file itself: CSV (UTF-8 or GB18030) or XLSX, at most 8 MiB; "
            "`format` says which (default: by Content-Type, else csv)",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
        return result


class ImportController(Controller):
    path = "/api/v1/imports"
    tags = ["records"]

    @post(
        "/{kind:str}",
        status_code=200,
        summary="Import people or org units from a CSV or XLSX file (admin); dry_run previews",
        description="The same checks as PUT /api/v1/people/{id} and /api/v1/org-units/{id}, "
        "every bad row numbered as the spreadsheet shows it; if any row is bad nothing is "
        "written (400 import_rejected, the rows in `errors`). Importing the same file again "
        "changes nothing. Headers as `gridsync import people|units --help` lists them.",
        operation_class=ImportOperation,
        responses=error_responses(400, 403, 409, 413, 503),
    )
    async def import_file(
        self,
        request: Request,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        kind: Annotated[Literal["people", "units"], PathParameter()],
        dry_run: Annotated[bool, QueryParameter()] = False,
        format: Annotated[Literal["csv", "xlsx"] | None, QueryParameter()] = None,
        ignore_unknown_columns: Annotated[bool, QueryParameter()] = False,
    ) -> ImportResult:
        principal.require_role("admin")
        if format is None:
            format = "xlsx" if XLSX in request.headers.get("content-type", "") else "csv"
        body = await request.body()
        sheet = importer.read_upload(
            body,
            f"upload.{format}",
            ignore_unknown_columns=ignore_unknown_columns,
            register=org_import.REGISTERS[kind],
        )
        if dry_run:
            return await store.aread(org_import.preview, kind, sheet)
        return await store.awrite(
            org_import.import_sheet, kind, sheet, principal.actor, clock=clock
        )


@dataclass
class RecordExportOperation(Operation):
    """Describes the export's body in each of its formats."""

    def to_schema(self) -> dict[str, Any]:
        result = super().to_schema()
        ok = result["responses"]["200"]
        ok["description"] = "the export, in the format asked for (as an attachment)"
        ok["content"] = {
            exports.CONTENT_TYPES["csv"]: {"schema": {"type": "string"}},
            exports.CONTENT_TYPES["xlsx"]: {"schema": {"type": "string", "format": "binary"}},
            exports.CONTENT_TYPES["json"]: {
                "schema": {
                    "type": "object",
                    "required": ["kind", "scope_id", "at", "since", "until"],
                    "properties": {
                        "kind": {"type": "string"},
                        "scope_id": {"type": ["string", "null"]},
                        "at": {"type": "string", "format": "date-time"},
                        "since": {"type": ["string", "null"]},
                        "until": {"type": ["string", "null"]},
                    },
                    "description": "the records under the key named by `kind` (English keys)",
                }
            },
        }
        return result


class RecordExportController(Controller):
    path = "/api/v1/exports"
    tags = ["records"]

    @get(
        "/{kind:str}",
        summary="Export visits, cases (with timelines), the assignment, conflict or audit log",
        description="CSV, XLSX (Chinese headers; lang=en for English) or JSON, of the caller's "
        "scope (or `scope`), phone numbers as the caller may read them; the audit log is for "
        "admins. At most 500,000 records (400 export_too_large). Audited.",
        media_type="application/octet-stream",
        operation_class=RecordExportOperation,
        responses=error_responses(400, 403, 404, 503),
    )
    async def export_records(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        kind: Annotated[
            Literal["visits", "cases", "assignments", "conflicts", "audit"], PathParameter()
        ],
        format: Annotated[exports.Format, QueryParameter()] = "xlsx",
        scope_id: ScopeQuery = None,
        lang: Annotated[str, QueryParameter(pattern="^(zh|en)$", max_length=2)] = "zh",
        since: TimeQuery = None,
        until: TimeQuery = None,
        at: AtQuery = None,
    ) -> Response[bytes]:
        principal.require_role(*(("admin",) if kind == "audit" else REPORT_ROLES))
        since_ms, until_ms, now = _ms(since, "since"), _ms(until, "until"), _now(clock, at)

        def build(db: sqlite_utils.Database) -> tuple[record_exports.RecordExport, bytes]:
            data = record_exports.export_records(
                db,
                kind,
                principal.scope,
                scope_id,
                since_ms=since_ms,
                until_ms=until_ms,
                now_ms=now,
            )
            return data, record_exports.render(data, format, lang)

        data, body = await store.aread(build)
        await store.awrite(record_exports.record_export, principal.actor, format, data, clock=clock)
        stem = re.sub(r"[^A-Za-z0-9_.-]", "_", scope_id or "all")
        name = f"{kind}-{stem}-{data.at[:10].replace('-', '')}.{format}"
        return Response(
            content=body,
            media_type=exports.CONTENT_TYPES[format],
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["records"]

    @get(
        "/",
        summary="The audit log, newest first (admins); paged; the read is audited too",
        responses=error_responses(400, 403, 503),
    )
    async def list_audit(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        person: Annotated[str | None, QueryParameter(min_length=1, max_length=64)] = None,
        action: Annotated[
            str | None,
            QueryParameter(
                min_length=1,
                max_length=64,
                description="this action and those below it (export: export.visits, ...)",
            ),
        ] = None,
        since: TimeQuery = None,
        until: TimeQuery = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> AuditPage:
        principal.require_role("admin")
        filters = {"person": person, "action": action, "since": since, "until": until}
        page = await store.aread(
            audit.list_entries,
            person_id=person,
            action=action,
            since_ms=_ms(since, "since"),
            until_ms=_ms(until, "until"),
            limit=limit,
            offset=offset,
        )
        await store.awrite(
            audit.record,
            principal.actor,
            "read.audit",
            None,
            {
                **{k: str(v) for k, v in filters.items() if v is not None},
                "offset": offset,
                "count": len(page.items),
            },
        )
        return page


CONTROLLERS: list[type] = [ImportController, RecordExportController, AuditController]

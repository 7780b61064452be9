"""Wire types of every record in and out (issue 18): the answer of a people or org-unit import
(row-numbered errors, the same shape as the household import's), and the audit log as
``GET /api/v1/audit`` and ``gridsync audit --json`` give it."""

from __future__ import annotations

from typing import Any

import msgspec
from msgspec import Struct


class RowError(Struct, kw_only=True):
    """One bad row of an imported file: its number as the spreadsheet shows it (row 1 is the
    header), the field at fault (None for the whole row), a code and a message naming both."""

    row: int
    column: str | None
    code: str
    message: str


class ImportResult(Struct, kw_only=True):
    """What an import of people or org units does (or, with ``dry_run``, would do): counts, and
    every bad row. ``written`` is false on a dry run and whenever a row is bad (then nothing
    is written)."""

    kind: str  # people or units
    source: str
    rows: int
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    dry_run: bool = False
    written: bool = False
    ignored_columns: list[str] = msgspec.field(default_factory=list)
    errors: list[RowError] = msgspec.field(default_factory=list)


class AuditEntry(Struct, kw_only=True):
    """One line of the audit log: who (person and device; ``cli`` for the operator) did what
    (``action``, e.g. ``people.upsert``, ``export.visits``, ``read.coverage``) to what, when
    (server clock), with the action's own details."""

    id: int
    at: str
    person_id: str | None
    device_id: str | None
    action: str
    target: str | None
    detail: dict[str, Any]


class AuditPage(Struct, kw_only=True):
    items: list[AuditEntry]
    total: int
    limit: int
    offset: int

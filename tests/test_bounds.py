"""Every input has a bound (issue 12): a walk over every msgspec Struct a client can send, and
over every parameter of every route, fails naming the field that has none.

What a client sends: the push envelope and each op's ``data`` type (the op registry), what
``fields`` converts into, the pull cursor, and every JSON body of every route of the real app;
plus everything reachable from those. The wire types of ``gridsync schemas`` that are not among
them must be listed in RESPONSE_ONLY with the reason, so that a new wire type is classified on
purpose rather than forgotten.
"""

from __future__ import annotations

import types
import typing
from typing import Any

import msgspec
from litestar.params import BodyKwarg, ParameterKwarg
from msgspec import inspect as mi

from gridsync import schemas
from gridsync.app import create_app
from gridsync.config import Settings
from gridsync.models import HouseholdFields, PushRequest
from gridsync.sync import pull
from gridsync.sync.registry import OPS

# Server -> client only: the server builds them, a client never sends them.
_PAGE = "a page of results"
RESPONSE_ONLY: dict[str, str] = {
    "ErrorBody": "every error body",
    "OrgUnit": "read: org units",
    "Person": "read: people",
    "Household": "read and pulled: households",
    "Visit": "read and pulled: visits",
    "Policy": "read and pulled: the coverage policy",
    "Me": "GET /me",
    "Device": "read: devices",
    "Enrolled": "the answer to an enrolment",
    "OrgUnitPage": _PAGE,
    "PersonPage": _PAGE,
    "HouseholdPage": _PAGE,
    "VisitPage": _PAGE,
    "DevicePage": _PAGE,
    "ConsoleLink": "the answer to a console sign-in link request",
    "ConsoleSession": "read: console sessions",
    "ConsoleSessionPage": _PAGE,
    "PushResponse": "the answer to a push",
    "MutationResult": "one result of a push",
    "LostValue": "a value that lost a merge, in a push answer",
    "IgnoredField": "a field a push dropped (a masked phone sent back), in a push answer",
    "Change": "one change of a pull page",
    "PullResponse": "a pull page",
    "SyncStatus": "GET /sync/status",
    "ConflictEntry": "read: the conflict log",
    "ConflictPage": _PAGE,
    "CommunityPolicy": "read: a community's policy",
    "CoverageRow": "a row of a coverage report",
    "CoverageReport": "a coverage report",
    "Violation": "a row of the violations list",
    "ViolationPage": _PAGE,
    "Assignment": "the answer to an assignment",
    "Suggestion": "a row of a rebalancing plan",
    "RebalancePlan": "a rebalancing plan",
    "SampledHousehold": "a row of an assessors' sample",
    "Sample": "an assessors' sample",
    "Check": "a recorded check (抽检)",
    "CheckedHousehold": "a household of a recorded check",
    "CheckedVisit": "the last visit of a checked household",
    "BurdenReport": "the burden report",
    "BurdenRow": "a row of the burden report",
    "AlertsActed": "part of a row of the burden report",
    "InstructorReport": "the instructors' report",
    "InstructorRow": "a row of the instructors' report",
    "Deactivation": "what deactivating a person did",
    "ApplyOutcome": "one outcome of applying a plan",
    "ApplyResult": "the answer to applying a plan",
    "Deadlines": "part of a whistle case",
    "Notice": "pulled: a notice of the person's inbox",
    "UnreachablePerson": "a row of gridsync report unreachable --json",
    "CaseEvent": "part of a whistle case",
    "WhistleCase": "read and pulled: whistle cases",
    "CasePage": _PAGE,
    "ReportRow": "a row of the whistle report",
    "WhistleReport": "the whistle report",
    "OutboxEntry": "read: the outbox",
    "OutboxPage": _PAGE,
    "ImportResult": "the answer to an import of people or org units (the file is the body)",
    "RowError": "a bad row of an import, in its answer",
    "AuditEntry": "read: the audit log",
    "AuditPage": _PAGE,
    "OrderInfo": "part of a whistle case: a hotline order",
    "CallbackInfo": "part of a whistle case: an order's latest callback",
    "SupervisionInfo": "part of a whistle case: its supervision",
    "HotlineRow": "a row of the hotline report",
    "HotlineReport": "the hotline report (the three rates)",
    "SupervisedRow": "a row of the supervised cases' report",
    "SupervisedReport": "the supervised cases' report",
}

# Fields that carry a value of any shape, bounded by something other than a Meta.
UNBOUNDED_BY_DESIGN = {
    # A Raw takes no Meta: its size is capped by the push body cap (4 MiB before and after gzip)
    # and its content is decoded by the op's data Struct, which this walk checks too.
    ("Mutation", "data"),
    # The values of ``fields`` are converted into HouseholdFields (checked here); the dict
    # itself is bounded in keys (MAX_UPDATE_FIELDS) and the body cap bounds the values' size.
    ("Mutation", "fields{}"),
}

_SIZED = (mi.StrType, mi.BytesType, mi.ByteArrayType, mi.MemoryViewType)
_COLLECTIONS = (mi.ListType, mi.SetType, mi.FrozenSetType, mi.VarTupleType, mi.DictType)


def _problems(roots: list[type]) -> tuple[list[str], set[type]]:
    """(unbounded fields as 'Struct.field: what', every Struct reached)."""
    seen: set[type] = set()
    stack = list(roots)
    found: list[str] = []

    def visit(t: mi.Type, where: str, owner: str) -> None:
        if isinstance(t, mi.StructType):
            stack.append(t.cls)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                visit(member, where, owner)
        elif isinstance(t, mi.Metadata):
            visit(t.type, where, owner)
        elif isinstance(t, _SIZED):
            if t.max_length is None:
                found.append(f"{owner}.{where}: str/bytes without max_length")
        elif isinstance(t, _COLLECTIONS):
            if t.max_length is None:
                found.append(f"{owner}.{where}: {type(t).__name__} without max_length")
            if isinstance(t, mi.DictType):
                visit(t.key_type, f"{where}{{key}}", owner)
                visit(t.value_type, f"{where}{{}}", owner)
            else:
                visit(t.item_type, f"{where}[]", owner)
        elif isinstance(t, mi.TupleType):
            for i, item in enumerate(t.item_types):
                visit(item, f"{where}[{i}]", owner)
        elif isinstance(t, mi.IntType):
            if (t.ge is None and t.gt is None) or (t.le is None and t.lt is None):
                # SQLite holds 64 bits: an unbounded int overflows a query (a 500)
                found.append(f"{owner}.{where}: int without a range")
        elif isinstance(t, (mi.AnyType, mi.RawType)) and (owner, where) not in UNBOUNDED_BY_DESIGN:
            found.append(f"{owner}.{where}: {type(t).__name__} (any value)")

    while stack:
        cls = stack.pop()
        if cls in seen:
            continue
        seen.add(cls)
        for f in mi.type_info(cls).fields:
            visit(f.type, f.name, cls.__name__)
    return found, seen


def _app():
    return create_app(Settings(db=":memory:"))


def _request_roots() -> list[type]:
    roots: list[type] = [PushRequest, HouseholdFields, pull.Cursor]
    roots += [spec.data_type for spec in OPS.values() if spec.data_type]
    for route in _app().routes:
        for handler in getattr(route, "route_handlers", ()):
            data = handler.parsed_fn_signature.parameters.get("data")
            if data is not None:
                roots += [
                    t for t in typing.get_args(data.annotation) or [data.annotation] if t.__module__
                ]
    return [t for t in roots if isinstance(t, type) and issubclass(t, msgspec.Struct)]


def test_every_struct_a_client_sends_is_bounded():
    problems, _ = _problems(_request_roots())
    assert problems == [], "fields without a bound:\n" + "\n".join(problems)


def test_every_wire_type_is_either_sent_by_clients_or_listed_as_response_only():
    _, sent = _problems(_request_roots())
    sent_names = {t.__name__ for t in sent}
    _, reached = _problems(schemas.wire_types())
    wire = {t.__name__ for t in reached}
    unclassified = sorted(wire - sent_names - set(RESPONSE_ONLY))
    assert unclassified == [], (
        f"classify these wire types (bounded, or RESPONSE_ONLY): {unclassified}"
    )
    wrongly_exempt = sorted(sent_names & set(RESPONSE_ONLY))
    assert wrongly_exempt == [], f"clients send these: they must be bounded: {wrongly_exempt}"
    assert set(RESPONSE_ONLY) <= wire, "RESPONSE_ONLY names a type that is no longer on the wire"


def _unbounded_parameter(name: str, annotation: Any, kwarg: ParameterKwarg) -> str | None:
    union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    types_ = typing.get_args(annotation) if union else (annotation,)
    for t in types_:
        if t is type(None):
            continue
        origin = typing.get_origin(t) or t
        if origin is typing.Literal or t in (bool,) or getattr(t, "__name__", "") == "datetime":
            continue
        if origin is int:
            if (kwarg.ge is None and kwarg.gt is None) or (kwarg.le is None and kwarg.lt is None):
                return f"{name}: int without a range"
            continue
        if origin in (str, list):
            if kwarg.max_length is None:
                return f"{name}: {origin.__name__} without max_length"
            continue
        return f"{name}: {t!r} (add it to this check)"
    return None


def test_every_query_path_and_header_parameter_is_bounded():
    problems = []
    for route in _app().routes:
        for handler in getattr(route, "route_handlers", ()):
            if not handler.fn.__module__.startswith("gridsync."):
                continue  # Litestar's own routes (the OpenAPI documents)
            dependencies = set(handler.resolve_dependencies())
            for name, fd in handler.parsed_fn_signature.parameters.items():
                if name in dependencies or name in ("request", "scope", "data"):
                    continue
                kwarg = fd.kwarg_definition
                if isinstance(kwarg, BodyKwarg):
                    continue
                if not isinstance(kwarg, ParameterKwarg):
                    kwarg = ParameterKwarg()  # a bare parameter: no bound at all
                found = _unbounded_parameter(name, fd.annotation, kwarg)
                if found:
                    problems.append(f"{route.path} {handler.fn.__name__} {found}")
    assert problems == [], "parameters without a bound:\n" + "\n".join(problems)


def test_the_walk_finds_an_unbounded_field():
    """The check itself: a Struct with an unbounded list and string is caught, by name."""

    class Careless(msgspec.Struct):
        names: list[str]
        note: str = ""

    problems, _ = _problems([Careless])
    assert "Careless.names: ListType without max_length" in problems
    assert "Careless.names[]: str/bytes without max_length" in problems
    assert "Careless.note: str/bytes without max_length" in problems

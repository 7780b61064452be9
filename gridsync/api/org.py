"""API for the admin and secretary side: org units, people, households, visits, /me (reads in
the caller's scope; writes of org units, people and scopes for admins)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from litestar import Controller, get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, QueryParameter

from gridsync import coverage, households, lifecycle, org
from gridsync.api.errors import error_responses
from gridsync.api.params import IdPath, IdQuery, PageLimit, PageOffset, PathId
from gridsync.audit import record
from gridsync.auth import Principal
from gridsync.clock import now_iso
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import NotFound
from gridsync.models import (
    DeactivateRequest,
    Deactivation,
    Household,
    HouseholdPage,
    HouseholdStatus,
    Me,
    OrgUnit,
    OrgUnitPage,
    Person,
    PersonPage,
    PersonWrite,
    Role,
    ScopeWrite,
    UnitKind,
    UnitWrite,
    VisitPage,
)

if TYPE_CHECKING:  # an annotation only: controllers hand the connection on and run no SQL
    import sqlite_utils


class MeController(Controller):
    path = "/api/v1/me"
    tags = ["auth"]

    @get(
        "/",
        summary="The caller: person, roles, scope, policy",
        responses=error_responses(403),
    )
    async def me(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
    ) -> Me:
        person = await store.aread(org.get_person, principal.person_id)
        scope = principal.scope
        policy = await store.aread(coverage.policy_of_scope, settings, scope)
        return Me(
            person=person,
            device_id=principal.device_id,
            roles=sorted(principal.roles),
            scope=person.scope,
            grid_ids=sorted(scope.grid_ids),
            policy=policy,
            server_time=now_iso(),
        )


class OrgUnitController(Controller):
    path = "/api/v1/org-units"
    tags = ["org"]

    @get(
        "/",
        summary="Org units in the caller's scope",
        responses=error_responses(400, 403),
    )
    async def list_units(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        kind: Annotated[UnitKind | None, QueryParameter()] = None,
        parent_id: IdQuery = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> OrgUnitPage:
        items, total = await store.aread(
            org.list_units,
            principal.scope,
            kind=kind,
            parent_id=parent_id,
            limit=limit,
            offset=offset,
        )
        return OrgUnitPage(items=items, total=total, limit=limit, offset=offset)

    @get("/{unit_id:str}", summary="One org unit", responses=error_responses(400, 403, 404))
    async def get_unit(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        unit_id: PathId,
    ) -> OrgUnit:
        if not principal.scope.allows_unit(unit_id):
            raise NotFound(f"no org unit {unit_id}")
        return await store.aread(org.get_unit, unit_id)

    @put(
        "/{unit_id:str}",
        summary="Create an org unit, or rename or move it (admins)",
        responses=error_responses(400, 403, 409, 413, 503),
    )
    async def put_unit(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        unit_id: IdPath,
        data: JSONBody[UnitWrite],
    ) -> OrgUnit:
        principal.require_role("admin")
        return await store.awrite(org.put_unit, unit_id, data, principal.actor)


class PeopleController(Controller):
    path = "/api/v1/people"
    tags = ["org"]

    @get("/", summary="People in the caller's scope", responses=error_responses(400, 403, 503))
    async def list_people(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        role: Annotated[Role | None, QueryParameter()] = None,
        unit_id: IdQuery = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> PersonPage:
        items, total = await store.aread(
            org.list_people, principal.scope, role=role, unit_id=unit_id, limit=limit, offset=offset
        )
        await store.awrite(
            record,
            principal.actor,
            "read.people",
            detail={"role": role, "unit_id": unit_id, "count": len(items)},
        )
        return PersonPage(items=items, total=total, limit=limit, offset=offset)

    @get("/{person_id:str}", summary="One person", responses=error_responses(400, 403, 404))
    async def get_person(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        person_id: PathId,
    ) -> Person:
        def read(db: sqlite_utils.Database) -> Person:
            if not org.person_visible(db, principal.scope, person_id):
                raise NotFound(f"no person {person_id}")
            return org.get_person(db, person_id)

        return await store.aread(read)

    @put(
        "/{person_id:str}",
        summary="Create or update a person and their scope (admins)",
        responses=error_responses(400, 403, 409, 413, 503),
    )
    async def put_person(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        person_id: IdPath,
        data: JSONBody[PersonWrite],
    ) -> Person:
        principal.require_role("admin")
        return await store.awrite(org.put_person, person_id, data, principal.actor)

    @post(
        "/{person_id:str}/deactivate",
        status_code=200,
        summary="A person left (admins): inactive with a reason, their households unassigned at "
        "once, their devices revoked (drain: after one last push); history stays",
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def deactivate(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        person_id: IdPath,
        data: JSONBody[DeactivateRequest],
    ) -> Deactivation:
        principal.require_role("admin")
        return await store.awrite(
            lifecycle.deactivate,
            settings,
            person_id,
            data.reason,
            principal.actor,
            drain=data.drain,
        )

    @put(
        "/{person_id:str}/scope",
        summary="Replace a person's scope (admins); phones re-sync what entered and left it",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def put_scope(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        person_id: IdPath,
        data: JSONBody[ScopeWrite],
    ) -> Person:
        principal.require_role("admin")
        return await store.awrite(org.put_scope, person_id, data.units, principal.actor)


class HouseholdController(Controller):
    path = "/api/v1/households"
    tags = ["households"]

    @get(
        "/",
        summary="Households in the caller's scope (personal data: the read is audited)",
        responses=error_responses(400, 403, 503),
    )
    async def list_households(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        grid_id: IdQuery = None,
        status: Annotated[HouseholdStatus | None, QueryParameter()] = None,
        tag: Annotated[str | None, QueryParameter(min_length=1, max_length=64)] = None,
        responsible_member_id: IdQuery = None,
        q: Annotated[
            str | None,
            QueryParameter(
                min_length=1, max_length=64, description="search the head's name and the address"
            ),
        ] = None,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> HouseholdPage:
        items, total = await store.aread(
            households.list_households,
            principal.scope,
            grid_id=grid_id,
            status=status,
            tag=tag,
            responsible_member_id=responsible_member_id,
            q=q,
            limit=limit,
            offset=offset,
        )
        await store.awrite(
            record,
            principal.actor,
            "read.households",
            detail={
                "grid_id": grid_id,
                "status": status,
                "tag": tag,
                "q": q,
                "offset": offset,
                "count": len(items),
            },
        )
        return HouseholdPage(items=items, total=total, limit=limit, offset=offset)

    @get(
        "/{household_id:str}",
        summary="One household",
        responses=error_responses(400, 403, 404),
    )
    async def get_household(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        household_id: PathId,
    ) -> Household:
        return await store.aread(households.get_household, principal.scope, household_id)

    @get(
        "/{household_id:str}/visits",
        summary="A household's visits, newest first",
        responses=error_responses(400, 403, 404),
    )
    async def list_visits(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        household_id: PathId,
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> VisitPage:
        items, total = await store.aread(
            households.list_visits, principal.scope, household_id, limit=limit, offset=offset
        )
        return VisitPage(items=items, total=total, limit=limit, offset=offset)

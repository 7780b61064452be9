"""Devices: list, enrol (admins), revoke or drain (admins, or a person their own device).
Over the API the last active admin device is never revoked (``409 last_admin_device``)."""

from __future__ import annotations

from litestar import Controller, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from gridsync import auth
from gridsync.api.errors import error_responses
from gridsync.api.params import PageLimit, PageOffset, PathId
from gridsync.auth import Principal
from gridsync.db import Store
from gridsync.errors import NotFound
from gridsync.models import Device, DevicePage, Enrolled, EnrollRequest, RevokeRequest


class DeviceController(Controller):
    path = "/api/v1/devices"
    tags = ["auth"]

    @get(
        "/",
        summary="Devices: all of them for an admin, one's own otherwise",
        responses=error_responses(400, 403),
    )
    async def list_devices(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        limit: PageLimit = 100,
        offset: PageOffset = 0,
    ) -> DevicePage:
        person_id = None if principal.has_role("admin") else principal.person_id
        items, total = await store.aread(
            auth.list_devices, person_id=person_id, limit=limit, offset=offset
        )
        return DevicePage(items=items, total=total, limit=limit, offset=offset)

    @post(
        "/",
        summary="Enrol a device for a person (admin); the token is shown only here",
        responses=error_responses(400, 403, 404, 413, 503),
    )
    async def enroll(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        data: JSONBody[EnrollRequest],
    ) -> Enrolled:
        principal.require_role("admin")
        return await store.awrite(
            auth.enroll, data.person_id, principal.actor, label=data.label, device_id=data.device_id
        )

    @post(
        "/{device_id:str}/revoke",
        status_code=200,
        summary="Revoke a device: at once (its next request is told to wipe), or with "
        '{"drain": true} after it pushed what it holds, once; never the last admin device',
        responses=error_responses(400, 403, 404, 409, 413, 503),
    )
    async def revoke(
        self,
        principal: NamedDependency[Principal],
        store: NamedDependency[Store],
        device_id: PathId,
        data: JSONBody[RevokeRequest | None] = None,
    ) -> Device:
        device = await store.aread(auth.get_device, device_id)
        if not principal.has_role("admin") and device.person_id != principal.person_id:
            raise NotFound(f"no device {device_id}")
        return await store.awrite(
            auth.revoke,
            device_id,
            principal.actor,
            data.reason if data else "",
            drain=data.drain if data else False,
        )

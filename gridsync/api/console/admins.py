"""人员与设备 (admins): people with their phones and console sessions; enrol a phone and show
its token once as a QR code (SVG by segno, no script); revoke a phone (at once, or with drain)
or end a console session; import households from a spreadsheet, with the importer's
row-numbered dry run shown before anything is written, then confirmed.

The REST API's functions and refusals: ``auth.enroll`` and ``auth.revoke`` as ``POST
/api/v1/devices`` and ``.../{id}/revoke`` (``409 last_admin_device``), ``signin.revoke_session``
as ``POST /api/v1/console/sessions/{id}/revoke``; the forms decode into the API's wire types
(``EnrollRequest``, ``RevokeRequest``). The household import is ``gridsync import households``'
(``importer.read_upload``, ``importer.preview``, ``importer.import_households``): the uploaded
file is kept under its SHA-256 in a private temporary folder between the preview and the
confirmation, so what is written is exactly the file that was previewed."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import segno
from litestar import Controller, Request, get, post
from litestar.datastructures import UploadFile
from litestar.di import NamedDependency
from litestar.response import Redirect, Template

from gridsync import auth, importer, org, signin
from gridsync.api.console.base import Viewer, form_of, page, see_other, wire
from gridsync.api.params import PageOffset, PathId
from gridsync.burden import ROLE_LABELS
from gridsync.clock import Clock
from gridsync.config import Settings
from gridsync.db import Store
from gridsync.errors import Invalid, NotFound
from gridsync.models import EnrollRequest, RevokeRequest

PAGE = 100
UPLOAD_TTL_S = 3600  # an upload not confirmed within an hour is dropped
UPLOAD_NAME = re.compile(r"^[0-9a-f]{64}\.(csv|xlsx)$")


def qr_svg(text: str) -> str:
    """``text`` as a QR code, an inline SVG element (segno; error correction M)."""
    return str(segno.make(text, error="m").svg_inline(scale=4, border=2, dark="#000", light="#fff"))


def upload_dir() -> Path:
    """The private folder uploads wait in between preview and confirmation."""
    folder = Path(tempfile.gettempdir()) / f"gridsync-uploads-{os.getuid()}"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


def keep_upload(data: bytes, suffix: str) -> str:
    """Store an upload under its SHA-256 (dropping those older than :data:`UPLOAD_TTL_S`);
    its file name, which the confirmation form carries."""
    folder = upload_dir()
    cutoff = time.time() - UPLOAD_TTL_S
    for old in folder.iterdir():
        if old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
    name = f"{hashlib.sha256(data).hexdigest()}.{suffix}"
    (folder / name).write_bytes(data)
    return name


def kept_upload(name: str) -> bytes:
    if not UPLOAD_NAME.match(name):
        raise Invalid("bad upload reference", field="upload")
    path = upload_dir() / name
    if not path.is_file():
        raise NotFound("this upload has expired: upload the file again", code="upload_expired")
    return path.read_bytes()


class AdminsController(Controller):
    path = "/console/admin"
    include_in_schema = False

    @get("/people")
    async def people(
        self,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        offset: PageOffset = 0,
    ) -> Template:
        p = viewer.principal
        p.require_role("admin")
        people, total = await store.aread(org.list_people, p.scope, limit=PAGE, offset=offset)
        now = clock.now_ms()

        def phones_and_sessions(db: Any) -> dict[str, dict[str, list[Any]]]:
            """Each listed person's phones and console sessions (the devices and sessions
            APIs' functions, a person at a time: a district has tens of thousands of phones)."""
            return {
                person.id: {
                    "devices": auth.list_devices(db, person_id=person.id, limit=50)[0],
                    "sessions": signin.list_sessions(db, person_id=person.id, now_ms=now, limit=20),
                }
                for person in people
            }

        by_person = await store.aread(phones_and_sessions)
        return page(
            "admin_people.html",
            viewer,
            "admin",
            people=people,
            total=total,
            by_person=by_person,
            roles=ROLE_LABELS["zh"],
            offset=offset,
            page_size=PAGE,
        )

    @post("/devices", status_code=200)
    async def enroll(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
    ) -> Template:
        form = await form_of(request, viewer)
        data: EnrollRequest = wire(form, EnrollRequest)
        p = viewer.principal
        p.require_role("admin")
        enrolled = await store.awrite(
            auth.enroll, data.person_id, p.actor, label=data.label, device_id=data.device_id
        )
        return page(
            "admin_enrolled.html",
            viewer,
            "admin",
            enrolled=enrolled,
            qr=qr_svg(enrolled.token),
            base_url=settings.base_url,
        )

    @post("/devices/{device_id:str}/revoke", status_code=303)
    async def revoke(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        device_id: PathId,
    ) -> Redirect:
        form = await form_of(request, viewer)
        data: RevokeRequest = wire(
            {"reason": form.get("reason", ""), "drain": "drain" in form}, RevokeRequest
        )
        p = viewer.principal
        p.require_role("admin")
        await store.awrite(auth.revoke, device_id, p.actor, data.reason, drain=data.drain)
        return see_other("/console/admin/people")

    @post("/sessions/{session_id:str}/revoke", status_code=303)
    async def end_session(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        clock: NamedDependency[Clock],
        session_id: PathId,
    ) -> Redirect:
        await form_of(request, viewer)
        p = viewer.principal
        p.require_role("admin")
        await store.awrite(signin.revoke_session, p, session_id, now_ms=clock.now_ms())
        return see_other("/console/admin/people")

    @get("/import")
    async def import_form(self, viewer: NamedDependency[Viewer]) -> Template:
        viewer.principal.require_role("admin")
        return page("admin_import.html", viewer, "admin", result=None)

    @post("/import", status_code=200)
    async def import_households(
        self,
        request: Request,
        viewer: NamedDependency[Viewer],
        store: NamedDependency[Store],
        settings: NamedDependency[Settings],
        clock: NamedDependency[Clock],
    ) -> Template:
        """Step 1 (a file): the dry run, nothing written. Step 2 (``upload`` and ``confirm``):
        the import of that very file, which writes all of it or (any bad row) nothing."""
        form = await form_of(request, viewer)
        p = viewer.principal
        p.require_role("admin")
        override_cap = "override_cap" in form
        ignore_unknown = "ignore_unknown_columns" in form
        if "confirm" in form:
            name = form.get("upload", "")
            data = kept_upload(name)
        else:
            upload = (await request.form()).get("file")
            if not isinstance(upload, UploadFile) or not upload.filename:
                raise Invalid("choose a CSV or XLSX file", field="file")
            suffix = Path(upload.filename).suffix.lower().lstrip(".")
            if suffix not in ("csv", "xlsx"):
                raise Invalid("the file must be .csv or .xlsx", code="bad_file", field="file")
            data = await upload.read()
            name = keep_upload(data, suffix)
        sheet = importer.read_upload(
            data, f"upload.{name.rsplit('.', 1)[1]}", ignore_unknown_columns=ignore_unknown
        )
        written = False
        if "confirm" in form:
            try:
                result = await store.awrite(
                    importer.import_households,
                    sheet,
                    p.actor,
                    clock=clock,
                    settings=settings,
                    override_cap=override_cap,
                )
                written = True
                (upload_dir() / name).unlink(missing_ok=True)
            except importer.ImportRejected:
                result = await store.aread(importer.preview, sheet, settings, override_cap)
        else:
            result = await store.aread(importer.preview, sheet, settings, override_cap)
        return page(
            "admin_import.html",
            viewer,
            "admin",
            result=result,
            written=written,
            upload=name,
            override_cap=override_cap,
            ignore_unknown=ignore_unknown,
        )

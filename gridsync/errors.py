"""Domain errors. Each carries an HTTP status, a machine-readable ``code`` and a human message;
the API maps them to ``{"code", "message", ...}`` bodies in one place (``gridsync/api/errors.py``)."""

from __future__ import annotations

from typing import Any


class GridsyncError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self, message: str, *, code: str | None = None, status: int | None = None, **extra: Any
    ):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class Invalid(GridsyncError):
    status = 400
    code = "validation_error"


class Malformed(Invalid):
    """A body that does not decode at all (bad syntax, invalid UTF-8, absurd nesting): the same
    code as Litestar's undecodable REST bodies (``gridsync/api/errors.py``)."""

    code = "malformed_body"


class Unauthorized(GridsyncError):
    status = 401
    code = "unauthorized"


class DeviceRevoked(Unauthorized):
    code = "device_revoked"

    def __init__(self, message: str = "this device has been revoked; local data must be wiped"):
        super().__init__(message, wipe=True)


class Forbidden(GridsyncError):
    status = 403
    code = "forbidden"


class DeviceDraining(Forbidden):
    """A device revoked with drain asked for something other than its one push (or its sync
    status): it must push what it holds, then wipe."""

    code = "device_draining"

    def __init__(
        self,
        message: str = "this device is being revoked: push what it holds (once), then wipe it; "
        "it may not pull or read anything else",
    ):
        super().__init__(message, drain=True)


class OutOfScope(Forbidden):
    code = "out_of_scope"


class CheckForbidden(Forbidden):
    """A recorded check (抽检) asked for by someone not above its unit, or by its own people
    (``gridsync/coverage/checks.py``, ``require_checker``)."""

    code = "check_forbidden"


class NotFound(GridsyncError):
    status = 404
    code = "not_found"


class Conflict(GridsyncError):
    status = 409
    code = "conflict"


class PayloadTooLarge(GridsyncError):
    status = 413
    code = "payload_too_large"


class SeqGap(GridsyncError):
    status = 409
    code = "seq_gap"


class UnsupportedSchema(GridsyncError):
    status = 426
    code = "unsupported_schema"


class UnsupportedMediaType(GridsyncError):
    status = 415
    code = "unsupported_media_type"

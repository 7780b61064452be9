"""Authentication and the dependencies controllers receive."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from gridsync.auth import Principal, authenticate
from gridsync.db import Store


def bearer_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Every /api/v1 request carries ``Authorization: Bearer <token>`` of an enrolled device."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        store: Store = connection.app.state.store
        principal = store.read(authenticate, bearer_token(connection))
        return AuthenticationResult(user=principal, auth=principal.device_id)


def provide_principal(request: Request[Principal, Any, Any]) -> Principal:
    return request.user

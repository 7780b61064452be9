"""Authentication and the dependencies controllers receive."""

from __future__ import annotations

from typing import Any, TypeVar
from weakref import WeakKeyDictionary

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from gridsync.auth import Principal, ScopeCache, authenticate
from gridsync.db import Store
from gridsync.errors import DeviceDraining
from gridsync.sync.readahead import ReadAhead

T = TypeVar("T")


def bearer_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# What the API keeps in memory per store (per database file), made on first use.
_PER_STORE: WeakKeyDictionary[Store, dict[type, Any]] = WeakKeyDictionary()


def _per_store(store: Store, kind: type[T]) -> T:
    things = _PER_STORE.setdefault(store, {})
    if kind not in things:
        things[kind] = kind()
    return things[kind]


def scope_cache(store: Store) -> ScopeCache:
    """Resolved scopes of the tokens of one store (see auth.ScopeCache)."""
    return _per_store(store, ScopeCache)


def read_ahead(store: Store) -> ReadAhead:
    """The pull pages read ahead for the phones of one store (see sync/readahead.py)."""
    return _per_store(store, ReadAhead)


# Route ``opt`` of the handlers a draining device may still call (its push, its sync status).
WHILE_DRAINING = "while_draining"


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Every /api/v1 request carries ``Authorization: Bearer <token>`` of an enrolled device.
    A draining device (revoked with drain) gets ``403 device_draining`` on every route but
    those marked ``opt={WHILE_DRAINING: True}``: it can pull nothing."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        store: Store = connection.app.state.store
        principal = store.read(authenticate, bearer_token(connection), scope_cache(store))
        if principal.draining and not connection.route_handler.opt.get(WHILE_DRAINING):
            raise DeviceDraining()
        return AuthenticationResult(user=principal, auth=principal.device_id)


def provide_principal(request: Request[Principal, Any, Any]) -> Principal:
    return request.user

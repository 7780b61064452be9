"""Authentication and the dependencies controllers receive."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.middleware.authentication import (
    AbstractAuthenticationMiddleware,
    AuthenticationResult,
)

from gridsync.auth import Principal, ScopeCache, authenticate
from gridsync.db import Store
from gridsync.sync.readahead import ReadAhead


def bearer_token(connection: ASGIConnection) -> str | None:
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


# One cache of resolved scopes per store (per database file): see auth.ScopeCache.
_SCOPES: WeakKeyDictionary[Store, ScopeCache] = WeakKeyDictionary()


def scope_cache(store: Store) -> ScopeCache:
    cache = _SCOPES.get(store)
    if cache is None:
        cache = _SCOPES[store] = ScopeCache()
    return cache


_READ_AHEAD: WeakKeyDictionary[Store, ReadAhead] = WeakKeyDictionary()


def read_ahead(store: Store) -> ReadAhead:
    """The pull pages read ahead for the phones of one store (see sync/readahead.py)."""
    pages = _READ_AHEAD.get(store)
    if pages is None:
        pages = _READ_AHEAD[store] = ReadAhead()
    return pages


class TokenAuthMiddleware(AbstractAuthenticationMiddleware):
    """Every /api/v1 request carries ``Authorization: Bearer <token>`` of an enrolled device."""

    async def authenticate_request(self, connection: ASGIConnection) -> AuthenticationResult:
        store: Store = connection.app.state.store
        principal = store.read(authenticate, bearer_token(connection), scope_cache(store))
        return AuthenticationResult(user=principal, auth=principal.device_id)


def provide_principal(request: Request[Principal, Any, Any]) -> Principal:
    return request.user

"""API-key authentication with scopes, as FastAPI dependencies.

Every endpoint but health declares the scope it needs: ``Depends(require(Scope.READ))``. The key
comes in ``X-API-Key`` (or ``Authorization: Bearer``). Verified keys are cached for a short time
so a lookup costs no graph round trip; a revoked key stops working within that time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ringwatch.graph.api_keys import ApiKey, Scope, verify_key
from ringwatch.service.errors import ApiError

CACHE_SECONDS = 30.0

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="API key")
_bearer = HTTPBearer(auto_error=False, description="API key as a bearer token")


class KeyCache:
    def __init__(self, ttl_s: float = CACHE_SECONDS) -> None:
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, ApiKey | None]:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, key: str, record: ApiKey | None) -> None:
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (time.monotonic() + self.ttl_s, record)


def authenticate(
    request: Request,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    key = header_key or (bearer.credentials if bearer else None)
    if not key:
        raise ApiError(401, "unauthorized", "an API key is required (X-API-Key header)")
    cache: KeyCache = request.app.state.key_cache
    hit, record = cache.get(key)
    if not hit:
        settings = request.app.state.settings
        record = verify_key(
            request.app.state.graph, key, settings.api.api_key_pepper.get_secret_value()
        )
        cache.put(key, record)
    if record is None:
        raise ApiError(401, "unauthorized", "the API key is not valid")
    request.state.api_key = record
    return record


def require(scope: Scope) -> Callable[[ApiKey], ApiKey]:
    def check(key: Annotated[ApiKey, Depends(authenticate)]) -> ApiKey:
        if not key.allows(scope):
            raise ApiError(
                403, "forbidden", f"this API key lacks the {scope.value!r} scope",
                {"required": scope.value, "granted": sorted(s.value for s in key.scopes)},
            )  # fmt: skip
        return key

    check.__name__ = f"require_{scope.value}"
    return check


ReadKey = Annotated[ApiKey, Depends(require(Scope.READ))]
WriteKey = Annotated[ApiKey, Depends(require(Scope.WRITE))]
AdminKey = Annotated[ApiKey, Depends(require(Scope.ADMIN))]

"""API keys on requests: `Authorization: Bearer <key>` or `X-API-Key: <key>`; no key or an
unknown one, 401; past the key's rate, 429 with Retry-After. A collection outside the key's
scope answers 404, as one that does not exist would, so that scopes do not reveal names."""

from __future__ import annotations

import hashlib
import threading
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mmq.api.errors import ApiError
from mmq.api.state import ApiState, state_of
from mmq.store.api_keys import ApiKey, find_key

_bearer = HTTPBearer(auto_error=False, description="an mmq API key (`mmq keys create`)")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an mmq API key")
_WINDOW_S = 60


def api_key(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> ApiKey:
    """The request's key, checked and counted against its rate."""
    given = bearer.credentials if bearer is not None else header
    if not given:
        raise ApiError(
            401,
            "an API key is required: send `Authorization: Bearer <key>` (`mmq keys create`)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    state = state_of(request)
    key = _known(state, given)
    if key is None:
        raise ApiError(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    _count(state, key)
    request.state.key_prefix = key.prefix
    return key


# A route's parameter `key: Key` is the request's checked key.
Key = Annotated[ApiKey, Depends(api_key)]


def visible(key: ApiKey, collection: str) -> None:
    """404 for a collection outside the key's scope, worded as for a missing one."""
    if not key.can_see(collection):
        raise ApiError(404, f"unknown collection {collection!r}", type="not_found")


def writable(key: ApiKey, collection: str) -> None:
    visible(key, collection)
    if not key.can_write:
        raise ApiError(403, f"this key ({key.role}) cannot change collection {collection!r}")


# Keys looked up in the last KEY_TTL_S seconds, by the key's hash: the database is asked
# once per key and process in that time, not on every request (a round trip that was most
# of the API's own cost per search). A revoked key is refused within KEY_TTL_S.
KEY_TTL_S = 5.0
_MAX_KEYS = 4096
_keys: dict[str, tuple[float, ApiKey | None]] = {}
_keys_lock = threading.Lock()


def _known(state: ApiState, given: str) -> ApiKey | None:
    digest = hashlib.sha256(given.encode()).hexdigest()
    now = time.monotonic()
    with _keys_lock:
        cached = _keys.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    with state.session() as session:
        key = find_key(session=session, key=given)
    with _keys_lock:
        if len(_keys) >= _MAX_KEYS:
            _keys.clear()  # rare: a flood of distinct keys; start over rather than grow
        _keys[digest] = (now + KEY_TTL_S, key)
    return key


def _count(state: ApiState, key: ApiKey) -> None:
    """A fixed one-minute window per key in Redis, shared by every API process."""
    window = int(time.time()) // _WINDOW_S
    name = f"mmq:api:rate:{key.prefix}:{window}"
    pipe = state.redis.pipeline()
    pipe.incr(name)
    pipe.expire(name, _WINDOW_S * 2)
    used, _ = pipe.execute()
    if used > state.settings.api_rate_per_minute:
        retry = _WINDOW_S * (window + 1) - int(time.time())
        raise ApiError(
            429,
            f"this key made over {state.settings.api_rate_per_minute} requests this minute",
            headers={"Retry-After": str(max(1, retry))},
        )

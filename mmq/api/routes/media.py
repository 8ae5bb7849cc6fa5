"""`GET /v1/items/{item_id}/media` (the original, with HTTP Range so a browser seeks in a
video) and `/thumbnail` (a small JPEG; `t`: the video's second). Found by item id, never
by a path from the request; served only from the media store or the ingest roots. With a
key that sees the item's collection, or the signed `token` the API put on the URL."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials

from mmq.api.auth import api_key
from mmq.api.errors import ApiError
from mmq.api.state import ApiState, state_of
from mmq.media.thumbnails import thumbnail
from mmq.store.catalog import ItemMedia, item_media

# The URL is signed for an hour or so: a browser may keep what it fetched that long.
_CACHE = "private, max-age=600"


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["media"])

    @r.get("/items/{item_id}/media", summary="An item's original file")
    def media(request: Request, item_id: int, token: str | None = None) -> FileResponse:
        state = state_of(request)
        path = _file(state, _authorised(request, state, item_id, token))
        return FileResponse(path, headers={"Cache-Control": _CACHE})

    @r.get("/items/{item_id}/thumbnail", summary="A small JPEG of an item")
    async def thumb(
        request: Request,
        item_id: int,
        token: str | None = None,
        t: float | None = Query(default=None, ge=0, description="a video's second"),
    ) -> FileResponse:
        state = state_of(request)
        item = await run_in_threadpool(_authorised, request, state, item_id, token)
        # A cache, not data: beside the state, outside the media folders workers may walk.
        cache = state.settings.state_dir / "cache" / "thumbnails"
        made = await run_in_threadpool(
            thumbnail,
            _file(state, item),
            cache_dir=cache,
            at_s=t if item.kind == "video" else None,
        )
        return FileResponse(made, media_type="image/jpeg", headers={"Cache-Control": _CACHE})

    return r


def _authorised(request: Request, state: ApiState, item_id: int, token: str | None) -> ItemMedia:
    with state.session() as session:
        item = item_media(session=session, item_id=item_id)
    missing = ApiError(404, f"no item {item_id}")
    if token is not None:
        if not state.signer.valid(token, item_id):
            raise ApiError(401, "the media link expired or is not valid: search again")
        if item is None:
            raise missing
        return item
    key = api_key(request, *_credentials(request))
    if item is None or not key.can_see(item.collection):
        raise missing
    return item


def _credentials(request: Request) -> tuple[HTTPAuthorizationCredentials | None, str | None]:
    """The key headers, read as the `api_key` dependency reads them (called directly here:
    a signed token stands in for a key on these routes)."""
    auth = request.headers.get("authorization", "")
    scheme, _, given = auth.partition(" ")
    bearer = (
        HTTPAuthorizationCredentials(scheme=scheme, credentials=given.strip())
        if scheme.lower() == "bearer" and given.strip()
        else None
    )
    return bearer, request.headers.get("x-api-key")


def _file(state: ApiState, item: ItemMedia) -> Path:
    if item.kind not in ("image", "pair", "video") or not item.uri:
        raise ApiError(404, f"item {item.item_id} ({item.kind}) has no media file")
    path = Path(item.uri)
    roots = state.settings.resolved_ingest_roots
    inside = state.media.contains(path) or any(
        path.resolve().is_relative_to(root) for root in roots
    )
    if not inside or not path.is_file():
        raise ApiError(404, f"the file of item {item.item_id} is no longer available here")
    return path

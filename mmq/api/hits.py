"""Hits as the API answers them: the fields of `mmq search --json`, the item id, and
signed URLs of the item's media and thumbnail (usable in `<img>` and `<video>`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request

from mmq.api.state import ApiState
from mmq.schemas import Hit, hit_json

# Kinds whose items have a file the API can serve.
_WITH_MEDIA = ("image", "pair", "video")


def api_hit(hit: Hit, request: Request, state: ApiState) -> dict[str, Any]:
    out = {"item_id": hit.item_id, **hit_json(hit), "media_url": None, "thumbnail_url": None}
    if hit.kind in _WITH_MEDIA and hit.uri:
        out |= media_urls(hit.item_id, request, state, at_s=hit.keyframe_s)
    return out


def media_urls(
    item_id: int, request: Request, state: ApiState, *, at_s: float | None = None
) -> dict[str, str]:
    base = str(request.base_url).rstrip("/")
    token = state.signer.sign(item_id)
    at = "" if at_s is None else f"&t={at_s:g}"
    return {
        "media_url": f"{base}/v1/items/{item_id}/media?token={token}",
        "thumbnail_url": f"{base}/v1/items/{item_id}/thumbnail?token={token}{at}",
    }

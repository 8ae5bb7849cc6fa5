"""`GET /v1/collections`, `GET /v1/key` (the key's role and scope) and
`POST /v1/collections/{name}/items` (ingest)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile

from mmq.api.answers import accepted
from mmq.api.auth import Key, writable
from mmq.api.errors import ApiError
from mmq.api.state import ApiState, state_of
from mmq.config import Settings
from mmq.errors import InvalidInput
from mmq.media.paths import confined
from mmq.media.store import kind_of, suffix_for
from mmq.schemas import IngestItem, describe_errors
from mmq.store.api_keys import ApiKey
from mmq.store.catalog import collection_summaries

MAX_FILES = 1000  # file parts in one upload


def router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["collections"])

    @r.get("/collections", summary="The key's collections")
    def collections(request: Request, key: Key) -> dict[str, Any]:
        """The collections the key may see that exist: model, fusion and items per kind."""
        with state_of(request).session() as session:
            found = collection_summaries(session=session, names=key.collections)
        return {
            "collections": [
                {
                    "name": c.name,
                    "model": c.model,
                    "model_version": c.model_version,
                    "fusion": c.fusion,
                    "dim": c.dim,
                    "counts": c.counts,
                }
                for c in found
            ]
        }

    @r.get("/key", summary="The request's key")
    def whoami(key: Key) -> dict[str, Any]:
        """The key's public prefix, its role (read, write or admin) and the collections it
        is scoped to, whether they exist yet or not: what a page needs to offer uploads."""
        return {"prefix": key.prefix, "role": key.role, "collections": list(key.collections)}

    @r.post(
        "/collections/{name}/items",
        status_code=202,
        summary="Ingest files or items",
        max_body_size=settings.api_max_upload_bytes,
        openapi_extra={"requestBody": _INGEST_BODY},
    )
    async def ingest(request: Request, name: str, key: Key) -> JSONResponse:
        """Multipart `file` parts (images or videos; a `metadata` part, a JSON object, goes
        to each of them), or JSON `{"items": [...]}` in the Client's item format (paths
        for admin keys only). Answers at once with the job; a bad file fails its own item."""
        writable(key, name)
        state = state_of(request)
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form(max_files=MAX_FILES, max_part_size=1024 * 1024)
            try:
                items = await run_in_threadpool(_stored_uploads, state, form)
            finally:
                await form.close()
        else:
            items = _json_items(key, settings, await _json_body(request))
        job = await run_in_threadpool(state.client.ingest, items, collection=name)
        return accepted(job.id)

    return r


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ApiError(400, "the body is not JSON: send JSON or multipart/form-data") from None


def _stored_uploads(state: ApiState, form: FormData) -> list[IngestItem]:
    """Each `file` part written to the media store, as an item of its kind."""
    metadata = _metadata(form.get("metadata"))
    items = []
    for part in form.getlist("file"):
        if not isinstance(part, UploadFile):
            raise ApiError(422, "`file` must be a file part", field="file")
        stored = state.media.put(part.file, suffix=suffix_for(part.filename, part.content_type))
        meta = {"filename": part.filename, **metadata} if part.filename else dict(metadata)
        # An unknown kind is tried as an image: the worker fails it with the reason.
        if kind_of(stored.path.suffix) == "video":
            items.append(IngestItem(video_path=str(stored.path), metadata=meta))
        else:
            items.append(IngestItem(image_path=str(stored.path), metadata=meta))
    if not items:
        raise ApiError(422, "no `file` part: send one or more files", field="file")
    return items


def _metadata(raw: object) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, UploadFile):
        raise ApiError(422, "metadata must be a JSON object, not a file", field="metadata")
    try:
        value = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise ApiError(422, f"metadata is not JSON: {exc}", field="metadata") from None
    if not isinstance(value, dict):
        raise ApiError(422, "metadata must be a JSON object", field="metadata")
    return value


def _json_items(key: ApiKey, settings: Settings, body: Any) -> list[IngestItem]:
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        raise ApiError(422, 'expected {"items": [...]}', field="items")
    items = []
    for index, raw in enumerate(body["items"]):
        try:
            item = IngestItem.model_validate(raw)
        except ValidationError as exc:
            field = f"items.{index}"
            raise ApiError(422, f"{field}: {describe_errors(exc)}", field=field) from None
        for path in (item.image_path, item.video_path):
            if path is None:
                continue
            if not key.is_admin:
                raise ApiError(
                    403, "only admin keys may ingest paths: upload the file instead",
                    field=f"items.{index}",
                )  # fmt: skip
            try:
                confined(path, settings.resolved_ingest_roots)
            except InvalidInput as exc:
                raise ApiError(422, str(exc), field=f"items.{index}") from None
        items.append(item)
    if not items:
        raise ApiError(422, "items is empty", field="items")
    return items


_INGEST_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    "metadata": {"type": "string", "description": "a JSON object"},
                },
                "required": ["file"],
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"items": {"type": "array", "items": {"type": "object"}}},
                "required": ["items"],
            }
        },
    }
}

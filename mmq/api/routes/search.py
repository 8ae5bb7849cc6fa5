"""`POST /v1/collections/{name}/search`: a JSON query, or multipart with an `image` part
(and `text`: a composed query). Waits up to `wait_ms` for the hits; past it, 202 with the
job to poll."""

from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from mmq.api.answers import waited
from mmq.api.auth import Key, visible
from mmq.api.errors import ApiError
from mmq.api.hits import api_hit
from mmq.api.state import ApiState, state_of
from mmq.config import Settings
from mmq.schemas import ExampleMethod, FusionName, ItemKind, SearchResult, describe_errors


class SearchBody(BaseModel):
    """A search through the API: a query (text, image part, both, or a vector), or examples
    (`like`, `unlike`: external ids, item ids or Client examples) ranked by `method`."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = None
    vector: list[float] | None = None
    k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    targets: list[ItemKind] | None = None
    weights: dict[str, float] | None = None
    fusion: FusionName | None = None
    segments: Literal["best", "all"] = "best"
    min_score: float | None = None
    like: list[str | int | dict[str, Any]] | None = None
    unlike: list[str | int | dict[str, Any]] | None = None
    method: ExampleMethod = "svm"
    wait_ms: int = Field(default=10_000, ge=0, le=60_000)


def router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["search"])

    @r.post(
        "/collections/{name}/search",
        summary="Search a collection",
        max_body_size=settings.max_image_bytes + settings.api_max_json_bytes,
        openapi_extra={"requestBody": _SEARCH_BODY},
        responses={202: {"description": "still running: poll `status_url`"}},
    )
    async def search(request: Request, name: str, key: Key) -> JSONResponse:
        """200 `{"hits": [...]}` (each with `media_url` and `thumbnail_url`), or 202
        `{"job_id", "status_url"}` when the search takes longer than `wait_ms`."""
        visible(key, name)
        body, image = await _parse(request)
        state = state_of(request)
        return await run_in_threadpool(_search, state, request, name, body, image)

    return r


def _search(
    state: ApiState, request: Request, name: str, body: SearchBody, image: bytes | None
) -> JSONResponse:
    job = state.client.search(
        collection=name,
        text=body.text,
        image=image,
        vector=body.vector,
        weights=body.weights,
        fusion=body.fusion,
        targets=body.targets,
        k=body.k,
        filter=body.filter,
        segments=body.segments,
        min_score=body.min_score,
        positives=body.like,
        negatives=body.unlike,
        method=body.method,
    )
    # The Client recorded the job with its collection (mmq/jobs/sent_jobs.py): the job's
    # status URL finds it there, and keys of other collections are refused it.
    return waited(job, body.wait_ms, lambda result: search_json(result, request, state))


def search_json(result: SearchResult, request: Request, state: ApiState) -> dict[str, Any]:
    out: dict[str, Any] = {
        "hits": [api_hit(h, request, state) for h in result.hits],
        "collection": result.collection,
        "model": result.model,
        "model_version": result.model_version,
    }
    for extra in ("encoded_text", "kinds_held", "missing_examples"):
        if (value := getattr(result, extra)) is not None:
            out[extra] = value
    return out


async def _parse(request: Request) -> tuple[SearchBody, bytes | None]:
    """The query and the image's bytes, from JSON or from multipart form fields (JSON
    values such as `filter` and `weights` given as JSON text)."""
    raw: dict[str, Any]
    image = None
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_part_size=1024 * 1024)
        try:
            raw = {}
            for field, value in form.multi_items():
                if field == "image":
                    if not isinstance(value, UploadFile):
                        raise ApiError(422, "`image` must be a file part", field="image")
                    image = await value.read()
                elif isinstance(value, str):
                    raw[field] = _form_value(field, value)
        finally:
            await form.close()
    else:
        try:
            raw = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ApiError(400, "the body is not JSON: send JSON or multipart/form-data") from None
        if not isinstance(raw, dict):
            raise ApiError(422, "the body must be a JSON object")
    try:
        return SearchBody.model_validate(raw), image
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or None
        raise ApiError(422, describe_errors(exc), field=where) from None


def _form_value(field: str, value: str) -> Any:
    if field in ("text", "segments", "method", "fusion"):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        raise ApiError(422, f"{field} is not JSON", field=field) from None


_SEARCH_BODY = {
    "content": {
        "application/json": {"schema": SearchBody.model_json_schema()},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "image": {"type": "string", "format": "binary"},
                    "text": {"type": "string"},
                    "k": {"type": "integer"},
                    "weights": {"type": "string", "description": 'JSON, {"image": 0.5, ...}'},
                    "filter": {"type": "string", "description": "a JSON object"},
                },
            }
        },
    }
}

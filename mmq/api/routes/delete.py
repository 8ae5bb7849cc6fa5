"""`DELETE /v1/collections/{name}/items` (by external ids, item ids or a metadata filter)
and `DELETE /v1/collections/{name}` (the collection, items and all). Write keys. Each waits
up to `wait_ms` for the delete job, as a search does; past it, 202 with the job to poll."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mmq.api.answers import waited
from mmq.api.auth import Key, writable
from mmq.api.state import ApiState, state_of
from mmq.config import Settings
from mmq.schemas import DeleteResult


class DeleteBody(BaseModel):
    """Exactly one of `external_ids`, `item_ids`, `filter` (JSON containment on metadata)."""

    model_config = ConfigDict(extra="forbid")

    external_ids: list[str] | None = None
    item_ids: list[int] | None = None
    filter: dict[str, Any] | None = None
    wait_ms: int = Field(default=10_000, ge=0, le=60_000)


def router(settings: Settings) -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["collections"])
    waiting: dict[int | str, dict[str, Any]] = {
        202: {"description": "still running: poll `status_url`"}
    }

    @r.delete(
        "/collections/{name}/items",
        summary="Delete items",
        max_body_size=settings.api_max_json_bytes,
        responses=waiting,
    )
    async def delete_items(request: Request, name: str, body: DeleteBody, key: Key) -> JSONResponse:
        """200 `{"collection", "deleted", "missing"}`: `missing` lists the ids asked for
        that the collection does not hold (the others are deleted); or 202 `{"job_id",
        "status_url"}` past `wait_ms`. A search that starts after a 200 finds none of them."""
        writable(key, name)
        state = state_of(request)
        return await run_in_threadpool(
            _delete,
            state,
            name,
            body.wait_ms,
            dict(external_ids=body.external_ids, item_ids=body.item_ids, filter=body.filter),
        )

    @r.delete("/collections/{name}", summary="Delete a collection", responses=waiting)
    async def delete_collection(
        request: Request,
        name: str,
        key: Key,
        wait_ms: int = Query(default=10_000, ge=0, le=60_000),
    ) -> JSONResponse:
        """The collection, its items (videos' segments too) and its indexes; 200 with the
        count of items deleted, or 202 past `wait_ms`."""
        writable(key, name)
        state = state_of(request)
        return await run_in_threadpool(_delete, state, name, wait_ms, {"all": True})

    return r


def _delete(state: ApiState, name: str, wait_ms: int, what: dict[str, Any]) -> JSONResponse:
    # The Client records the job with its collection, as a search's (GET /v1/jobs/{id}).
    job = state.client.delete(name, **what)
    return waited(job, wait_ms, delete_json)


def delete_json(result: DeleteResult) -> dict[str, Any]:
    return result.model_dump(mode="json")

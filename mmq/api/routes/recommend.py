"""`POST /v1/collections/{name}/events` (record what users did with items) and
`POST /v1/collections/{name}/recommend` (items for a user, from those events:
docs/examples.md, "Recommendations")."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mmq.api.answers import waited
from mmq.api.auth import Key, visible, writable
from mmq.api.hits import api_hit
from mmq.api.state import ApiState, state_of
from mmq.schemas import ItemKind, RecommendMethod, RecommendResult


class EventBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    item: str = Field(description="the item's external id")
    event: str = Field(description="view, like, cart, purchase, or any name with a weight")
    weight: float | None = None
    at: datetime | None = None


class EventsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    events: list[EventBody] = Field(min_length=1, max_length=100_000)


class RecommendBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str
    k: int = Field(default=10, ge=1, le=1000)
    targets: list[ItemKind] | None = None
    filter: dict[str, Any] | None = None
    exclude_seen: bool = True
    method: RecommendMethod = "auto"
    wait_ms: int = Field(default=10_000, ge=0, le=60_000)


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["recommendations"])

    @r.post("/collections/{name}/events", summary="Record users' events on items")
    async def events(request: Request, name: str, body: EventsBody, key: Key) -> dict[str, int]:
        """No model call: the events go to PostgreSQL at once. Items are named by external
        id and need not be ingested yet."""
        writable(key, name)
        rows = [
            {
                "user": e.user,
                "external_id": e.item,
                "event": e.event,
                "weight": e.weight,
                "at": e.at,
            }
            for e in body.events
        ]
        n = await run_in_threadpool(state_of(request).client.record_many, name, rows)
        return {"recorded": n}

    @r.post(
        "/collections/{name}/recommend",
        summary="Items for a user",
        responses={202: {"description": "still running: poll `status_url`"}},
    )
    async def recommend(request: Request, name: str, body: RecommendBody, key: Key) -> JSONResponse:
        """200 with hits, each with `because` (the user's items that led to it); a user
        with no history gets the most interacted-with items (`cold_start`)."""
        visible(key, name)
        return await run_in_threadpool(_recommend, state_of(request), request, name, body)

    return r


def _recommend(state: ApiState, request: Request, name: str, body: RecommendBody) -> JSONResponse:
    job = state.client.recommend(
        body.user,
        name,
        body.k,
        targets=body.targets,
        filter=body.filter,
        exclude_seen=body.exclude_seen,
        method=body.method,
    )
    # Recorded with its collection by the Client, as a search is (GET /v1/jobs/{id}).
    return waited(job, body.wait_ms, lambda result: recommend_json(result, request, state))


def recommend_json(result: RecommendResult, request: Request, state: ApiState) -> dict[str, Any]:
    hits = [api_hit(h, request, state) | {"because": h.because} for h in result.hits]
    return {
        "hits": hits,
        "collection": result.collection,
        "user": result.user,
        "method": result.method,
        "cold_start": result.cold_start,
        "history": result.history,
        "history_missing": result.history_missing,
    }

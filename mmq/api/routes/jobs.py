"""`GET /v1/jobs/{job_id}`: an ingest's state, progress and, once done, each item's end
(the fields of `mmq ingest --wait --json`); or a search's state and, once done, its hits;
or a delete's, and its count deleted. A job of a collection outside the key's scope is not
found."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool

from mmq.api.auth import Key
from mmq.api.errors import ApiError
from mmq.api.routes.delete import delete_json
from mmq.api.routes.recommend import recommend_json
from mmq.api.routes.search import search_json
from mmq.api.state import ApiState, state_of
from mmq.client import DeleteJob, RecommendJob, SearchJob
from mmq.jobs import records
from mmq.schemas import item_json
from mmq.store.api_keys import ApiKey


def router() -> APIRouter:
    r = APIRouter(prefix="/v1", tags=["jobs"])

    @r.get("/jobs/{job_id}", summary="A job's state and results")
    async def job(request: Request, job_id: str, key: Key) -> dict[str, Any]:
        state = state_of(request)
        return await run_in_threadpool(_job, state, request, key, job_id)

    return r


def _job(state: ApiState, request: Request, key: ApiKey, job_id: str) -> dict[str, Any]:
    with state.client.tables.conn() as conn:
        collection = records.job_collection(conn, job_id)
        if collection is not None:
            _scoped(key, collection, job_id)
            status = records.job_status(conn, job_id)
            done, total = records.job_progress(conn, job_id)
            out: dict[str, Any] = {
                "job_id": job_id,
                "kind": "ingest",
                "collection": collection,
                "state": status.state,
                "progress": {"done": done, "total": total},
            }
            if status.state == "done":
                result = records.job_result(conn, job_id)
                out |= {"stored": result.stored, "replaced": result.replaced}
                out |= {"failed": result.failed}
                out["items"] = [item_json(i) | {"item_id": i.item_id} for i in result.items]
            return out
    # A search or recommendation the Client recorded (an unknown, pruned or expired id is
    # not found, and neither is one sent past the Client, whose collection is not known).
    sent = state.client.sent_job(job_id)
    if sent is None:
        raise ApiError(404, f"no job {job_id}")
    _scoped(key, sent.collection, job_id)
    kind = sent.kind if sent.kind in ("recommend", "delete") else "search"
    status = SearchJob(job_id, state.client.app).status()
    out = {"job_id": job_id, "kind": kind, "collection": sent.collection, "state": status.state}
    if status.state == "failed":
        out["error"] = {"type": status.error_kind, "message": status.error}
    elif status.state == "done" and kind == "delete":
        out |= delete_json(DeleteJob(job_id, state.client.app).result(timeout=5))
    elif status.state == "done" and kind == "recommend":
        recommended = RecommendJob(job_id, state.client.app).result(timeout=5)
        out |= recommend_json(recommended, request, state)
    elif status.state == "done":
        out |= search_json(SearchJob(job_id, state.client.app).result(timeout=5), request, state)
    return out


def _scoped(key: ApiKey, collection: str, job_id: str) -> None:
    if not key.can_see(collection):  # as if it did not exist: the name is not revealed
        raise ApiError(404, f"no job {job_id}")

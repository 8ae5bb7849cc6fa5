"""`GET /healthz` (broker, database and workers answering) and `GET /metrics`
(Prometheus text). Neither needs a key: bind the API to a private address or put these
behind the proxy's rules when that matters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text

from mmq.api.state import ApiState, state_of
from mmq.broker import INGEST_QUEUE, SEARCH_QUEUE, queue_consumers

QUEUES = (INGEST_QUEUE, SEARCH_QUEUE)


def router() -> APIRouter:
    r = APIRouter(tags=["operations"])

    @r.get("/healthz", summary="Broker, database and workers")
    async def healthz(request: Request) -> JSONResponse:
        """200 when the broker and the database answer (`status` says "degraded" when a
        queue has no worker); 503 when either does not."""
        body = await run_in_threadpool(_health, state_of(request))
        up = body["broker"] and body["database"]
        return JSONResponse(body, status_code=200 if up else 503)

    @r.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> PlainTextResponse:
        state = state_of(request)
        queues, tasks = await run_in_threadpool(_gauges, state)
        return PlainTextResponse(
            state.metrics.render(queues, tasks), media_type="text/plain; version=0.0.4"
        )

    return r


def _health(state: ApiState) -> dict[str, Any]:
    out: dict[str, Any] = {"broker": True, "database": True, "workers": {}}
    try:
        with state.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception:  # any failure to answer is "down"; the reason goes to the log
        out["database"] = False
    try:
        state.broker.ping()
        found = queue_consumers(state.client.app, timeout=0.5)
        out["workers"] = {queue: found.get(queue, []) for queue in QUEUES}
    except Exception:  # as above
        out["broker"] = False
    idle = not out["broker"] or not all(out["workers"].get(q) for q in QUEUES)
    out["status"] = (
        "down" if not (out["broker"] and out["database"]) else ("degraded" if idle else "ok")
    )
    return out


def _gauges(state: ApiState) -> tuple[dict[str, int], list[tuple[str, int]]]:
    queues = {q: int(state.broker.llen(q)) for q in QUEUES}
    with state.engine.connect() as conn:
        rows = conn.execute(text("SELECT state, count(*) FROM ingest_tasks GROUP BY state"))
        tasks = [(str(s), int(n)) for s, n in rows]
    return queues, tasks

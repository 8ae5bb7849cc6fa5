"""Thin Celery tasks: parse the JSON payload, call the service, return JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from mmq import services
from mmq.broker import INGEST_TASK, PING_TASK, SEARCH_TASK
from mmq.schemas import RawIngestRequest, SearchRequest
from workers.app import app
from workers.runtime import get_runtime


def _call(service: Callable[..., BaseModel], request: BaseModel) -> dict[str, Any]:
    rt = get_runtime()
    rt.check_schema()
    with rt.sessions() as session:
        result = service(encoder=rt.encoder, session=session, request=request, settings=rt.settings)
    return result.model_dump(mode="json")


@app.task(name=INGEST_TASK)
def ingest(payload: dict[str, Any]) -> dict[str, Any]:
    return _call(services.ingest, RawIngestRequest.model_validate(payload))


@app.task(name=SEARCH_TASK)
def search(payload: dict[str, Any]) -> dict[str, Any]:
    return _call(services.search, SearchRequest.model_validate(payload))


@app.task(name=PING_TASK)
def ping() -> str:
    return "pong"

"""Thin Celery tasks: parse the JSON payload, call the service, return JSON."""

from __future__ import annotations

from typing import Any

from mmq import services
from mmq.broker import INGEST_TASK, SEARCH_TASK
from mmq.schemas import RawIngestRequest, SearchRequest
from workers.app import app
from workers.runtime import get_runtime


@app.task(name=INGEST_TASK)
def ingest(payload: dict[str, Any]) -> dict[str, Any]:
    request = RawIngestRequest.model_validate(payload)
    rt = get_runtime()
    with rt.sessions() as session:
        result = services.ingest(
            encoder=rt.encoder, session=session, request=request, settings=rt.settings
        )
    return result.model_dump(mode="json")


@app.task(name=SEARCH_TASK)
def search(payload: dict[str, Any]) -> dict[str, Any]:
    request = SearchRequest.model_validate(payload)
    rt = get_runtime()
    with rt.sessions() as session:
        result = services.search(
            encoder=rt.encoder, session=session, request=request, settings=rt.settings
        )
    return result.model_dump(mode="json")

"""How a route answers for a queued job: its result if it ends within the request's
`wait_ms`, else 202 with the job to poll (`GET /v1/jobs/{id}`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from fastapi.responses import JSONResponse

from mmq.errors import JobTimeout

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Waitable(Protocol[R_co]):
    id: str

    def result(self, timeout: float | None = None) -> R_co: ...


def accepted(job_id: str) -> JSONResponse:
    """202: the job is queued (or still running); poll its status URL."""
    return JSONResponse({"job_id": job_id, "status_url": f"/v1/jobs/{job_id}"}, 202)


def waited(job: Waitable[R], wait_ms: int, render: Callable[[R], dict[str, Any]]) -> JSONResponse:
    """200 with the job's result rendered, or 202 when it takes longer than `wait_ms`."""
    try:
        result = job.result(timeout=wait_ms / 1000)
    except JobTimeout:
        return accepted(job.id)
    return JSONResponse(render(result))

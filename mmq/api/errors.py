"""One JSON shape for every error: {"error": {"type", "message", "field"}}. mmq's error
family maps to statuses here; anything else is logged and answered as a bare 500, so no
stack trace reaches a client."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mmq.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    JobTimeout,
    MmqError,
    NotFound,
    Unavailable,
)

log = logging.getLogger("mmq.api")

_STATUS: list[tuple[type[MmqError], int]] = [
    (InvalidInput, 422),
    (BadRequest, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Unavailable, 503),
    (JobTimeout, 504),
]
_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    416: "range_not_satisfiable",
    422: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than 2xx, raised by a route or a dependency."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.field = status, message, field
        self.type = type or _TYPES.get(status, "error")
        self.headers = headers


def error_response(
    status: int, type: str, message: str, field: str | None = None, **kw: Any
) -> JSONResponse:
    body = {"error": {"type": type, "message": message, "field": field}}
    return JSONResponse(body, status_code=status, **kw)


def status_of(exc: MmqError) -> int:
    return next((status for cls, status in _STATUS if isinstance(exc, cls)), 500)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.type, exc.message, exc.field, headers=exc.headers)

    @app.exception_handler(MmqError)
    async def _mmq(request: Request, exc: MmqError) -> JSONResponse:
        status = status_of(exc)
        if status == 500:
            log.error("%s %s: %s", request.method, request.url.path, exc)
            return error_response(500, "error", "internal error")
        return error_response(status, exc.kind, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        # ("body", "k") → "k": the field as the client wrote it, without FastAPI's location.
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
        field = ".".join(where) or None
        message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
        return error_response(422, "invalid", f"{field}: {message}" if field else message, field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        type = _TYPES.get(exc.status_code, "error")
        return error_response(exc.status_code, type, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s", request.method, request.url.path)
        return error_response(500, "error", "internal error")

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
from starlette.middleware.body_limit import MAX_BODY_SIZE_SCOPE_KEY
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
    app.add_middleware(PlainErrorsAsJson)
    app.add_middleware(InternalErrors)

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
        message = too_large(request.scope) if exc.status_code == 413 else str(exc.detail)
        return error_response(exc.status_code, type, message, headers=exc.headers)

    @app.exception_handler(Exception)  # what InternalErrors does not see (middleware's)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("%s %s", request.method, request.url.path)
        return error_response(500, "error", "internal error")


class InternalErrors:
    """Any other exception: logged, answered as a bare 500. A handler of `Exception`
    alone would answer too, but Starlette then raises it again to the server, which
    closes the connection (a client reusing it gets a reset) and the metrics never see
    the 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:  # too late to answer: the server ends the connection
                raise
            log.exception("%s %s", scope.get("method"), scope.get("path"))
            await error_response(500, "error", "internal error")(scope, receive, send)


def too_large(scope: Scope) -> str:
    limit = scope.get(MAX_BODY_SIZE_SCOPE_KEY)
    where = f"this route's limit of {limit:,} bytes" if isinstance(limit, int) else "the limit"
    return f"the request body is over {where}: send fewer or smaller files per request"


class PlainErrorsAsJson:
    """Starlette answers a few errors itself in plain text, past the exception handlers: a
    body over a route's `max_body_size` (413, by its Content-Length) and a bad or
    unsatisfiable `Range` on a file (400, 416). This gives them the one error shape,
    keeping their other headers (a 416's Content-Range)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start: Message | None = None
        text = bytearray()

        async def send_json(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start" and message["status"] >= 400:
                content_type = dict(message.get("headers", [])).get(b"content-type", b"")
                if content_type.startswith(b"text/plain"):
                    start = message  # held until its body is read
                    return
            if start is None or message["type"] != "http.response.body":
                return await send(message)
            text.extend(message.get("body", b""))
            if not message.get("more_body", False):
                response = _as_json(scope, start, text.decode(errors="replace"))
                await response(scope, receive, send)

        await self.app(scope, receive, send_json)


def _as_json(scope: Scope, start: Message, text: str) -> JSONResponse:
    status = start["status"]
    kept = {
        k.decode("latin-1"): v.decode("latin-1")
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-type", b"content-length")
    }
    if status == 413:
        text = too_large(scope)
    elif status == 416:
        text = f"the requested range is not in the file ({kept.get('content-range')})"
    return error_response(status, _TYPES.get(status, "error"), text or "error", headers=kept)

"""The FastAPI app: `create_app()` for uvicorn (`mmq serve`), or with settings in tests."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mmq.api import errors
from mmq.api.routes import collections, delete, jobs, media, ops, recommend, search
from mmq.api.state import ApiState
from mmq.config import Settings, get_settings
from mmq.embedded import Urls

STATIC = Path(__file__).parent / "static"


def create_app(settings: Settings | None = None, urls: Urls | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.mmq = ApiState.open(settings, urls)
        app.state.mmq.client.require_schema()
        yield
        app.state.mmq.close()

    app = FastAPI(
        title="mmq",
        summary="Multimodal retrieval: ingest images, texts and videos; search them by meaning.",
        version="1",
        lifespan=lifespan,
    )
    errors.install(app)
    if settings.api_cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.api_cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(Measured)
    app.include_router(collections.router(settings))
    app.include_router(search.router(settings))
    app.include_router(delete.router(settings))
    app.include_router(recommend.router())
    app.include_router(jobs.router())
    app.include_router(media.router())
    app.include_router(ops.router())
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    return app


class Measured:
    """Counts every answer in the metrics by method, route template (one series per
    endpoint, not per item id) and status. Plain ASGI: Starlette's BaseHTTPMiddleware
    would put every request through an extra task and stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = 500

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            state = getattr(scope["app"].state, "mmq", None)
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if state is not None:
                state.metrics.observe(scope["method"], route, status, time.perf_counter() - t0)

"""`mmq serve`: the HTTP API and its page under uvicorn (docs/api.md)."""

from __future__ import annotations

import argparse
import sys

from mmq.config import get_settings
from mmq.embedded import export_urls, resolve_urls


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Servers resolved (embedded ones started) once here, and their URLs exported, so that
    # every uvicorn worker process connects to the same ones.
    export_urls(resolve_urls(get_settings()))
    get_settings.cache_clear()
    print(f"mmq serve: http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(
        "mmq.api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
    )
    return 0

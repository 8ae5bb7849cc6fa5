"""`mmq serve`: the HTTP API and its page under uvicorn (docs/api.md). With `--demo`
(what `make serve` runs): also an ingest and a search worker, the demo collection and a
key for it, until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mmq.config import Settings, get_settings
from mmq.embedded import export_urls, resolve_urls


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=1, help="API processes (uvicorn workers)")
    p.add_argument(
        "--demo",
        action="store_true",
        help="also start an ingest and a search worker, store the demo collection and print "
        "a key for it: a page to try at once",
    )


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    # Servers resolved (embedded ones started) once here, and their URLs exported, so that
    # every uvicorn worker process connects to the same ones.
    settings = get_settings()
    if args.demo:
        from mmq.cli.spawn import ready_servers

        ready_servers(settings)
    else:
        export_urls(resolve_urls(settings))
    get_settings.cache_clear()
    with _demo(get_settings()) if args.demo else _nothing() as key:
        address = f"http://{args.host}:{args.port}/"
        print(f"mmq serve: the page is at {address} (API docs at {address}docs)", flush=True)
        if key:
            print(f"mmq serve: paste this key into the page (Ctrl-C stops):\n{key}", flush=True)
        uvicorn.run(
            "mmq.api.app:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level="warning",
        )
    return 0


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


@contextmanager
def _demo(settings: Settings) -> Iterator[str]:
    """Workers for the run, the demo collection stored, and a new write key over it."""
    from mmq.cli.demo import demo_set
    from mmq.cli.spawn import running_workers
    from mmq.client import Client
    from mmq.store.api_keys import create_key
    from mmq.store.db import make_engine, make_sessionmaker

    t0 = time.monotonic()
    client = Client(settings)
    demo = demo_set(settings)
    with running_workers(client.app, log_dir=settings.state_dir / "logs", roots=demo.roots):
        print("mmq serve: storing the demo collection (photos, captions, a video) ...", flush=True)
        result = client.ingest(demo.items, collection="demo").result(timeout=600)
        print(
            f"mmq serve: collection 'demo' ready: {result.stored} items in "
            f"{time.monotonic() - t0:.0f}s",
            file=sys.stderr,
        )
        engine = make_engine(client.urls.database_url, pool_size=1)
        with make_sessionmaker(engine)() as session:
            key, _ = create_key(session=session, collections=["demo"], role="write")
            session.commit()
        engine.dispose()
        yield key
    client.close()

"""A real HTTP server for API tests: uvicorn on a free loopback port, in a thread of the
test process, serving `create_app` over the session's servers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from mmq.config import Settings
from mmq.embedded import Urls


@dataclass(frozen=True)
class Api:
    url: str  # http://127.0.0.1:<port>


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serving(settings: Settings, urls: Urls) -> Iterator[Api]:
    import uvicorn

    from mmq.api.app import create_app

    port = free_port()
    config = uvicorn.Config(
        create_app(settings, urls), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API server did not start")
        time.sleep(0.05)
    try:
        yield Api(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def new_key(urls: Urls, collections: Sequence[str], role: str) -> str:
    """A fresh API key over `collections`, made as `mmq keys create` makes one."""
    from mmq.store.api_keys import create_key
    from mmq.store.db import make_engine, make_sessionmaker

    engine = make_engine(urls.database_url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            key, _ = create_key(session=session, collections=collections, role=role)  # type: ignore[arg-type]
            session.commit()
    finally:
        engine.dispose()
    return key


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}

"""A real HTTP server for API tests: uvicorn on a free loopback port, in a thread of the
test process, serving `create_app` over the session's servers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

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


def error_of(response: httpx.Response, status: int, *, field: str | None = None) -> dict[str, Any]:
    """The response's error, after checking its status and the API's one error shape
    `{"error": {"type", "message", "field"}}` (and `field` when given)."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "message", "field"}, error
    assert isinstance(error["type"], str) and error["type"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert "Traceback" not in error["message"], error
    if field is not None:
        assert error["field"] == field, error
    return error


def wait_job(
    http: httpx.Client, status_url: str, headers: dict[str, str], *, timeout: float = 180.0
) -> dict[str, Any]:
    """Poll a job's `status_url` until it is done or failed; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = http.get(status_url, headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        if body["state"] in ("done", "failed"):
            return body
        assert time.monotonic() < deadline, f"job still {body['state']}: {body}"
        time.sleep(0.2)


def accepted(response: httpx.Response) -> str:
    """The `status_url` of a 202 `{"job_id", "status_url"}` answer, after checking it."""
    assert response.status_code == 202, response.text
    body = response.json()
    assert set(body) == {"job_id", "status_url"}, body
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}", body
    return str(body["status_url"])


def upload(
    http: httpx.Client,
    collection: str,
    headers: dict[str, str],
    files: Mapping[str, bytes | Path],
    *,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """POST files (name → bytes or a path) as multipart `file` parts and wait for the job:
    its finished status."""
    parts = [
        ("file", (name, data if isinstance(data, bytes) else data.read_bytes()))
        for name, data in files.items()
    ]
    form = {"metadata": json.dumps(dict(metadata))} if metadata is not None else None
    response = http.post(
        f"/v1/collections/{collection}/items", headers=headers, files=parts, data=form
    )
    return wait_job(http, accepted(response), headers)


def item_ids(job: dict[str, Any], names: Sequence[str]) -> dict[str, int]:
    """A finished ingest job's items, all stored, by the names they were sent under (in
    order: a job lists its items as they were sent)."""
    assert job["state"] == "done", job
    assert [item["status"] for item in job["items"]] == ["stored"] * len(names), job
    return {name: int(item["item_id"]) for name, item in zip(names, job["items"], strict=True)}

"""docs/wire-format.md, proved: a producer with only redis-py and JSON puts Celery messages on
the broker list and reads the results from the result backend; no Celery on its side."""

from __future__ import annotations

import base64
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from mmq.client import Client, IngestJob
from mmq.embedded import Urls
from mmq.schemas import IngestResult, SearchResult
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow

QUEUES = {"mmq.ingest": "ingest", "mmq.search": "search", "mmq.ping": "search"}
# What the page marks required besides body, content-type and content-encoding.
REQUIRED = {
    "headers": ("task", "id"),
    "properties": ("body_encoding", "delivery_tag", "delivery_info"),
}


def envelope(task: str, args: list[Any], task_id: str) -> dict[str, Any]:
    """The Celery protocol v2 message of docs/wire-format.md, as kombu's Redis transport
    stores it: one JSON object whose body is base64 of [args, kwargs, embed]."""
    body = [args, {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py",
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "timelimit": [None, None],
            "argsrepr": json.dumps(args)[:200],
            "kwargsrepr": "{}",
            "origin": "wire-format-test",
            "ignore_result": False,
        },
        "properties": {
            "correlation_id": task_id,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": QUEUES[task]},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }


def send(broker: redis.Redis, task: str, payload: dict[str, Any]) -> str:
    task_id = str(uuid.uuid4())
    broker.lpush(QUEUES[task], json.dumps(envelope(task, [payload], task_id)))
    return task_id


def wait_result(backend: redis.Redis, task_id: str, timeout: float = 180.0) -> Any:
    """Poll `celery-task-meta-<id>` until the task is SUCCESS (its result) or FAILURE."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = backend.get(f"celery-task-meta-{task_id}")
        meta = json.loads(raw) if raw else {"status": "PENDING"}
        if meta["status"] == "SUCCESS":
            return meta["result"]
        if meta["status"] == "FAILURE":
            pytest.fail(f"task {task_id} failed: {meta['result']}")
        time.sleep(0.1)
    pytest.fail(f"no result for {task_id} in {timeout}s")


@pytest.fixture(scope="module")
def broker(urls: Urls) -> redis.Redis:
    return redis.Redis.from_url(urls.broker_url)


@pytest.fixture(scope="module")
def backend(urls: Urls) -> redis.Redis:
    return redis.Redis.from_url(urls.result_backend)


def test_a_search_sent_as_a_raw_message(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    broker: redis.Redis,
    backend: redis.Redis,
) -> None:
    collection = fresh("wire")
    items = [{"image_path": str(p), "external_id": n} for n, p in photos.items()]
    assert client.ingest(items, collection=collection).result(timeout=300).failed == 0
    query = {"collection": collection, "text": "a cat", "k": 3, "targets": ["image"]}
    result = SearchResult.model_validate(wait_result(backend, send(broker, "mmq.search", query)))
    assert (result.collection, len(result.hits)) == (collection, 3)
    assert (result.hits[0].external_id, result.hits[0].kind) == ("chelsea", "image")


def test_a_whole_ingest_request_sent_as_a_raw_message(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    broker: redis.Redis,
    backend: redis.Redis,
) -> None:
    collection = fresh("wire")
    png = base64.b64encode(photos["coffee"].read_bytes()).decode()
    request = {
        "collection": collection,
        "items": [
            {"image_path": str(photos["chelsea"]), "external_id": "cat"},
            {"image_bytes": png, "text": "a cup of coffee", "external_id": "coffee"},
            {"text": "a bad item", "colour": "red"},  # an unknown field: fails alone
        ],
    }
    task_id = send(broker, "mmq.ingest", request)
    raw = wait_result(backend, task_id)
    # Each item says whether it replaced one (a new collection: none did).
    assert [item["replaced"] for item in raw["items"]] == [False, False, False]
    result = IngestResult.model_validate(raw)
    assert [r.status for r in result.items] == ["stored", "stored", "failed"]
    assert "colour" in (result.items[2].error or "")
    # The worker registered it as a one-task job under the message's id.
    job = client.job(task_id)
    assert isinstance(job, IngestJob)
    assert job.result(timeout=10) == result
    found = wait_result(
        backend, send(broker, "mmq.search", {"collection": collection, "text": "a cat", "k": 1})
    )
    assert found["hits"][0]["external_id"] == "cat"
    # The same request again under a new message id: the stored items replace themselves.
    again = wait_result(backend, send(broker, "mmq.ingest", request))
    assert [(i["status"], i["replaced"]) for i in again["items"]] == [
        ("stored", True),
        ("stored", True),
        ("failed", False),
    ]
    assert [i["item_id"] for i in again["items"]] == [r.item_id for r in result.items]


def test_the_required_fields_alone_are_enough(
    workers: Procs, broker: redis.Redis, backend: redis.Redis
) -> None:
    task_id = str(uuid.uuid4())
    message = envelope("mmq.ping", [], task_id)
    for part, keep in REQUIRED.items():
        message[part] = {key: message[part][key] for key in keep}
    broker.lpush("search", json.dumps(message))
    assert wait_result(backend, task_id) == "pong"

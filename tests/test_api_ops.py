"""The API's operations side: /healthz, /metrics (route templates, queue depths, ingest
tasks), the OpenAPI document and /docs, CORS off unless configured, no stack trace in a
500, and an app that loads no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmq.api.routes import ops
from mmq.config import Settings
from mmq.embedded import Urls
from tests.support.api import accepted, bearer, error_of, new_key, serving, wait_job
from tests.support.names import fresh

pytestmark = pytest.mark.slow

ENDPOINTS = {
    "/v1/collections": {"get"},
    "/v1/collections/{name}/items": {"post"},
    "/v1/collections/{name}/search": {"post"},
    "/v1/jobs/{job_id}": {"get"},
    "/v1/items/{item_id}/media": {"get"},
    "/v1/items/{item_id}/thumbnail": {"get"},
    "/healthz": {"get"},
    "/metrics": {"get"},
}
ORIGIN = "http://127.0.0.1:5173"  # a page served from elsewhere, as a browser names it


def test_healthz_names_broker_database_and_workers(http: httpx.Client) -> None:
    # A worker busy on this loaded machine may miss the half second a ping waits for
    # (the answer is then "degraded", still 200): ask again a few times.
    for _ in range(5):
        body = _health(http)
        if body["status"] == "ok":
            break
        time.sleep(1)
    assert body["status"] == "ok", body
    for queue, names in body["workers"].items():
        assert isinstance(names, list) and len(names) >= 1, (queue, names)
        assert all(isinstance(n, str) and n for n in names)
    # Each call sees them: a broadcast's replies once went to the previous one's reader.
    assert [_health(http)["status"] for _ in range(3)] == ["ok"] * 3


def _health(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/healthz")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["broker"] is True and body["database"] is True, body
    assert set(body["workers"]) == {"ingest", "search"}, body
    assert body["status"] in ("ok", "degraded"), body
    return body


def test_metrics_by_route_template_with_queues_and_tasks(http: httpx.Client, urls: Urls) -> None:
    name = fresh("ops")
    headers = bearer(new_key(urls, [name], "write"))
    response = http.post(
        f"/v1/collections/{name}/items", headers=headers, json={"items": [{"text": "metered"}]}
    )
    status_url = accepted(response)
    assert wait_job(http, status_url, headers)["state"] == "done"
    error_of(http.get("/v1/items/987654321/media", headers=headers), 404)
    error_of(http.get("/v1/jobs/not-a-job-id", headers=headers), 404)
    http.get("/no/such/page")

    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE mmq_api_requests_total counter" in text
    for line in (
        'mmq_api_requests_total{method="POST",route="/v1/collections/{name}/items",status="202"} ',
        'mmq_api_requests_total{method="GET",route="/v1/jobs/{job_id}",status="200"} ',
        'mmq_api_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"} ',
        'mmq_api_requests_total{method="GET",route="/v1/items/{item_id}/media",status="404"} ',
        'mmq_api_requests_total{method="GET",route="unmatched",status="404"} ',
    ):
        assert line in text, line
    # Templates, never the raw ids: one series per endpoint.
    for raw in (name, "987654321", "not-a-job-id", "/no/such/page", status_url):
        assert raw not in text, raw
    assert (
        'mmq_api_request_seconds_bucket{method="GET",route="/v1/jobs/{job_id}",le="+Inf"}' in text
    )
    for queue in ("ingest", "search"):
        assert f'mmq_queue_depth{{queue="{queue}"}} ' in text
    assert "# TYPE mmq_ingest_tasks gauge" in text
    assert 'mmq_ingest_tasks{state="done"} ' in text


def test_openapi_lists_every_v1_endpoint_and_docs_serve(http: httpx.Client) -> None:
    response = http.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    paths = spec["paths"]
    for path, methods in ENDPOINTS.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    schemes = {s["type"] for s in spec["components"]["securitySchemes"].values()}
    assert schemes == {"http", "apiKey"}  # Bearer and X-API-Key
    ingest = paths["/v1/collections/{name}/items"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(ingest)
    docs = http.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in docs.text


def test_cors_is_off_unless_origins_are_configured(
    http: httpx.Client, settings: Settings, urls: Urls
) -> None:
    preflight = {"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization,content-type"
    assert (
        "access-control-allow-origin"
        not in http.get("/healthz", headers={"Origin": ORIGIN}).headers
    )
    closed = http.options("/v1/collections/x/search", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers

    opened = settings.model_copy(update={"api_cors_origins": [ORIGIN]})
    with serving(opened, urls) as api, httpx.Client(base_url=api.url, timeout=60) as cors:
        answer = cors.get("/healthz", headers={"Origin": ORIGIN})
        assert answer.headers["access-control-allow-origin"] == ORIGIN
        allowed = cors.options("/v1/collections/x/search", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in allowed.headers["access-control-allow-methods"]
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        # Another origin is not let in.
        other = cors.get("/healthz", headers={"Origin": "http://127.0.0.2:8080"})
        assert "access-control-allow-origin" not in other.headers


def test_an_internal_error_answers_without_a_stack_trace(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(state: object) -> None:
        raise RuntimeError("secret detail at /srv/mmq/internal.py line 12")

    # The server runs in this process: /metrics calls the patched function.
    monkeypatch.setattr(ops, "_gauges", broken)
    response = http.get("/metrics")
    assert response.status_code == 500
    assert response.json() == {
        "error": {"type": "error", "message": "internal error", "field": None}
    }
    assert "secret" not in response.text and "Traceback" not in response.text
    monkeypatch.undo()
    # The 500 was counted, under its route.
    metrics = http.get("/metrics").text
    assert 'mmq_api_requests_total{method="GET",route="/metrics",status="500"} 1' in metrics


def test_creating_the_app_loads_no_torch(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import mmq.api.app
        from mmq.config import Settings
        app = mmq.api.app.create_app(Settings())
        heavy = ("torch", "transformers", "torchvision", "mmq.encoders")
        loaded = [m for m in heavy if m in sys.modules]
        print(json.dumps({"routes": len(app.routes), "loaded": loaded}))
        """
    )
    env = os.environ | {"MMQ_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["routes"] > len(ENDPOINTS)
    assert report["loaded"] == []

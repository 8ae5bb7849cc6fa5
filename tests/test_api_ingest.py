"""Ingest through the API: multipart uploads (a bad file failing only itself), JSON items
(paths for admin keys only, inside the ingest roots), the job's status, the body limit, and
the collections listing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmq.config import Settings
from mmq.embedded import Urls
from tests.support.api import (
    accepted,
    bearer,
    error_of,
    new_key,
    serving,
    wait_job,
)
from tests.support.names import fresh

pytestmark = pytest.mark.slow

SENT = ("chelsea.png", "bad.jpg", "coffee.png", "rocket.png")  # the upload's files, in order


@dataclass(frozen=True)
class Keys:
    uploads: str  # a collection filled by one multipart upload
    items: str  # a collection filled by JSON items
    write: dict[str, str]
    admin: dict[str, str]


@pytest.fixture(scope="module")
def keys(urls: Urls) -> Keys:
    uploads, items = fresh("upload"), fresh("items")
    write = bearer(new_key(urls, [uploads, items], "write"))
    return Keys(uploads, items, write, bearer(new_key(urls, [uploads, items], "admin")))


@pytest.fixture(scope="module")
def uploaded(
    http: httpx.Client, keys: Keys, photos: dict[str, Path]
) -> tuple[httpx.Response, dict[str, Any]]:
    """The 202 answer to one multipart upload of three photos and a corrupt file, and the
    job's final status."""
    files = [
        ("file", (name, b"not an image" if name == "bad.jpg" else photos[name[:-4]].read_bytes()))
        for name in SENT
    ]
    response = http.post(
        f"/v1/collections/{keys.uploads}/items",
        headers=keys.write,
        files=files,
        data={"metadata": '{"batch": "one", "tags": ["api"]}'},
    )
    return response, wait_job(http, accepted(response), keys.write)


def test_upload_answers_202_with_the_job(
    uploaded: tuple[httpx.Response, dict[str, Any]],
) -> None:
    response, job = uploaded
    assert response.status_code == 202
    body = response.json()
    assert isinstance(body["job_id"], str) and body["job_id"]
    assert body["status_url"] == f"/v1/jobs/{body['job_id']}" == f"/v1/jobs/{job['job_id']}"


def test_bad_file_fails_only_its_own_item(
    uploaded: tuple[httpx.Response, dict[str, Any]], keys: Keys
) -> None:
    _, job = uploaded
    assert job["kind"] == "ingest" and job["collection"] == keys.uploads
    assert job["state"] == "done"
    assert job["progress"]["done"] == job["progress"]["total"] >= 1
    assert (job["stored"], job["failed"], job["replaced"]) == (3, 1, 0)
    items = job["items"]
    assert [i["status"] for i in items] == ["stored", "failed", "stored", "stored"]
    bad = items[1]
    assert bad["item_id"] is None and isinstance(bad["error"], str) and bad["error"]
    for item in (items[0], *items[2:]):
        assert isinstance(item["item_id"], int) and item["error"] is None
        # Uploads land in the media store, by content: never under the name sent.
        assert Path(item["source"]).suffix == ".png"
        assert Path(item["source"]).name not in SENT
    assert len({i["item_id"] for i in items if i["item_id"]}) == 3


def test_metadata_part_goes_to_every_file(
    http: httpx.Client, uploaded: tuple[httpx.Response, dict[str, Any]], keys: Keys
) -> None:
    response = http.post(
        f"/v1/collections/{keys.uploads}/search",
        headers=keys.write,
        json={"text": "a cat", "k": 10, "filter": {"batch": "one"}},
    )
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert sorted(h["metadata"]["filename"] for h in hits) == [
        "chelsea.png",
        "coffee.png",
        "rocket.png",
    ]
    assert all(h["metadata"]["batch"] == "one" and h["metadata"]["tags"] == ["api"] for h in hits)


def test_json_text_items_with_a_write_key(http: httpx.Client, keys: Keys) -> None:
    items = [
        {"text": "a red bicycle against a wall", "external_id": "bike", "metadata": {"n": 1}},
        {"text": "a bowl of soup", "external_id": "soup"},
    ]
    response = http.post(
        f"/v1/collections/{keys.items}/items", headers=keys.write, json={"items": items}
    )
    job = wait_job(http, accepted(response), keys.write)
    assert (job["state"], job["stored"], job["failed"]) == ("done", 2, 0)
    assert [i["external_id"] for i in job["items"]] == ["bike", "soup"]
    assert all(isinstance(i["item_id"], int) for i in job["items"])


def test_paths_need_an_admin_key(http: httpx.Client, keys: Keys, photos: dict[str, Path]) -> None:
    url = f"/v1/collections/{keys.items}/items"
    path = str(photos["horse"])
    as_writer = http.post(url, headers=keys.write, json={"items": [{"image_path": path}]})
    error = error_of(as_writer, 403, field="items.0")
    assert "admin" in error["message"]
    as_writer = http.post(url, headers=keys.write, json={"items": [{"video_path": path}]})
    error_of(as_writer, 403, field="items.0")

    # An admin key may, inside MMQ_INGEST_ROOTS (the tests' temporary folder is one) ...
    as_admin = http.post(
        url, headers=keys.admin, json={"items": [{"image_path": path, "external_id": "horse"}]}
    )
    job = wait_job(http, accepted(as_admin), keys.admin)
    assert (job["state"], job["stored"]) == ("done", 1)
    assert job["items"][0]["source"] == path and job["items"][0]["external_id"] == "horse"

    # ... and nowhere else.
    outside = http.post(url, headers=keys.admin, json={"items": [{"image_path": "/etc/hostname"}]})
    error = error_of(outside, 422, field="items.0")
    assert "/etc/hostname" in error["message"]


def test_body_over_the_limit_is_413(
    settings: Settings, urls: Urls, keys: Keys, photos: dict[str, Path]
) -> None:
    small = settings.model_copy(update={"api_max_upload_bytes": 10_000})
    with serving(small, urls) as api, httpx.Client(base_url=api.url, timeout=60) as http:
        url = f"/v1/collections/{keys.uploads}/items"
        response = http.post(url, headers=keys.write, files=[("file", ("big.bin", b"x" * 50_000))])
        error = error_of(response, 413)
        assert error["type"] == "too_large" and "10,000 bytes" in error["message"]
        response = http.post(url, headers=keys.write, json={"items": [{"text": "x" * 50_000}]})
        assert error_of(response, 413) == error
        # Without a Content-Length (chunked), the limit holds on the bytes received.
        chunks = iter([b'{"items": [{"text": "', b"x" * 50_000, b'"}]}'])
        json_type = {"Content-Type": "application/json"}
        response = http.post(url, headers=keys.write | json_type, content=chunks)
        assert "content-length" not in response.request.headers
        assert error_of(response, 413) == error
        # A body under the limit goes through.
        items_url = f"/v1/collections/{keys.items}/items"
        note = http.post(items_url, headers=keys.write, json={"items": [{"text": "a short note"}]})
        accepted(note)


@pytest.mark.parametrize("metadata", ["{not json", "[1, 2]", '"text"'])
def test_bad_metadata_part_is_422(
    http: httpx.Client, keys: Keys, photos: dict[str, Path], metadata: str
) -> None:
    response = http.post(
        f"/v1/collections/{keys.uploads}/items",
        headers=keys.write,
        files=[("file", ("chelsea.png", photos["chelsea"].read_bytes()))],
        data={"metadata": metadata},
    )
    error = error_of(response, 422, field="metadata")
    assert error["type"] == "invalid" and "metadata" in error["message"]


def test_malformed_bodies(http: httpx.Client, keys: Keys) -> None:
    url = f"/v1/collections/{keys.items}/items"
    not_json = http.post(
        url, headers=keys.write | {"Content-Type": "application/json"}, content=b"{"
    )
    assert error_of(not_json, 400)["type"] == "bad_request"
    error_of(http.post(url, headers=keys.write, json={"things": []}), 422, field="items")
    error_of(http.post(url, headers=keys.write, json={"items": []}), 422, field="items")
    error_of(http.post(url, headers=keys.write, json={"items": [{"k": 1}]}), 422, field="items.0")
    no_file = http.post(url, headers=keys.write, files=[("other", ("a.png", b"x"))])
    error_of(no_file, 422, field="file")


def test_collections_lists_model_fusion_and_counts(
    http: httpx.Client, uploaded: tuple[httpx.Response, dict[str, Any]], keys: Keys, urls: Urls
) -> None:
    response = http.get("/v1/collections", headers=keys.write)
    assert response.status_code == 200
    listed = {c["name"]: c for c in response.json()["collections"]}
    assert keys.uploads in listed
    summary = listed[keys.uploads]
    assert set(summary) == {"name", "model", "model_version", "fusion", "dim", "counts"}
    assert isinstance(summary["model"], str) and summary["model"]
    assert isinstance(summary["fusion"], str) and summary["fusion"]
    assert isinstance(summary["dim"], int) and summary["dim"] > 0
    assert summary["counts"].get("image") == 3  # the bad file was not stored
    # A key over collections that do not exist yet lists nothing.
    empty = bearer(new_key(urls, [fresh("empty")], "read"))
    assert http.get("/v1/collections", headers=empty).json() == {"collections": []}

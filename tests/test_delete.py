"""Delete through real workers: by external ids, item ids, a metadata filter, a whole
collection; from the Client, the CLI and the HTTP API. A deleted item is never found by a
search that starts after its job is done, a video's segments go with it, and a media-store
file goes with the last item that references it (never a file outside the store)."""

from __future__ import annotations

import io
import json
import secrets
from pathlib import Path

import httpx
import pytest
from PIL import Image

from mmq.client import Client
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.errors import BadRequest, NotFound
from mmq.media.store import MediaStore
from mmq.schemas import IngestItem
from tests.support.api import accepted, bearer, error_of, new_key, wait_job
from tests.support.cli import mmq
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow

PHOTOS = ("chelsea", "coffee", "rocket", "horse")
TIMEOUT = 120


def fill(client: Client, photos: dict[str, Path]) -> tuple[str, dict[str, int]]:
    """A fresh collection of four photos (external id = the photo's name; `group` a for
    the first two, b for the others) and a caption: its name, and external id → item id."""
    name = fresh("del")
    items = [
        IngestItem(image_path=str(photos[p]), external_id=p, metadata={"group": "ab"[i // 2]})
        for i, p in enumerate(PHOTOS)
    ]
    items.append(IngestItem(text="a tabby cat", external_id="caption"))
    result = client.ingest(items, collection=name).result(timeout=TIMEOUT)
    assert result.failed == 0, result.items
    return name, {str(it.external_id): int(it.item_id or 0) for it in result.items}


def found(client: Client, collection: str, text: str = "a cat") -> set[str]:
    hits = client.search(collection=collection, text=text, k=20).result(timeout=TIMEOUT).hits
    return {h.external_id or "" for h in hits}


@pytest.fixture()
def filled(client: Client, workers: Procs, photos: dict[str, Path]) -> tuple[str, dict[str, int]]:
    return fill(client, photos)


def test_by_external_ids_the_items_go_and_a_missing_id_is_reported(
    client: Client, filled: tuple[str, dict[str, int]]
) -> None:
    name, _ = filled
    assert found(client, name) == {*PHOTOS, "caption"}
    result = client.delete(name, external_ids=["chelsea", "nope", "caption", "nope"]).result(
        timeout=TIMEOUT
    )
    assert (result.collection, result.deleted, result.missing) == (name, 2, ["nope"])
    assert found(client, name) == {"coffee", "rocket", "horse"}


def test_by_item_ids(client: Client, filled: tuple[str, dict[str, int]]) -> None:
    name, ids = filled
    result = client.delete(name, item_ids=[ids["coffee"], 987654321]).result(timeout=TIMEOUT)
    assert (result.deleted, result.missing) == (1, ["987654321"])
    assert found(client, name) == {"chelsea", "rocket", "horse", "caption"}


def test_by_item_ids_of_another_collection_deletes_nothing(
    client: Client, filled: tuple[str, dict[str, int]], photos: dict[str, Path]
) -> None:
    name, _ = filled
    other, other_ids = fill(client, photos)
    result = client.delete(name, item_ids=[other_ids["chelsea"]]).result(timeout=TIMEOUT)
    assert (result.deleted, result.missing) == (0, [str(other_ids["chelsea"])])
    assert "chelsea" in found(client, other)


def test_by_filter(client: Client, filled: tuple[str, dict[str, int]]) -> None:
    name, _ = filled
    result = client.delete(name, filter={"group": "b"}).result(timeout=TIMEOUT)
    assert (result.deleted, result.missing) == (2, [])
    assert found(client, name) == {"chelsea", "coffee", "caption"}


def test_a_whole_collection_with_its_indexes(
    client: Client, filled: tuple[str, dict[str, int]], urls: Urls
) -> None:
    name, _ = filled
    with connect(urls.database_url) as conn:
        row = conn.execute("SELECT id FROM collections WHERE name = %s", (name,)).fetchone()
    assert row is not None
    cid = row[0]
    client.record("ann", name, "chelsea", "purchase")  # the users' events go with it too
    assert client.delete(name, all=True).result(timeout=TIMEOUT).deleted == 5
    assert name not in {c.name for c in client.collections()}
    with connect(urls.database_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM items WHERE collection_id = %s", (cid,)
        ).fetchone() == (0,)
        events = conn.execute("SELECT count(*) FROM events WHERE collection = %s", (name,))
        assert events.fetchone() == (0,)
        indexes = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE indexname IN (%s, %s)",
            (f"items_hnsw_c{cid}", f"segments_hnsw_c{cid}"),
        ).fetchall()
    assert indexes == []
    with pytest.raises(NotFound):
        client.search(collection=name, text="a cat").result(timeout=TIMEOUT)
    with pytest.raises(NotFound, match="unknown collection"):
        client.delete(name, all=True).result(timeout=TIMEOUT)


def test_a_video_goes_with_its_segments(
    client: Client, workers: Procs, urls: Urls, tmp_path: Path, photos: dict[str, Path]
) -> None:
    name = fresh("del-video")
    video = tmp_path / "clip.mp4"
    video.write_bytes(video_bytes(seconds=3, size=(160, 120)))
    items = [
        IngestItem(video_path=str(video), external_id="clip"),
        IngestItem(image_path=str(photos["chelsea"]), external_id="chelsea"),
    ]
    result = client.ingest(items, collection=name).result(timeout=TIMEOUT)
    assert result.failed == 0, result.items
    video_id = result.items[0].item_id
    with connect(urls.database_url) as conn:
        segments = "SELECT count(*) FROM segments WHERE item_id = %s"
        assert conn.execute(segments, (video_id,)).fetchone()[0] > 0  # type: ignore[index]
    hits = client.search(collection=name, text="grey", targets=["video"]).result(timeout=TIMEOUT)
    assert [h.external_id for h in hits.hits] == ["clip"]
    assert client.delete(name, external_ids=["clip"]).result(timeout=TIMEOUT).deleted == 1
    with connect(urls.database_url) as conn:
        assert conn.execute(segments, (video_id,)).fetchone() == (0,)
    hits = client.search(collection=name, text="grey", targets=["video"]).result(timeout=TIMEOUT)
    assert hits.hits == []
    assert video.exists()  # outside the media store: never touched


def test_a_media_store_file_goes_with_the_last_item_that_references_it(
    client: Client, workers: Procs, settings: Settings, photos: dict[str, Path]
) -> None:
    store = MediaStore(settings.resolved_media_dir)
    # Content of this test's own: the same bytes kept by another test's items (an upload or
    # an original of the rocket photo) would rightly keep the file.
    photo = Image.open(photos["rocket"]).convert("RGB")
    photo.putpixel((0, 0), tuple(secrets.token_bytes(3)))
    photo.putpixel((1, 0), tuple(secrets.token_bytes(3)))
    encoded = io.BytesIO()
    photo.save(encoded, format="PNG")
    encoded.seek(0)
    stored = store.put(encoded, suffix=".png")
    first, second = fresh("del-media"), fresh("del-media")
    for name in (first, second):
        items = [
            IngestItem(image_path=str(stored.path), external_id="upload"),
            IngestItem(image_path=str(photos["coffee"]), external_id="coffee"),
        ]
        assert client.ingest(items, collection=name).result(timeout=TIMEOUT).failed == 0
    assert client.delete(first, external_ids=["upload"]).result(timeout=TIMEOUT).deleted == 1
    assert stored.path.is_file()  # the second collection's item still references it
    assert client.delete(second, all=True).result(timeout=TIMEOUT).deleted == 2
    assert not stored.path.exists()
    assert photos["coffee"].is_file()  # outside the media store: never touched


def test_the_client_refuses_a_bad_delete_before_sending(client: Client) -> None:
    for kwargs, message in [
        ({}, "one of"),
        ({"external_ids": ["a"], "item_ids": [1]}, "one of"),
        ({"external_ids": ["a"], "all": True}, "one of"),
        ({"filter": {}}, "empty filter"),
        ({"external_ids": "abc"}, "list of ids"),
        ({"item_ids": 7}, "list of ids"),
    ]:
        with pytest.raises(BadRequest, match=message):
            client.delete("c", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="collection"):
        client.delete("no such/name", all=True)


# The command line.


def test_cli_by_ids_reports_missing_ids_on_stderr(
    client: Client, filled: tuple[str, dict[str, int]]
) -> None:
    name, ids = filled
    out = mmq("delete", "--collection", name, "--id", "chelsea", "--id", "ghost")
    assert out.stdout == "1 deleted\n"
    assert out.stderr == f"mmq delete: not in collection {name!r}: ghost\n"
    out = mmq("delete", "--collection", name, "--item-id", str(ids["coffee"]), "--json")
    assert json.loads(out.stdout) == {"collection": name, "deleted": 1, "missing": []}
    assert found(client, name) == {"rocket", "horse", "caption"}


def test_cli_filter_all_and_no_wait(client: Client, filled: tuple[str, dict[str, int]]) -> None:
    name, _ = filled
    assert mmq("delete", "--collection", name, "--filter", '{"group": "a"}').stdout == "2 deleted\n"
    job_id = mmq("delete", "--collection", name, "--all", "--no-wait").stdout.strip()
    assert client.job(job_id).result(timeout=TIMEOUT).deleted == 3  # type: ignore[union-attr]
    out = mmq("delete", "--collection", name, "--all", check=False)
    assert (out.returncode, out.stderr) == (
        4,
        f"mmq delete: not_found: unknown collection {name!r}\n",
    )


def test_cli_needs_exactly_one_of_id_filter_all(workers: Procs) -> None:
    assert mmq("delete", "--collection", "c", check=False).returncode == 2
    both = mmq("delete", "--collection", "c", "--id", "a", "--all", check=False)
    assert both.returncode == 2 and "not allowed with" in both.stderr
    empty = mmq("delete", "--collection", "c", "--filter", "{}", check=False)
    assert empty.returncode == 3 and "empty filter" in empty.stderr


# The HTTP API.


def test_http_delete_items_and_collection(
    http: httpx.Client, client: Client, filled: tuple[str, dict[str, int]], urls: Urls
) -> None:
    name, ids = filled
    write = bearer(new_key(urls, [name], "write"))
    url = f"/v1/collections/{name}/items"
    response = http.request("DELETE", url, headers=write, json={"external_ids": ["chelsea", "x"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"collection": name, "deleted": 1, "missing": ["x"]}
    body = {"item_ids": [ids["coffee"]], "wait_ms": 0}  # 202 at once: then the job's URL
    job = wait_job(http, accepted(http.request("DELETE", url, headers=write, json=body)), write)
    assert (job["kind"], job["state"], job["deleted"], job["missing"]) == ("delete", "done", 1, [])
    response = http.request("DELETE", url, headers=write, json={"filter": {"group": "b"}})
    assert response.json()["deleted"] == 2
    assert found(client, name) == {"caption"}
    response = http.delete(f"/v1/collections/{name}", headers=write)
    assert response.json() == {"collection": name, "deleted": 1, "missing": []}
    assert http.get("/v1/collections", headers=write).json() == {"collections": []}
    error_of(http.delete(f"/v1/collections/{name}", headers=write), 404)


def test_http_needs_a_write_key_of_the_collection(
    http: httpx.Client, filled: tuple[str, dict[str, int]], urls: Urls
) -> None:
    name, _ = filled
    read = bearer(new_key(urls, [name], "read"))
    elsewhere = bearer(new_key(urls, ["another"], "write"))
    url = f"/v1/collections/{name}/items"
    for headers, status in ((read, 403), (elsewhere, 404)):
        error_of(http.request("DELETE", url, headers=headers, json={"external_ids": ["a"]}), status)
        error_of(http.delete(f"/v1/collections/{name}", headers=headers), status)
    write = bearer(new_key(urls, [name], "write"))
    error_of(
        http.request("DELETE", url, headers=write, json={"external_ids": ["a"], "item_ids": [1]}),
        400,
    )
    error_of(http.request("DELETE", url, headers=write, json={"all": True}), 422, field="all")
    error_of(http.request("DELETE", url, headers=write, json={}), 400)

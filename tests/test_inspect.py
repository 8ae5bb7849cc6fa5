"""Inspecting what is stored, straight from PostgreSQL: `mmq collections`, `mmq get`, and
the Client's `collections()` and `get()`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmq.client import Client
from mmq.errors import BadRequest, NotFound
from mmq.jobs.inventory import CollectionInfo
from mmq.schemas import IngestItem
from tests.support.cli import mmq
from tests.support.names import fresh
from tests.support.procs import Procs
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stored(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[str, dict[str, int]]:
    """A collection of two photos, a caption and a short video: its name, and external id
    → item id."""
    video = tmp_path_factory.mktemp("inspect") / "clip.mp4"
    video.write_bytes(video_bytes(seconds=3, size=(160, 120)))
    name = fresh("inspect")
    items = [
        IngestItem(image_path=str(photos["chelsea"]), external_id="cat", metadata={"a": 1}),
        IngestItem(image_path=str(photos["coffee"]), external_id="cup"),
        IngestItem(text="a tabby cat", external_id="caption"),
        IngestItem(video_path=str(video), external_id="clip"),
    ]
    result = client.ingest(items, collection=name).result(timeout=300)
    assert result.failed == 0, result.items
    return name, {str(it.external_id): int(it.item_id or 0) for it in result.items}


def listed(collections: list[CollectionInfo], name: str) -> CollectionInfo:
    (found,) = [c for c in collections if c.name == name]
    return found


def test_client_collections(client: Client, stored: tuple[str, dict[str, int]]) -> None:
    name, _ = stored
    c = listed(client.collections(), name)
    assert (c.model, c.fusion, c.dim) == ("lite", "sum", 384)
    assert c.counts == {"image": 2, "text": 1, "video": 1} and c.items == 4
    assert c.rows_bytes > 4 * 384 * 4  # at least the vectors, as float32
    assert c.index_bytes > 0 and c.size_bytes == c.rows_bytes + c.index_bytes
    assert c.updated_at is not None and c.created_at <= c.updated_at


def test_cli_collections(stored: tuple[str, dict[str, int]]) -> None:
    name, _ = stored
    (as_json,) = [c for c in json.loads(mmq("collections", "--json").stdout) if c["name"] == name]
    assert as_json["counts"] == {"image": 2, "text": 1, "video": 1}
    assert as_json["items"] == 4 and as_json["model"] == "lite"
    assert as_json["size_bytes"] == as_json["rows_bytes"] + as_json["index_bytes"] > 0
    assert set(as_json) >= {"model_version", "fusion", "dim", "created_at", "updated_at"}
    (line,) = [ln for ln in mmq("collections").stdout.splitlines() if ln.startswith(f"{name} ")]
    assert "4 items (2 image, 1 text, 1 video)" in line and "fusion sum" in line


def test_get_an_item_and_a_video_with_its_segments(
    client: Client, stored: tuple[str, dict[str, int]], photos: dict[str, Path]
) -> None:
    name, ids = stored
    cat = client.get(name, external_id="cat")
    assert (cat.item_id, cat.kind, cat.uri, cat.metadata) == (
        ids["cat"],
        "image",
        str(photos["chelsea"].resolve()),
        {"a": 1},
    )
    assert cat.segments is None and cat.duration_s is None
    assert client.get(name, item_id=ids["caption"]).text == "a tabby cat"
    clip = json.loads(mmq("get", "--collection", name, "--id", "clip", "--json").stdout)
    assert clip["kind"] == "video" and clip["duration_s"] == pytest.approx(3.0, abs=0.2)
    assert clip["segments"] and clip["segments"][0]["start_s"] == 0.0
    assert all(set(s) == {"ordinal", "start_s", "end_s", "keyframe_s"} for s in clip["segments"])
    text = mmq("get", "--collection", name, "--item-id", str(ids["cat"])).stdout
    assert f"item {ids['cat']} of collection {name!r}" in text and '{"a": 1}' in text


def test_get_what_is_absent_is_not_found(
    client: Client, stored: tuple[str, dict[str, int]]
) -> None:
    name, _ = stored
    with pytest.raises(NotFound, match="no item with external id 'dog'"):
        client.get(name, external_id="dog")
    with pytest.raises(NotFound, match="unknown collection"):
        client.get(fresh("nothing"), item_id=1)
    with pytest.raises(BadRequest):
        client.get(name)
    out = mmq("get", "--collection", name, "--id", "dog", check=False)
    assert (out.returncode, out.stdout) == (4, "")
    assert (
        out.stderr == f"mmq get: not_found: no item with external id 'dog' in collection {name!r}\n"
    )

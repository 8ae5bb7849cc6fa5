"""Video items on the wire: what an item may hold, and how a producer chunks videos."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmq.client import _chunks
from mmq.schemas import IngestItem, SearchRequest


def test_a_video_item_is_its_own_kind() -> None:
    item = IngestItem(video_path="/clips/a.mp4", metadata={"title": "a"})
    assert (item.kind, item.is_video, item.source) == ("video", True, "/clips/a.mp4")
    assert IngestItem(video_bytes=b"x", external_id="v1").source == "v1"
    assert IngestItem(video_bytes=b"x").source == "<bytes>"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"video_path": "a.mp4", "image_path": "a.jpg"}, "give one of"),
        ({"video_path": "a.mp4", "video_bytes": b"x"}, "give one of"),
        ({"video_bytes": b"x", "text": "a title"}, "carries no text"),
        ({"external_id": "nothing"}, "an image, a text, both, or a video"),
    ],
)
def test_invalid_video_items_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngestItem.model_validate(fields)


def test_each_video_gets_a_chunk_of_its_own() -> None:
    texts = [IngestItem(text=f"t{i}") for i in range(5)]
    video = IngestItem(video_path="v.mp4")
    chunks = _chunks([*texts[:3], video, *texts[3:], video], size=2)
    assert [[it.kind for it in c] for c in chunks] == [
        ["text", "text"],
        ["text"],
        ["video"],
        ["text", "text"],
        ["video"],
    ]


def test_search_options_for_videos() -> None:
    request = SearchRequest(collection="c", text="a goal")
    assert "video" in request.targets and request.segments == "best"
    with pytest.raises(ValidationError) as info:
        SearchRequest(collection="c", text="x", segments="some")  # type: ignore[arg-type]
    assert [e["loc"] for e in info.value.errors()] == [("segments",)]
    with pytest.raises(ValidationError) as info:
        SearchRequest(collection="c", text="x", min_score=2.0)
    assert [e["loc"] for e in info.value.errors()] == [("min_score",)]
    assert SearchRequest(collection="c", text="x", min_score=-1.0).min_score == -1.0

"""Videos through the queue: the assembled photo video's cuts, text→video and image→video
moments, mixed collections, segment listing, idempotent re-ingest."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from mmq.samples import Shot, write_demo_video
from mmq.schemas import IngestItem, IngestResult

pytestmark = pytest.mark.slow

SAMPLE_INTERVAL_S = 1.0  # the default MMQ_VIDEO_SAMPLE_FPS


@pytest.fixture(scope="module")
def assembled(photos, tmp_path_factory) -> tuple[Path, list[Shot]]:  # type: ignore[no-untyped-def]
    path = tmp_path_factory.mktemp("video") / "photos.mp4"
    return path, write_demo_video(path, photos)


@pytest.fixture(scope="module")
def mixed(client, workers, photos, assembled) -> IngestResult:  # type: ignore[no-untyped-def]
    """A collection holding the video, two photos and a caption."""
    video, _ = assembled
    items = [
        IngestItem(image_path=str(photos["chelsea"]), external_id="chelsea.png"),
        IngestItem(video_path=str(video), external_id="photos.mp4", metadata={"kind": "demo"}),
        IngestItem(image_path=str(photos["coins"]), external_id="coins.png"),
        IngestItem(text="a tabby cat", external_id="caption"),
    ]
    result = client.ingest(items, collection=f"video-{uuid.uuid4().hex[:8]}").result(timeout=300)
    assert isinstance(result, IngestResult)
    assert result.failed == 0, result.items
    return result


def stored_segments(db_session, item_id: int) -> list[tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    rows = db_session.execute(
        text(
            "SELECT start_s, end_s, keyframe_s FROM segments WHERE item_id = :id ORDER BY ordinal"
        ),
        {"id": item_id},
    )
    return [tuple(r) for r in rows]


def test_segment_boundaries_match_the_true_cuts(mixed, assembled, db_session) -> None:  # type: ignore[no-untyped-def]
    _, shots = assembled
    video = mixed.items[1]
    assert video.duration_s == pytest.approx(shots[-1].end_s, abs=0.01)
    segments = stored_segments(db_session, video.item_id)
    assert video.segments == len(segments) == len(shots)
    errors = [abs(seg[0] - shot.start_s) for seg, shot in zip(segments, shots, strict=True)]
    print(f"\nsegment boundary errors (s): {[round(e, 2) for e in errors]}")
    assert max(errors) <= SAMPLE_INTERVAL_S
    assert segments[-1][1] == pytest.approx(shots[-1].end_s, abs=0.01)


def chelsea_shot(shots: list[Shot]) -> Shot:
    return next(s for s in shots if s.photo == "chelsea")


def test_a_cat_finds_the_video_and_the_cat_moment(client, mixed, assembled) -> None:  # type: ignore[no-untyped-def]
    cat = chelsea_shot(assembled[1])
    found = client.search(collection=mixed.collection, text="a cat", targets=["video"], k=5)
    hits = found.result(timeout=60).hits
    assert [h.kind for h in hits] == ["video"]
    hit = hits[0]
    assert hit.external_id == "photos.mp4" and hit.metadata == {"kind": "demo"}
    assert abs(hit.start_s - cat.start_s) <= SAMPLE_INTERVAL_S
    assert abs(hit.end_s - cat.end_s) <= SAMPLE_INTERVAL_S
    assert hit.start_s <= hit.keyframe_s <= hit.end_s
    assert hit.duration_s == pytest.approx(assembled[1][-1].end_s, abs=0.01)


def test_the_cat_photo_finds_the_same_moment(client, mixed, assembled, photos) -> None:  # type: ignore[no-untyped-def]
    cat = chelsea_shot(assembled[1])
    hit = (
        client.search(collection=mixed.collection, image=photos["chelsea"], targets=["video"], k=1)
        .result(timeout=60)
        .hits[0]
    )
    assert abs(hit.start_s - cat.start_s) <= SAMPLE_INTERVAL_S
    assert abs(hit.end_s - cat.end_s) <= SAMPLE_INTERVAL_S
    assert hit.score > 0.8  # the frames are that very photo


def test_one_query_ranks_videos_images_and_texts_together(client, mixed) -> None:  # type: ignore[no-untyped-def]
    hits = client.search(collection=mixed.collection, text="a cat", k=10).result(60).hits
    assert {h.kind for h in hits} == {"image", "video", "text"}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.external_id for h in hits[:3]} == {"chelsea.png", "photos.mp4", "caption"}
    images_only = client.search(collection=mixed.collection, text="a cat", targets=["image"])
    assert {h.kind for h in images_only.result(60).hits} == {"image"}
    filtered = client.search(collection=mixed.collection, text="a cat", filter={"kind": "demo"})
    assert [h.external_id for h in filtered.result(60).hits] == ["photos.mp4"]


def test_all_segments_lists_each_scored_moment(client, mixed, assembled) -> None:  # type: ignore[no-untyped-def]
    shots = assembled[1]
    hit = (
        client.search(collection=mixed.collection, text="a cat", targets=["video"], segments="all")
        .result(60)
        .hits[0]
    )
    assert hit.segments is not None and len(hit.segments) == len(shots)
    scores = [s.score for s in hit.segments]
    assert scores == sorted(scores, reverse=True)
    assert (hit.segments[0].start_s, hit.segments[0].score) == (hit.start_s, hit.score)
    floor = (scores[0] + scores[1]) / 2
    strict = (
        client.search(
            collection=mixed.collection,
            text="a cat",
            targets=["video"],
            segments="all",
            min_score=floor,
        )
        .result(60)
        .hits[0]
    )
    assert strict.segments is not None and len(strict.segments) == 1


def test_reingesting_a_video_replaces_it(client, mixed, assembled, db_session) -> None:  # type: ignore[no-untyped-def]
    video, shots = assembled
    first = mixed.items[1]
    again = client.ingest(
        [IngestItem(video_bytes=video.read_bytes(), external_id="photos.mp4")],
        collection=mixed.collection,
    ).result(timeout=300)
    assert again.items[0].status == "stored" and again.items[0].item_id == first.item_id
    assert len(stored_segments(db_session, first.item_id)) == len(shots)
    count = db_session.scalar(
        text(
            "SELECT count(*) FROM items i JOIN collections c ON c.id = i.collection_id "
            "WHERE c.name = :name AND i.kind = 'video'"
        ),
        {"name": mixed.collection},
    )
    assert count == 1


def test_the_segment_query_uses_the_hnsw_index(mixed, db_session) -> None:  # type: ignore[no-untyped-def]
    from mmq.store import repository
    from mmq.store.segments import segment_search_sql

    collection = repository.get_collection(session=db_session, name=mixed.collection)
    query = "[" + ",".join(["0.05"] * collection.dim) + "]"
    db_session.execute(text("SET LOCAL enable_seqscan = off"))  # tiny table: force the choice
    sql = segment_search_sql(collection, with_filter=False)
    plan = "\n".join(
        r[0] for r in db_session.execute(text("EXPLAIN " + sql), {"q": query, "n": 10})
    )
    assert f"Index Scan using {repository.segment_index_name(collection.id)}" in plan, plan
    db_session.rollback()


def test_a_video_reingested_as_an_image_loses_its_segments(client, workers, photos) -> None:  # type: ignore[no-untyped-def]
    from tests.support.videos import video_bytes

    name = f"video-kind-{uuid.uuid4().hex[:8]}"
    video = IngestItem(video_bytes=video_bytes(seconds=2), external_id="x")
    assert client.ingest([video], collection=name).result(120).items[0].status == "stored"
    image = IngestItem(image_path=str(photos["coins"]), external_id="x")
    assert client.ingest([image], collection=name).result(120).items[0].status == "stored"
    hits = client.search(collection=name, text="coins", k=5).result(60).hits
    assert [(h.external_id, h.kind) for h in hits] == [("x", "image")]


def test_videos_in_a_concat_collection(client, workers, assembled) -> None:  # type: ignore[no-untyped-def]
    # Frames fill both slots of a concat vector, like any single-modality item.
    video, shots = assembled
    name = f"video-concat-{uuid.uuid4().hex[:8]}"
    item = IngestItem(video_path=str(video), external_id="photos.mp4")
    stored = client.ingest([item], collection=name, fusion="concat").result(300)
    assert stored.items[0].segments == len(shots)
    hit = client.search(collection=name, text="a cat", targets=["video"]).result(60).hits[0]
    cat = chelsea_shot(shots)
    assert abs(hit.start_s - cat.start_s) <= SAMPLE_INTERVAL_S
    assert abs(hit.end_s - cat.end_s) <= SAMPLE_INTERVAL_S


def test_the_same_video_without_an_id_is_stored_once(client, workers) -> None:  # type: ignore[no-untyped-def]
    from tests.support.videos import video_bytes

    name = f"video-hash-{uuid.uuid4().hex[:8]}"
    data = video_bytes(seconds=2)
    first = client.ingest([IngestItem(video_bytes=data)], collection=name).result(120).items[0]
    again = client.ingest([IngestItem(video_bytes=data)], collection=name).result(120).items[0]
    assert first.status == again.status == "stored" and first.item_id == again.item_id

"""Videos through the queue: the assembled photo video's cuts, text→video and image→video
moments, mixed collections, segment listing, idempotent re-ingest."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from mmq.client import Client
from mmq.config import Settings
from mmq.samples import Shot, write_demo_video
from mmq.schemas import Hit, IngestItem, IngestResult
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow

SAMPLE_INTERVAL_S = 1.0  # the default MMQ_VIDEO_SAMPLE_FPS
# docs/videos.md: the assembled demo video's true cuts, and where `lite` puts its boundaries
TRUE_CUTS_S = [3.5, 7.7, 12.7, 16.5]
BOUNDARY_ERRORS_S = [0.0, 0.2, 0.2, 0.0]
DURATION_S = 21.0


@pytest.fixture(scope="module")
def assembled(
    photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Shot]]:
    path = tmp_path_factory.mktemp("video") / "photos.mp4"
    return path, write_demo_video(path, photos)


@pytest.fixture(scope="module")
def mixed(
    client: Client, workers: Procs, photos: dict[str, Path], assembled: tuple[Path, list[Shot]]
) -> IngestResult:
    """A collection holding the video, two photos and a caption."""
    video, _ = assembled
    items = [
        IngestItem(image_path=str(photos["chelsea"]), external_id="chelsea.png"),
        IngestItem(video_path=str(video), external_id="photos.mp4", metadata={"kind": "demo"}),
        IngestItem(image_path=str(photos["coins"]), external_id="coins.png"),
        IngestItem(text="a tabby cat", external_id="caption"),
    ]
    result = client.ingest(items, collection=fresh("video")).result(timeout=300)
    assert result.failed == 0, result.items
    return result


def stored_segments(db_session: Session, item_id: int | None) -> list[tuple[float, ...]]:
    """(start_s, end_s, keyframe_s) of each stored segment of the item, in order."""
    assert item_id is not None
    rows = db_session.execute(
        text(
            "SELECT start_s, end_s, keyframe_s FROM segments WHERE item_id = :id ORDER BY ordinal"
        ),
        {"id": item_id},
    )
    return [tuple(r) for r in rows]


def moment(hit: Hit) -> tuple[float, float]:
    """A video hit's (start_s, end_s)."""
    assert hit.start_s is not None and hit.end_s is not None, hit
    return hit.start_s, hit.end_s


def assert_is_the_shot(hit: Hit, shot: Shot) -> None:
    """The hit's moment is the shot, within half a sampling interval at each end, as
    docs/videos.md promises for a cut (the shots' neighbours are 3.8 s and more away)."""
    start, end = moment(hit)
    assert abs(start - shot.start_s) <= SAMPLE_INTERVAL_S / 2, (hit, shot)
    assert abs(end - shot.end_s) <= SAMPLE_INTERVAL_S / 2, (hit, shot)


def test_segment_boundaries_match_the_true_cuts(
    mixed: IngestResult,
    assembled: tuple[Path, list[Shot]],
    db_session: Session,
    settings: Settings,
) -> None:
    assert settings.video_sample_fps == 1 / SAMPLE_INTERVAL_S, "the figures are for 1 fps"
    _, shots = assembled
    assert [s.start_s for s in shots[1:]] == pytest.approx(TRUE_CUTS_S)
    assert shots[-1].end_s == pytest.approx(DURATION_S)
    video = mixed.items[1]
    assert video.duration_s == pytest.approx(DURATION_S, abs=0.01)
    segments = stored_segments(db_session, video.item_id)
    assert video.segments == len(segments) == len(shots)
    assert segments[-1][1] == pytest.approx(DURATION_S, abs=0.01)
    assert all(a[1] == b[0] for a, b in zip(segments, segments[1:], strict=False))  # no gap
    assert all(start <= keyframe <= end for start, end, keyframe in segments)
    # Each segment's start against its shot's, the video's own start (0.0) included.
    errors = [abs(seg[0] - shot.start_s) for seg, shot in zip(segments, shots, strict=True)]
    print(f"\nsegment boundary errors (s): {[round(e, 2) for e in errors]}")
    assert errors[0] == 0.0
    # docs/videos.md: 0.0 / 0.2 / 0.2 / 0.0 s at the true cuts. Each cut is the midpoint of
    # the 1 fps samples around it (3.5, 7.5, 12.5, 16.5): within half a sampling interval.
    assert errors[1:] == pytest.approx(BOUNDARY_ERRORS_S, abs=0.01)
    assert max(errors) <= SAMPLE_INTERVAL_S / 2


def chelsea_shot(shots: list[Shot]) -> Shot:
    return next(s for s in shots if s.photo == "chelsea")


def test_a_cat_finds_the_video_and_the_cat_moment(
    client: Client, mixed: IngestResult, assembled: tuple[Path, list[Shot]]
) -> None:
    cat = chelsea_shot(assembled[1])
    found = client.search(collection=mixed.collection, text="a cat", targets=["video"], k=5)
    hits = found.result(timeout=60).hits
    assert [h.kind for h in hits] == ["video"]
    hit = hits[0]
    assert hit.external_id == "photos.mp4" and hit.metadata == {"kind": "demo"}
    assert_is_the_shot(hit, cat)
    start, end = moment(hit)
    assert hit.keyframe_s is not None and start <= hit.keyframe_s <= end
    assert hit.duration_s == pytest.approx(DURATION_S, abs=0.01)


def test_the_cat_photo_finds_the_same_moment(
    client: Client,
    mixed: IngestResult,
    assembled: tuple[Path, list[Shot]],
    photos: dict[str, Path],
) -> None:
    cat = chelsea_shot(assembled[1])
    hit = (
        client.search(collection=mixed.collection, image=photos["chelsea"], targets=["video"], k=1)
        .result(timeout=60)
        .hits[0]
    )
    assert_is_the_shot(hit, cat)
    assert hit.score > 0.8  # the frames are that very photo


def test_one_query_ranks_videos_images_and_texts_together(
    client: Client, mixed: IngestResult
) -> None:
    hits = client.search(collection=mixed.collection, text="a cat", k=10).result(60).hits
    assert sorted(h.kind for h in hits) == ["image", "image", "text", "video"]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert {h.external_id for h in hits[:3]} == {"chelsea.png", "photos.mp4", "caption"}
    assert hits[3].external_id == "coins.png"
    images_only = client.search(collection=mixed.collection, text="a cat", targets=["image"])
    assert [h.external_id for h in images_only.result(60).hits] == ["chelsea.png", "coins.png"]
    filtered = client.search(collection=mixed.collection, text="a cat", filter={"kind": "demo"})
    assert [h.external_id for h in filtered.result(60).hits] == ["photos.mp4"]


def test_all_segments_lists_each_scored_moment(
    client: Client, mixed: IngestResult, assembled: tuple[Path, list[Shot]]
) -> None:
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
    assert strict.segments[0] == hit.segments[0]


def test_reingesting_a_video_replaces_it(
    client: Client,
    mixed: IngestResult,
    assembled: tuple[Path, list[Shot]],
    db_session: Session,
) -> None:
    video, shots = assembled
    first = mixed.items[1]
    before = [seg[:2] for seg in stored_segments(db_session, first.item_id)]
    again = client.ingest(
        [IngestItem(video_bytes=video.read_bytes(), external_id="photos.mp4")],
        collection=mixed.collection,
    ).result(timeout=300)
    assert again.items[0].status == "stored" and again.items[0].item_id == first.item_id
    after = [seg[:2] for seg in stored_segments(db_session, first.item_id)]
    assert after == before and len(before) == len(shots)  # replaced, not added to
    count = db_session.scalar(
        text(
            "SELECT count(*) FROM items i JOIN collections c ON c.id = i.collection_id "
            "WHERE c.name = :name AND i.kind = 'video'"
        ),
        {"name": mixed.collection},
    )
    assert count == 1


def test_the_segment_query_uses_the_hnsw_index(mixed: IngestResult, db_session: Session) -> None:
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


def test_a_video_reingested_as_an_image_loses_its_segments(
    client: Client, workers: Procs, photos: dict[str, Path], db_session: Session
) -> None:
    from tests.support.videos import video_bytes

    name = fresh("video-kind")
    video = IngestItem(video_bytes=video_bytes(seconds=2), external_id="x")
    as_video = client.ingest([video], collection=name).result(120).items[0]
    assert as_video.status == "stored" and stored_segments(db_session, as_video.item_id)
    image = IngestItem(image_path=str(photos["coins"]), external_id="x")
    as_image = client.ingest([image], collection=name).result(120).items[0]
    assert as_image.status == "stored" and as_image.item_id == as_video.item_id
    assert stored_segments(db_session, as_image.item_id) == []
    hits = client.search(collection=name, text="coins", k=5).result(60).hits
    assert [(h.external_id, h.kind) for h in hits] == [("x", "image")]


def test_videos_in_a_concat_collection(
    client: Client, workers: Procs, assembled: tuple[Path, list[Shot]]
) -> None:
    # Frames fill both slots of a concat vector, like any single-modality item.
    video, shots = assembled
    name = fresh("video-concat")
    item = IngestItem(video_path=str(video), external_id="photos.mp4")
    stored = client.ingest([item], collection=name, fusion="concat").result(300)
    assert stored.items[0].segments == len(shots)
    hit = client.search(collection=name, text="a cat", targets=["video"]).result(60).hits[0]
    assert_is_the_shot(hit, chelsea_shot(shots))


def test_the_same_video_without_an_id_is_stored_once(client: Client, workers: Procs) -> None:
    from tests.support.videos import video_bytes

    name = fresh("video-hash")
    data = video_bytes(seconds=2)
    first = client.ingest([IngestItem(video_bytes=data)], collection=name).result(120).items[0]
    again = client.ingest([IngestItem(video_bytes=data)], collection=name).result(120).items[0]
    assert first.status == again.status == "stored" and first.item_id == again.item_id

"""The CLIP path end to end: a worker serving a (tiny, random) CLIP or Chinese-CLIP
checkpoint, on servers of its own.

The model is random, so no semantic ranking can be asserted; what can: an image or a text
stored through the queue and queried again comes back as itself, with cosine 1.0, ahead of
the others (the towers, the stored vectors and the query encoding agree)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mmq.client import Client
from mmq.config import Settings
from mmq.schemas import IngestItem
from tests.support.clip import build_tiny_chinese_clip, build_tiny_clip
from tests.support.names import fresh
from tests.support.procs import without_mmq_settings

pytestmark = pytest.mark.slow

# external id → text (ids apart from the images': an id is one item), in each model's language
TEXTS = {
    "clip": {
        "text:rocket": "a rocket",
        "text:coffee": "a cup of coffee on a saucer",
        "text:astronaut": "an astronaut in a white space suit",
    },
    "chinese-clip": {
        "text:rocket": "一枚火箭",
        "text:coffee": "碟子上的一杯咖啡",
        "text:astronaut": "穿白色宇航服的宇航员",
    },
}
BUILD = {"clip": build_tiny_clip, "chinese-clip": build_tiny_chinese_clip}


@pytest.fixture(scope="module", params=sorted(BUILD))
def clip_client(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[tuple[Client, str]]:
    """A client of servers of its own, and the family of the tiny checkpoint its workers
    serve ("clip" or "chinese-clip")."""
    from mmq.cli.spawn import running_workers
    from mmq.embedded import resolve_urls
    from mmq.store.migrate import upgrade

    family: str = request.param
    root = tmp_path_factory.mktemp(f"{family}-stack")
    model = f"clip:{BUILD[family](root / 'tiny')}"
    clip_settings = Settings(
        state_dir=root / "state",
        model=model,
        broker_url=None,
        result_backend=None,
        database_url=None,
    )
    urls = resolve_urls(clip_settings)
    upgrade(urls.database_url)
    env = without_mmq_settings()
    env.update(
        MMQ_STATE_DIR=str(clip_settings.state_dir),
        MMQ_MODEL=model,
        MMQ_BROKER_URL=urls.broker_url,
        MMQ_RESULT_BACKEND=urls.result_backend,
        MMQ_DATABASE_URL=urls.database_url,
    )
    client = Client(clip_settings, urls)
    roots = settings.ingest_roots  # the session's: the tests' temporary files
    with running_workers(client.app, log_dir=root / "logs", env=env, roots=roots):
        yield client, family
    client.close()


def test_clip_worker_ingests_and_searches(
    clip_client: tuple[Client, str], photos: dict[str, Path]
) -> None:
    client, family = clip_client
    name = fresh("clip")
    images = ("coffee", "rocket", "astronaut")
    items = [IngestItem(image_path=str(photos[n]), external_id=n) for n in images]
    items += [IngestItem(text=t, external_id=i) for i, t in TEXTS[family].items()]
    result = client.ingest(items, collection=name).result(timeout=300)
    assert (result.stored, result.failed) == (6, 0), result.items
    for image in images:  # each stored image is found by itself, among 3 images
        hits = client.search(collection=name, image=photos[image], targets=["image"]).result(60)
        found = hits.hits
        assert len(found) == 3 and found[0].external_id == image, (image, found)
        assert found[0].score == pytest.approx(1.0, abs=1e-3)
        assert found[1].score < found[0].score - 1e-3
    for external_id, text in TEXTS[family].items():  # each text finds itself, among 3
        searched = client.search(collection=name, text=text, targets=["text"]).result(60)
        assert searched.encoded_text is None  # a CLIP model reads the text as given
        found = searched.hits
        assert len(found) == 3 and found[0].external_id == external_id, (text, found)
        assert found[0].score == pytest.approx(1.0, abs=1e-3)
        assert found[1].score < found[0].score - 1e-3


def test_clip_worker_indexes_a_video(clip_client: tuple[Client, str]) -> None:
    from tests.support.videos import video_bytes

    client, family = clip_client
    name = fresh("clip-video")
    item = IngestItem(video_bytes=video_bytes(seconds=3, size=(160, 120)), external_id="clip")
    stored = client.ingest([item], collection=name).result(timeout=300).items[0]
    # 3 s with a 2 s minimum segment (MMQ_VIDEO_MIN_SEGMENT_S): no cut fits, one segment.
    assert (stored.status, stored.duration_s, stored.segments) == ("stored", 3.0, 1)
    query = "grey" if family == "clip" else "灰色"
    hit = client.search(collection=name, text=query, targets=["video"]).result(60).hits[0]
    assert hit.external_id == "clip" and hit.start_s is not None and hit.end_s is not None
    assert 0.0 <= hit.start_s < hit.end_s <= 3.0

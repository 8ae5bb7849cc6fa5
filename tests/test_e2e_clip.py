"""The CLIP path end to end: a worker serving a (tiny, random) CLIP checkpoint, own servers."""

from __future__ import annotations

import os
import uuid

import pytest

from mmq.config import Settings
from mmq.schemas import IngestItem
from tests.support.clip import build_tiny_clip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def clip_client(tmp_path_factory, photos):  # type: ignore[no-untyped-def]
    from mmq.cli.spawn import running_workers
    from mmq.client import Client
    from mmq.embedded import resolve_urls
    from mmq.store.migrate import upgrade

    root = tmp_path_factory.mktemp("clip-stack")
    model = f"clip:{build_tiny_clip(root / 'tiny-clip')}"
    settings = Settings(
        state_dir=root / "state",
        model=model,
        broker_url=None,
        result_backend=None,
        database_url=None,
    )
    urls = resolve_urls(settings)
    upgrade(urls.database_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}
    env.update(
        MMQ_STATE_DIR=str(settings.state_dir),
        MMQ_MODEL=model,
        MMQ_BROKER_URL=urls.broker_url,
        MMQ_RESULT_BACKEND=urls.result_backend,
        MMQ_DATABASE_URL=urls.database_url,
    )
    client = Client(settings, urls)
    roots = os.environ["MMQ_INGEST_ROOTS"].split(os.pathsep)
    with running_workers(client.app, log_dir=root / "logs", env=env, roots=roots):
        yield client, model
    client.close()


def test_clip_worker_ingests_and_searches(clip_client, photos, db_session) -> None:  # type: ignore[no-untyped-def]
    client, model = clip_client
    name = f"clip-{uuid.uuid4().hex[:8]}"
    items = [IngestItem(image_path=str(photos[n]), external_id=n) for n in ("coffee", "rocket")]
    items.append(IngestItem(text="a rocket", external_id="caption"))
    result = client.ingest(items, collection=name).result(timeout=300)
    assert result.failed == 0, result.items
    hits = client.search(collection=name, image=photos["rocket"], targets=["image"]).result(60).hits
    assert hits[0].external_id == "rocket" and hits[0].score == pytest.approx(1.0, abs=1e-3)
    text_hits = client.search(collection=name, text="a rocket", targets=["text"]).result(60).hits
    assert text_hits[0].external_id == "caption"


def test_clip_worker_indexes_a_video(clip_client) -> None:  # type: ignore[no-untyped-def]
    from tests.support.videos import video_bytes

    client, _ = clip_client
    name = f"clip-video-{uuid.uuid4().hex[:8]}"
    item = IngestItem(video_bytes=video_bytes(seconds=3, size=(160, 120)), external_id="clip")
    stored = client.ingest([item], collection=name).result(timeout=300).items[0]
    assert stored.status == "stored" and stored.duration_s == 3.0 and stored.segments
    hit = client.search(collection=name, text="grey", targets=["video"]).result(60).hits[0]
    assert hit.external_id == "clip" and 0.0 <= hit.start_s < hit.end_s <= 3.0

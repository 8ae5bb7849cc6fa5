"""Enqueue → worker → pgvector → poll, for every query type, through real Celery workers."""

from __future__ import annotations

import uuid

import pytest

from mmq.errors import BadRequest, NotFound
from mmq.samples import PHOTOS
from mmq.schemas import IngestItem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(client, workers, photos):  # type: ignore[no-untyped-def]
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    items = [
        IngestItem(
            image_path=str(p),
            external_id=n,
            metadata={"caption": PHOTOS[n], "group": "space" if n in SPACE else "earth"},
        )
        for n, p in photos.items()
    ] + [IngestItem(text=c, external_id=f"caption:{n}") for n, c in PHOTOS.items()]
    result = client.ingest(items, collection=name, chunk_size=8).result(timeout=300)
    assert result.failed == 0, result.items
    assert result.stored == len(items)
    return name


SPACE = {"astronaut", "rocket", "moon", "hubble_deep_field"}


def ids(job) -> list[str]:  # type: ignore[no-untyped-def]
    return [h.external_id for h in job.result(timeout=60).hits]


def test_text_to_image_finds_the_cat_first(client, demo) -> None:  # type: ignore[no-untyped-def]
    result = client.search(collection=demo, text="a cat", targets=["image"], k=5).result(60)
    assert result.hits[0].external_id == "chelsea"
    assert all(h.kind == "image" for h in result.hits)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert result.hits[0].uri.endswith("chelsea.png")
    assert result.hits[0].metadata["caption"] == PHOTOS["chelsea"]


def test_image_to_image_finds_itself(client, demo, photos) -> None:  # type: ignore[no-untyped-def]
    result = client.search(collection=demo, image=photos["coffee"], targets=["image"]).result(60)
    assert result.hits[0].external_id == "coffee"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_image_to_text_finds_its_caption(client, demo, photos) -> None:  # type: ignore[no-untyped-def]
    found = ids(client.search(collection=demo, image=photos["chelsea"], targets=["text"], k=3))
    assert found[0] == "caption:chelsea"


def test_composed_query_ranks_both_parts(client, demo, photos) -> None:  # type: ignore[no-untyped-def]
    job = client.search(
        collection=demo,
        image=photos["chelsea"],
        text="a cup of coffee",
        targets=["image"],
        weights={"image": 0.5, "text": 0.5},
        k=2,
    )
    assert set(ids(job)) == {"chelsea", "coffee"}


def test_vector_query_and_targets_both(client, demo, encoder) -> None:  # type: ignore[no-untyped-def]
    vector = encoder.encode_texts(["a tabby cat"])[0].tolist()
    hits = client.search(collection=demo, vector=vector, k=4).result(60).hits
    assert {h.kind for h in hits} <= {"image", "text"}
    assert "caption:chelsea" in [h.external_id for h in hits]


def test_metadata_filter_is_containment(client, demo) -> None:  # type: ignore[no-untyped-def]
    hits = (
        client.search(
            collection=demo, text="a cat", targets=["image"], filter={"group": "space"}, k=10
        )
        .result(60)
        .hits
    )
    assert {h.external_id for h in hits} == SPACE


def test_unknown_collection_fails_the_job_clearly(client, workers) -> None:  # type: ignore[no-untyped-def]
    job = client.search(collection="no-such-collection", text="a cat")
    with pytest.raises(NotFound, match="unknown collection 'no-such-collection'"):
        job.result(timeout=60)
    status = job.status()
    assert status.state == "failed" and "unknown collection" in (status.error or "")
    assert status.error_kind == "not_found"


def test_wrong_dimension_vector_fails_the_job(client, demo) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(BadRequest, match="dimension 3.*expects 384"):
        client.search(collection=demo, vector=[0.1, 0.2, 0.3]).result(timeout=60)


def test_search_job_status_is_done_after_result(client, demo) -> None:  # type: ignore[no-untyped-def]
    job = client.search(collection=demo, text="a rocket")
    job.result(timeout=60)
    assert job.status().state == "done"
    assert client.job(job.id).status().state == "done"

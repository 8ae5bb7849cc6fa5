"""Enqueue → worker → pgvector → poll, for every query type, through real Celery workers."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mmq.client import Client, SearchJob
from mmq.errors import BadRequest, NotFound
from mmq.samples import PHOTOS
from mmq.schemas import IngestItem
from tests.support.names import fresh
from tests.support.procs import Procs

if TYPE_CHECKING:
    from mmq.encoders import Encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(client: Client, workers: Procs, photos: dict[str, Path]) -> str:
    name = fresh("e2e")
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


def ids(job: SearchJob) -> list[str | None]:
    return [h.external_id for h in job.result(timeout=60).hits]


def test_text_to_image_finds_the_cat_first(client: Client, demo: str) -> None:
    result = client.search(collection=demo, text="a cat", targets=["image"], k=5).result(60)
    assert result.hits[0].external_id == "chelsea"
    assert all(h.kind == "image" for h in result.hits)
    scores = [h.score for h in result.hits]
    assert scores == sorted(scores, reverse=True)
    assert (result.hits[0].uri or "").endswith("chelsea.png")
    assert result.hits[0].metadata["caption"] == PHOTOS["chelsea"]


def test_image_to_image_finds_itself(client: Client, demo: str, photos: dict[str, Path]) -> None:
    result = client.search(collection=demo, image=photos["coffee"], targets=["image"]).result(60)
    assert result.hits[0].external_id == "coffee"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-3)


def test_image_to_text_finds_its_caption(
    client: Client, demo: str, photos: dict[str, Path]
) -> None:
    found = ids(client.search(collection=demo, image=photos["chelsea"], targets=["text"], k=3))
    assert found[0] == "caption:chelsea"


def test_composed_query_ranks_both_parts(
    client: Client, demo: str, photos: dict[str, Path]
) -> None:
    job = client.search(
        collection=demo,
        image=photos["chelsea"],
        text="a cup of coffee",
        targets=["image"],
        weights={"image": 0.5, "text": 0.5},
        k=2,
    )
    assert set(ids(job)) == {"chelsea", "coffee"}


def test_vector_query_and_targets_both(client: Client, demo: str, encoder: Encoder) -> None:
    # A raw vector (the encoding of chelsea's stored caption), default targets: every
    # image and every caption comes back, the caption itself first, at cosine 1.
    vector = encoder.encode_texts([PHOTOS["chelsea"]])[0].tolist()
    hits = client.search(collection=demo, vector=vector, k=2 * len(PHOTOS)).result(60).hits
    assert collections.Counter(h.kind for h in hits) == {"image": len(PHOTOS), "text": len(PHOTOS)}
    assert hits[0].external_id == "caption:chelsea"
    assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_metadata_filter_is_containment(client: Client, demo: str) -> None:
    hits = (
        client.search(
            collection=demo, text="a cat", targets=["image"], filter={"group": "space"}, k=10
        )
        .result(60)
        .hits
    )
    assert {h.external_id for h in hits} == SPACE


def test_unknown_collection_fails_the_job_clearly(client: Client, workers: Procs) -> None:
    job = client.search(collection="no-such-collection", text="a cat")
    with pytest.raises(NotFound, match="unknown collection 'no-such-collection'"):
        job.result(timeout=60)
    status = job.status()
    assert status.state == "failed" and "unknown collection" in (status.error or "")
    assert status.error_kind == "not_found"


def test_wrong_dimension_vector_fails_the_job(client: Client, demo: str) -> None:
    with pytest.raises(BadRequest, match="dimension 3.*expects 384"):
        client.search(collection=demo, vector=[0.1, 0.2, 0.3]).result(timeout=60)


def test_search_job_status_is_done_after_result(client: Client, demo: str) -> None:
    job = client.search(collection=demo, text="a rocket")
    job.result(timeout=60)
    assert job.status().state == "done"
    assert client.job(job.id).status().state == "done"


def test_a_chinese_query_is_read_as_english_and_says_so(
    client: Client, demo: str, encoder: Encoder
) -> None:
    chinese = client.search(collection=demo, text="猫", targets=["image"], k=3).result(60)
    assert [h.external_id for h in chinese.hits][:1] == ["chelsea"]
    assert chinese.encoded_text == "cat"
    assert (chinese.model, chinese.model_version) == ("lite", encoder.version)
    english = client.search(collection=demo, text="cat", targets=["image"], k=3).result(60)
    assert english.encoded_text is None  # read as given
    assert [h.score for h in chinese.hits] == pytest.approx([h.score for h in english.hits])


def test_languages_meet_in_one_collection(
    client: Client, workers: Procs, photos: dict[str, Path]
) -> None:
    name = fresh("mixed")
    items = [
        # English-captioned pairs, and texts in both languages.
        IngestItem(image_path=str(photos[n]), text=PHOTOS[n], external_id=f"pair:{n}")
        for n in ("chelsea", "coffee", "rocket")
    ] + [
        IngestItem(text="一只猫躺在草地上", external_id="zh:cat"),
        IngestItem(text="桌子上的一杯咖啡", external_id="zh:coffee"),
        IngestItem(text="a rocket on the launch pad at night", external_id="en:rocket"),
    ]
    assert client.ingest(items, collection=name).result(timeout=120).failed == 0
    # A Chinese query finds the English-captioned pair; an English one the Chinese caption.
    pairs = client.search(collection=name, text="咖啡", targets=["pair"]).result(60).hits
    assert [h.external_id for h in pairs][:1] == ["pair:coffee"] and len(pairs) == 3
    texts = client.search(collection=name, text="a cat on the grass", targets=["text"])
    assert [h.external_id for h in texts.result(60).hits][:1] == ["zh:cat"]

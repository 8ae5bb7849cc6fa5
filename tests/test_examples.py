"""Search by examples ("more like these"): the SVM and Rocchio maths, the request's shapes,
and searches through real workers and the `mmq` command."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from mmq.client import Client
from mmq.config import Settings
from mmq.errors import BadRequest, NotFound
from mmq.relevance import Direction, direction
from mmq.samples import PHOTOS
from mmq.schemas import Example, IngestItem, SearchRequest
from tests.support.cli import mmq
from tests.support.names import fresh
from tests.support.procs import Procs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

SPACE = {"astronaut", "rocket", "moon", "hubble_deep_field"}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """1,000 random unit vectors, and a tight cluster of 40 around one direction."""
    rng = np.random.default_rng(seed)
    background = _unit(rng.normal(size=(1000, 64)))
    centre = _unit(rng.normal(size=64))
    cluster = _unit(centre + 0.08 * rng.normal(size=(40, 64)))
    return background.astype(np.float32), cluster.astype(np.float32)


@pytest.mark.parametrize("method", ["svm", "centroid"])
def test_three_examples_find_the_rest_of_a_planted_cluster(method: str) -> None:
    background, cluster = _planted()
    ranker = direction(method, cluster[:3], None, background)  # type: ignore[arg-type]
    items = np.concatenate([cluster[3:], background])
    top = np.argsort(-ranker.scores(items))[:37]
    assert set(top.tolist()) == set(range(37))  # the 37 other members, before anything else
    assert np.linalg.norm(ranker.vector) == pytest.approx(1.0, abs=1e-5)


def test_the_svm_scores_a_signed_distance_to_its_boundary() -> None:
    background, cluster = _planted(1)
    ranker = direction("svm", cluster[:5], None, background)
    # Its own cluster on the positives' side, nearly all of the background on the other.
    assert (ranker.scores(cluster[5:]) > 0).all()
    assert (ranker.scores(background) < 0).mean() > 0.99


def test_negatives_push_a_neighbouring_cluster_down() -> None:
    rng = np.random.default_rng(2)
    background, wanted = _planted(2)
    # A second cluster close to the first: the centroid cannot tell them apart.
    near = _unit(
        wanted.mean(0) + 0.5 * _unit(rng.normal(size=64)) + 0.08 * rng.normal(size=(40, 64))
    )
    items = np.concatenate([wanted[3:], near[3:]]).astype(np.float32)

    def intruders(ranker: Direction) -> int:  # of the near cluster in the top 37
        return int((np.argsort(-ranker.scores(items))[:37] >= 37).sum())

    centroid = direction("centroid", wanted[:3], None, background)
    told = direction("svm", wanted[:3], near[:3].astype(np.float32), background)
    assert intruders(told) < intruders(centroid)
    assert intruders(told) <= 2


def test_rocchio_is_the_positives_mean_less_a_share_of_the_negatives() -> None:
    rng = np.random.default_rng(3)
    pos, neg = _unit(rng.normal(size=(4, 16))), _unit(rng.normal(size=(3, 16)))
    ranker = direction("centroid", pos, neg, gamma=0.25)
    assert ranker.offset == 0.0
    np.testing.assert_allclose(
        ranker.vector, _unit(pos.mean(0) - 0.25 * neg.mean(0)), rtol=1e-5, atol=1e-6
    )


def test_with_nothing_to_learn_against_the_svm_is_the_centroid() -> None:
    pos = _unit(np.random.default_rng(4).normal(size=(3, 16)))
    svm = direction("svm", pos, None, np.zeros((0, 16)))
    np.testing.assert_allclose(svm.vector, _unit(pos.mean(0)), rtol=1e-5, atol=1e-6)


def test_a_search_by_examples_and_the_old_shapes_are_valid() -> None:
    assert SearchRequest(collection="c", text="a cat").positives == []
    assert SearchRequest(collection="c", vector=[0.1, 0.2]).method == "svm"
    request = SearchRequest.model_validate(
        {
            "collection": "c",
            "positives": [{"external_id": "a"}, {"item_id": 7}, {"text": "cat"}, {"vector": [1.0]}],
            "negatives": [{"external_id": "b"}],
            "method": "centroid",
            "targets": ["image"],
            "filter": {"group": "earth"},
        }
    )
    assert [e.stored for e in request.positives] == [True, True, False, False]
    assert SearchRequest.model_validate_json(request.model_dump_json()) == request


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"text": "a cat", "positives": [{"external_id": "a"}]}, "by examples or by a query"),
        ({"negatives": [{"external_id": "a"}]}, "need at least one positive"),
        ({"positives": [{"external_id": "a", "item_id": 1}]}, "an example is one of"),
        ({"positives": [{}]}, "an example is one of"),
        ({"positives": [{"vector": [float("nan")]}]}, "NaN"),
        ({"positives": [{"external_id": "a"}], "method": "knn"}, "method"),
    ],
)
def test_malformed_example_searches_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SearchRequest.model_validate({"collection": "c", **fields})


@pytest.fixture()
def offline_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    # Nothing listens there: these requests must be refused before anything is sent.
    monkeypatch.setenv("MMQ_BROKER_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("MMQ_DATABASE_URL", "postgresql://mmq@127.0.0.1:1/mmq")
    client = Client(Settings())
    yield client
    client.close()


def test_the_client_refuses_bad_examples_before_sending(offline_client: Client) -> None:
    with pytest.raises(BadRequest, match=r"positives is a list of examples, e.g. \['chelsea'\]"):
        offline_client.search(collection="c", positives="chelsea")
    with pytest.raises(BadRequest, match="invalid search: .*by examples or by a query"):
        offline_client.search(collection="c", text="a cat", positives=["chelsea"])
    with pytest.raises(BadRequest, match="an example is an external id, an item id"):
        offline_client.search(collection="c", positives=[1.5])  # type: ignore[list-item]


# Through real servers and workers from here on.


@pytest.fixture(scope="module")
def demo(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    """The bundled photos (grouped into space and earth), their captions as texts, and two
    photos again at a quarter of their size: each the other's nearest neighbour."""
    small = tmp_path_factory.mktemp("small")
    copies = []
    for name in ("chelsea", "coffee"):
        with Image.open(photos[name]) as im:
            im.convert("RGB").resize((im.width // 2, im.height // 2)).save(small / f"{name}.jpg")
        copies.append(
            IngestItem(
                image_path=str(small / f"{name}.jpg"),
                external_id=f"{name}-small",
                metadata={"group": "earth"},
            )
        )
    items = [
        IngestItem(
            image_path=str(p),
            external_id=n,
            metadata={"group": "space" if n in SPACE else "earth"},
        )
        for n, p in photos.items()
    ] + [IngestItem(text=c, external_id=f"caption:{n}") for n, c in PHOTOS.items()]
    name = fresh("examples")
    result = client.ingest(items + copies, collection=name, chunk_size=8).result(timeout=300)
    assert result.failed == 0, result.items
    return name


@pytest.mark.slow
def test_like_through_the_cli_finds_the_same_photo_first(demo: str) -> None:
    out = mmq("search", "--collection", demo, "--like", "chelsea", "-k", "5", "--json")
    hits = json.loads(out.stdout)
    assert hits[0]["external_id"] == "chelsea-small"
    assert "chelsea" not in [h["external_id"] for h in hits]  # the example itself is no result
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    both = mmq(
        *("search", "--collection", demo, "--like", "coffee", "--like", "chelsea"),
        *("--method", "centroid", "--targets", "image", "-k", "2", "--json"),
    )
    assert {h["external_id"] for h in json.loads(both.stdout)} == {"coffee-small", "chelsea-small"}


@pytest.mark.slow
def test_targets_and_filters_hold_for_examples(client: Client, demo: str) -> None:
    texts = client.search(collection=demo, positives=["chelsea"], targets=["text"], k=5)
    assert {h.kind for h in texts.result(60).hits} == {"text"}
    earth = client.search(
        collection=demo, positives=["astronaut"], filter={"group": "earth"}, k=50
    ).result(60)
    assert earth.hits and all(h.metadata["group"] == "earth" for h in earth.hits)
    space = client.search(
        collection=demo,
        positives=["astronaut", "rocket"],
        targets=["image"],
        filter={"group": "space"},
        k=10,
    ).result(60)
    assert {h.external_id for h in space.hits} == SPACE - {"astronaut", "rocket"}


@pytest.mark.slow
def test_unliked_items_are_no_results(client: Client, demo: str) -> None:
    liked = client.search(collection=demo, positives=["chelsea"], targets=["image"], k=20)
    ranked = [h.external_id for h in liked.result(60).hits]
    unliked = client.search(
        collection=demo, positives=["chelsea"], negatives=["chelsea-small"], targets=["image"], k=20
    ).result(60)
    assert "chelsea-small" not in [h.external_id for h in unliked.hits]
    assert len(unliked.hits) == len(ranked) - 1


@pytest.mark.slow
def test_examples_given_by_content_are_encoded(
    client: Client, demo: str, photos: dict[str, Path]
) -> None:
    image = Example(image_bytes=photos["coffee"].read_bytes())
    by_image = client.search(collection=demo, positives=[image], targets=["image"], k=2)
    assert {h.external_id for h in by_image.result(60).hits} == {"coffee", "coffee-small"}
    by_text = client.search(
        collection=demo, positives=[{"text": "a tabby cat"}], method="centroid", targets=["image"]
    ).result(60)
    assert by_text.hits[0].external_id in {"chelsea", "chelsea-small"}


@pytest.mark.slow
def test_unknown_examples_are_reported_and_the_others_used(client: Client, demo: str) -> None:
    result = client.search(collection=demo, positives=["nosuch", "chelsea"], k=1).result(60)
    assert result.missing_examples == ["nosuch"]
    assert result.hits[0].external_id == "chelsea-small"
    out = mmq("search", "--collection", demo, "--like", "nosuch", "--like", "chelsea", "--json")
    assert f"not in collection {demo!r}, left out: nosuch" in out.stderr
    none = mmq("search", "--collection", demo, "--like", "nosuch", "--like", "gone", check=False)
    assert none.returncode == 4
    assert none.stderr.strip() == (
        f"mmq search: not_found: collection {demo!r} holds none of the positive examples: "
        "nosuch, gone"
    )
    with pytest.raises(NotFound):
        client.search(collection=demo, positives=[10**12]).result(60)


@pytest.mark.slow
def test_stored_vectors_says_which_ids_it_did_not_find(demo: str, db_session: Session) -> None:
    from mmq.services.examples import stored_vectors
    from mmq.store import repository

    collection = repository.get_collection(session=db_session, name=demo)
    vectors, ids, missing = stored_vectors(
        session=db_session,
        collection=collection,
        external_ids=["coffee", "nosuch", "coffee", "chelsea"],
        item_ids=[10**12],
    )
    assert vectors.shape == (2, collection.dim) and len(ids) == 2
    assert missing == ["nosuch", str(10**12)]
    again, same, _ = stored_vectors(session=db_session, collection=collection, item_ids=ids)
    assert same == ids
    np.testing.assert_allclose(again, vectors)


@pytest.mark.slow
def test_a_collection_sample_holds_its_items_of_the_kinds_asked(
    demo: str, db_session: Session
) -> None:
    from mmq.store import repository
    from mmq.store.examples import sample_vectors

    collection = repository.get_collection(session=db_session, name=demo)
    images = _image_ids(db_session, collection.id)
    leave_out = set(images[:3])
    vectors, ids = sample_vectors(
        session=db_session, collection=collection, kinds=["image"], n=10, exclude_item_ids=leave_out
    )
    assert len(ids) == len(set(ids)) == 10 and vectors.shape == (10, collection.dim)
    assert set(ids) <= set(images) - leave_out
    _, every = sample_vectors(session=db_session, collection=collection, kinds=["image"], n=1000)
    assert sorted(every) == sorted(images)  # fewer than asked: all of them


def _image_ids(session: Session, collection_id: int) -> list[int]:
    from sqlalchemy import select

    from mmq.store.tables import Item

    return list(
        session.scalars(
            select(Item.id).where(Item.collection_id == collection_id, Item.kind == "image")
        )
    )

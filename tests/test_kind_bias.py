"""Results of mixed kinds, through the queue: ranked by calibrated scores, exactly.

The issue: in photos and a few texts, "a horse" ranked the text "a red running shoe"
(cosine 0.232) above the horse photo, since two texts score higher than a text and a photo
(docs/models.md, "Scores across item kinds")."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from mmq.client import Client
from mmq.samples import PHOTOS
from mmq.schemas import Hit, IngestItem
from mmq.services.vectors import item_vector
from tests.support.names import fresh
from tests.support.procs import Procs

if TYPE_CHECKING:
    from mmq.encoders import Encoder

pytestmark = pytest.mark.slow

UNRELATED = (
    "a red running shoe",
    "a laptop on a desk",
    "a glass of red wine",
    "a bowl of fruit salad",
    "a pair of blue jeans",
)
# Measured (the shipped head), to 1e-3.
SHOE_COSINE, HORSE_COSINE = 0.232, 0.201
TOLERANCE = 3e-3  # vectors encoded here and by the workers, in float32


@pytest.fixture(scope="module")
def horses(client: Client, workers: Procs, photos: dict[str, Path]) -> str:
    """The demo photos but the astronaut, and the unrelated texts. For "a horse", `lite`
    ranks the astronaut above the horse silhouette among photos alone (0.209 against
    0.201): an error of its image ranking, which no calibration of kinds changes."""
    name = fresh("horses")
    items = [
        IngestItem(image_path=str(p), external_id=n) for n, p in photos.items() if n != "astronaut"
    ]
    items += [IngestItem(text=t, external_id=t) for t in UNRELATED]
    result = client.ingest(items, collection=name).result(timeout=300)
    assert result.failed == 0, result.items
    return name


def test_a_horse_ranks_the_horse_photo_first(
    client: Client, horses: str, encoder: Encoder, photos: dict[str, Path]
) -> None:
    n = len(PHOTOS) - 1 + len(UNRELATED)
    hits = client.search(collection=horses, text="a horse", k=n).result(60).hits
    assert len(hits) == n
    assert (hits[0].kind, hits[0].external_id) == ("image", "horse")
    # As reported: by raw cosines the shoe comes first.
    query = encoder.encode_texts(["a horse"])[0]
    shoe = float(encoder.encode_texts(["a red running shoe"])[0] @ query)
    horse = float(encoder.encode_images([Image.open(photos["horse"])])[0] @ query)
    assert (shoe, horse) == pytest.approx((SHOE_COSINE, HORSE_COSINE), abs=1e-3)
    # Calibrated: text→image scores are the cosines; text→text ones are brought down.
    assert hits[0].score == pytest.approx(horse, abs=TOLERANCE)
    by_id = {h.external_id: h for h in hits}
    slope, offset = encoder.calibration.affine(query_kind="text", item_kind="text", fusion="sum")
    assert by_id["a red running shoe"].score == pytest.approx(slope * shoe + offset, abs=TOLERANCE)
    assert by_id["a red running shoe"].score < hits[0].score


@pytest.fixture(scope="module")
def mixed(client: Client, workers: Procs, photos: dict[str, Path]) -> str:
    """Every demo photo three ways (image, caption, pair with another caption), and the
    unrelated texts: 47 items of three kinds."""
    name = fresh("mixed")
    items = [IngestItem(image_path=str(p), external_id=f"image:{n}") for n, p in photos.items()]
    items += [IngestItem(text=c, external_id=f"text:{n}") for n, c in PHOTOS.items()]
    items += [
        IngestItem(image_path=str(p), text=f"a photo of {n}", external_id=f"pair:{n}")
        for n, p in photos.items()
    ]
    items += [IngestItem(text=t, external_id=f"text:{t}") for t in UNRELATED]
    result = client.ingest(items, collection=name).result(timeout=300)
    assert result.failed == 0, result.items
    return name


def expected_scores(
    encoder: Encoder,
    photos: dict[str, Path],
    query: np.ndarray,
    query_kind: str | None,
) -> dict[str, float]:
    """Every item's calibrated score, computed here from the model's vectors."""
    images = dict(
        zip(PHOTOS, encoder.encode_images([Image.open(photos[n]) for n in PHOTOS]), strict=True)
    )
    captions = dict(zip(PHOTOS, encoder.encode_texts(list(PHOTOS.values())), strict=True))
    labels = dict(
        zip(PHOTOS, encoder.encode_texts([f"a photo of {n}" for n in PHOTOS]), strict=True)
    )
    unrelated = dict(zip(UNRELATED, encoder.encode_texts(list(UNRELATED)), strict=True))
    vectors: dict[str, tuple[str, np.ndarray]] = {}
    for n in PHOTOS:
        vectors[f"image:{n}"] = ("image", images[n])
        vectors[f"text:{n}"] = ("text", captions[n])
        pair = item_vector({"image": images[n], "text": labels[n]}, collection_fusion="sum")
        vectors[f"pair:{n}"] = ("pair", pair)
    vectors.update({f"text:{t}": ("text", v) for t, v in unrelated.items()})
    calibration = encoder.calibration
    return {
        key: calibration.apply(
            float(vector @ query), query_kind=query_kind, item_kind=kind, fusion="sum"
        )
        for key, (kind, vector) in vectors.items()
    }


def assert_exact_top(hits: list[Hit], expected: dict[str, float], k: int) -> None:
    """The hits are the k best of `expected`, in order, with their scores (ties within the
    float32 tolerance may come either way)."""
    assert len(hits) == k
    for hit in hits:
        assert hit.score == pytest.approx(expected[str(hit.external_id)], abs=TOLERANCE)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    found = {h.external_id for h in hits}
    best_left = max(s for key, s in expected.items() if key not in found)
    assert min(h.score for h in hits) >= best_left - TOLERANCE


@pytest.mark.parametrize("query", ["a cat", "a cup of coffee", "old coins"])
def test_text_queries_rank_every_kind_by_calibrated_score(
    client: Client, mixed: str, encoder: Encoder, photos: dict[str, Path], query: str
) -> None:
    k = 6
    hits = client.search(collection=mixed, text=query, k=k).result(60).hits
    expected = expected_scores(encoder, photos, encoder.encode_texts([query])[0], "text")
    assert_exact_top(hits, expected, k)
    # Photos, captions and pairs all hold the top: the bias would have left the photos out.
    assert {h.kind for h in hits} == {"image", "text", "pair"}, hits


def test_an_image_query_ranks_every_kind_by_calibrated_score(
    client: Client, mixed: str, encoder: Encoder, photos: dict[str, Path]
) -> None:
    k = 10
    hits = client.search(collection=mixed, image=photos["coffee"], k=k).result(60).hits
    query = encoder.encode_images([Image.open(photos["coffee"])])[0]
    assert_exact_top(hits, expected_scores(encoder, photos, query, "image"), k)
    # Its own caption comes before photos that only look alike.
    keys = [h.external_id for h in hits]
    others = [
        i for i, h in enumerate(hits) if h.kind == "image" and h.external_id != "image:coffee"
    ]
    assert keys.index("text:coffee") < min(others, default=k)


def test_min_score_is_on_the_calibrated_scale(
    client: Client, mixed: str, encoder: Encoder, photos: dict[str, Path]
) -> None:
    floor = 0.2
    hits = client.search(collection=mixed, text="a cat", k=50, min_score=floor).result(60).hits
    expected = expected_scores(encoder, photos, encoder.encode_texts(["a cat"])[0], "text")
    above = {key for key, s in expected.items() if s >= floor + TOLERANCE}
    assert above <= {h.external_id for h in hits}
    assert all(h.score >= floor for h in hits)


def test_a_vector_query_is_ranked_by_raw_cosines(
    client: Client, mixed: str, encoder: Encoder, photos: dict[str, Path]
) -> None:
    # A raw vector could be anything: its cosines are not calibrated.
    query = encoder.encode_texts(["a cat"])[0]
    k = 6
    hits = client.search(collection=mixed, vector=query.tolist(), k=k).result(60).hits
    assert_exact_top(hits, expected_scores(encoder, photos, query, None), k)

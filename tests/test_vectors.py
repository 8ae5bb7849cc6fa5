"""Item and query vectors per collection fusion: the scores they produce."""

from __future__ import annotations

import numpy as np
import pytest

from mmq.errors import BadRequest
from mmq.services.vectors import item_vector, query_vector


def unit(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(32)
    return v / np.linalg.norm(v)


@pytest.mark.parametrize("w_image", [0.0, 0.25, 0.5, 0.9])
def test_concat_score_is_the_weighted_sum_of_cosines(w_image: float) -> None:
    rng = np.random.default_rng(1)
    img, txt, q_img, q_txt = (unit(rng) for _ in range(4))
    item = item_vector({"image": img, "text": txt}, collection_fusion="concat")
    weights = {"image": w_image, "text": 1 - w_image}
    query, scale = query_vector(
        {"image": q_img, "text": q_txt}, collection_fusion="concat", weights=weights
    )
    expected = w_image * q_img @ img + (1 - w_image) * q_txt @ txt
    assert float(query @ item) * scale == pytest.approx(expected, abs=1e-6)
    assert np.linalg.norm(query) == pytest.approx(1.0, abs=1e-6)


def test_concat_single_modality_items_and_queries() -> None:
    rng = np.random.default_rng(2)
    img, txt, q = (unit(rng) for _ in range(3))
    pair = item_vector({"image": img, "text": txt}, collection_fusion="concat")
    image_only = item_vector({"image": img}, collection_fusion="concat")
    query, scale = query_vector({"text": q}, collection_fusion="concat")
    assert scale == 1.0 and query.shape == (64,)
    assert float(query @ pair) == pytest.approx(0.5 * (q @ img + q @ txt), abs=1e-6)
    assert float(query @ image_only) == pytest.approx(q @ img, abs=1e-6)


def test_sum_collection_and_per_query_fusion() -> None:
    rng = np.random.default_rng(3)
    img, txt = unit(rng), unit(rng)
    fused = (0.3 * img + 0.7 * txt) / np.linalg.norm(0.3 * img + 0.7 * txt)
    item = item_vector(
        {"image": img, "text": txt}, collection_fusion="sum", weights={"image": 0.3, "text": 0.7}
    )
    assert np.allclose(item, fused, atol=1e-6)
    query, scale = query_vector(
        {"image": img, "text": txt}, collection_fusion="sum", method="attention"
    )
    assert scale == 1.0 and query.shape == (32,)
    # attention over two modalities is their prior-weighted (here: equal) sum
    assert np.allclose(query, (img + txt) / np.linalg.norm(img + txt), atol=1e-6)
    with pytest.raises(BadRequest, match="concat-fused query needs"):
        query_vector({"image": img, "text": txt}, collection_fusion="sum", method="concat")

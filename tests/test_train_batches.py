"""Batch composition of `mmq train` on synthetic features: no model, no servers."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmq.training.config import TrainConfig
from mmq.training.fit import Pairs, _captions_of, _draw_batch, fit

POOLED, TEXT = 16, 8


def pairs(n_images: int = 40, per_image: int = 3) -> Pairs:
    rng = np.random.default_rng(0)
    texts = rng.normal(size=(n_images * per_image, TEXT)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n_images), per_image)
    # Images carry their first caption's direction, plus noise, in the pooled part.
    pooled = np.concatenate([texts[::per_image], rng.normal(size=(n_images, POOLED - TEXT))], 1)
    conse = rng.normal(size=(n_images, TEXT))
    conse /= np.linalg.norm(conse, axis=1, keepdims=True)
    return Pairs(np.concatenate([pooled, conse], 1).astype(np.float32), texts, owner)


def draw(p: Pairs, batch: str) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    config = TrainConfig(batch=batch, batch_size=10)
    train = np.arange(len(p.images))
    captions_of = _captions_of(p.caption_image, len(p.images))
    rng = np.random.default_rng(0)
    return _draw_batch(config, rng, train, np.arange(len(p.texts)), captions_of, p)


def test_all_captions_batches_hold_every_caption_of_distinct_images() -> None:
    p = pairs()
    images, captions, owner = draw(p, "all-captions")
    assert len(set(images.tolist())) == len(images) == 10
    assert len(captions) == 30 and sorted(set(p.caption_image[captions])) == sorted(images)
    # Each caption points at the row of its own image.
    assert (images[owner.numpy()] == p.caption_image[captions]).all()


def test_one_caption_and_random_batches() -> None:
    p = pairs()
    images, captions, owner = draw(p, "one-caption")
    assert len(set(images.tolist())) == 10 and len(captions) == 10
    assert (images[owner.numpy()] == p.caption_image[captions]).all()
    images, captions, owner = draw(p, "random")
    # One image row per caption: two captions of one image are each other's negatives.
    assert (images == p.caption_image[captions]).all() and owner.tolist() == list(range(10))


def test_every_batch_composition_learns_and_unknown_ones_are_refused() -> None:
    p = pairs()
    train, val = np.arange(30), np.arange(30, 40)
    base = TrainConfig(steps=60, batch_size=16, eval_every=60, dropout=0.0, patience=100)
    for batch in ("all-captions", "one-caption", "random"):
        result = fit(p, train, val, replace(base, batch=batch))
        assert result.history[-1]["val_loss"] < result.history[0]["val_loss"], batch
    with pytest.raises(ValueError, match="batch composition"):
        fit(p, train, val, replace(base, batch="pairs"))

"""Retrieval quality on real data (Flickr8k dev): a regression guard. Skips without the data."""

from __future__ import annotations

import uuid

import pytest

from mmq.cli.evaluate import evaluate
from mmq.cli.sources import read_captions
from tests.support.data import FLICKR

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not FLICKR.is_dir(), reason="../shared/data/flickr8k-dev is absent"),
]


def test_flickr_recall_on_100_images(client, workers) -> None:  # type: ignore[no-untyped-def]
    captions = read_captions(FLICKR / "captions.csv")
    images = sorted(p for p in (FLICKR / "images").iterdir() if p.name in captions)[:100]
    scores = evaluate(client, f"quality-{uuid.uuid4().hex[:6]}", images, captions, quiet=True)
    print(f"\nflickr8k-dev, first 100 images: {scores}")
    # Chance is 10% at R@10 over 100 images; the measured values are far above these floors.
    assert scores["t2i_r10"] >= 45.0
    assert scores["i2t_r10"] >= 30.0

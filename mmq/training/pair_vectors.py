"""A lite model's own image and caption vectors, for training its autoencoder fusion.

They come from the frozen towers' cached features (training/features.py): an image vector
is the model's head applied to them, exactly as the model encodes an image, and a caption
vector is the text tower's, as for `lite-conse`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmq.encoders.base import l2_normalize
from mmq.encoders.lite import LiteEncoder
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.training.autoencoder import PairVectors
from mmq.training.features import image_features, text_features


def pair_vectors(
    encoder: LiteEncoder, paths: Sequence[Path], captions: Sequence[Sequence[str]], cache: Path
) -> PairVectors:
    """Unit vectors of the images `paths` and of `captions[i]`, the captions of image i."""
    encoder.load()
    towers = LiteConseEncoder(device=encoder.device, cache_dir=cache)
    texts = [c for own in captions for c in own]
    return PairVectors(
        head_vectors(encoder.head_dir, image_features(towers, paths, cache)),
        text_features(towers, texts, cache),
        np.array([i for i, own in enumerate(captions) for _ in own], dtype=np.int64),
    )


def head_vectors(head_dir: Path, features: np.ndarray) -> np.ndarray:
    """What the head in `head_dir` makes of the towers' features `[pooled ; ConSE]`: the
    model's unit image vectors."""
    import torch

    from mmq.encoders.alignment_head import load_head

    head, _ = load_head(head_dir)
    with torch.no_grad():
        return l2_normalize(head(torch.from_numpy(features).float()).numpy())

"""Frozen-tower features for training, cached on disk.

Image features are keyed by the model version and each file's content hash, so a second
run (or a run on an overlapping set) extracts only what it has not seen.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from mmq.config import get_settings
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.media import decode_image, read_image_bytes


def image_features(
    encoder: LiteConseEncoder,
    paths: Sequence[Path],
    cache_dir: Path,
    *,
    batch_size: int = 32,
    flip: bool = False,
    quiet: bool = False,
) -> np.ndarray:
    """`(len(paths), 1280 + 384)` features; `flip` mirrors each image first (augmentation)."""
    encoder.load()
    limits = get_settings()  # the same image limits as ingest
    folder = cache_dir / f"features-{encoder.version}{'-flip' if flip else ''}"
    folder.mkdir(parents=True, exist_ok=True)
    keys = [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]
    todo = [i for i, key in enumerate(keys) if not (folder / f"{key}.npy").exists()]
    for start in tqdm(
        range(0, len(todo), batch_size), desc="image features", disable=quiet or not todo
    ):
        batch = todo[start : start + batch_size]
        images = [
            decode_image(
                read_image_bytes(paths[i], max_bytes=limits.max_image_bytes),
                max_bytes=limits.max_image_bytes,
                max_pixels=limits.max_image_pixels,
                min_side=encoder.decode_side,
            )
            for i in batch
        ]
        if flip:
            images = [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in images]
        for i, row in zip(batch, encoder.image_features(images), strict=True):
            tmp = folder / f"{keys[i]}.tmp.npy"
            np.save(tmp, row.astype(np.float32))
            tmp.replace(folder / f"{keys[i]}.npy")
    return np.stack([np.load(folder / f"{key}.npy") for key in keys])


def text_features(
    encoder: LiteConseEncoder, texts: Sequence[str], cache_dir: Path, *, batch_size: int = 128
) -> np.ndarray:
    """Unit text vectors `(len(texts), 384)`, cached per list of texts."""
    encoder.load()
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:24]
    path = cache_dir / f"features-{encoder.version}" / f"texts-{digest}.npy"
    if path.exists():
        return np.load(path)
    vectors = np.concatenate(
        [encoder.encode_texts(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors

"""The score calibration of an autoencoder's codes (encoders/calibration.py explains the
maps), fitted as a model's is (training/calibration.py) on photos and their captions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.autoencoder import CALIBRATION, Autoencoder, save_maps
from mmq.schemas import FusionName
from mmq.training.autoencoder import PairVectors
from mmq.training.calibration import MIN_HELD_OUT, fit_calibration


def fit_maps(
    data: PairVectors,
    photos: np.ndarray,
    *,
    autoencoder: Autoencoder | None,
    fusion: FusionName = "autoencoder",
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    """(query kind → item kind → (slope, offset), how each was fitted) on `photos`, for a
    collection of the autoencoder's codes (or of another `fusion`, for comparison)."""
    keep = np.flatnonzero(np.isin(data.caption_image, photos))
    row = {int(photo): i for i, photo in enumerate(photos)}
    owner = np.array([row[int(i)] for i in data.caption_image[keep]])
    maps, report = fit_calibration(
        data.images[photos],
        data.texts[keep],
        owner,
        seed=seed,
        fusions=(fusion,),
        autoencoder=autoencoder,
    )
    fits = {q: {k: r["fit"] for k, r in kinds.items()} for q, kinds in report[fusion].items()}
    return maps[fusion], fits


def calibrate(
    autoencoder: Autoencoder, data: PairVectors, held_out: np.ndarray, out: Path, *, seed: int
) -> str:
    """Fit the maps on the held-out photos and write them beside the autoencoder; say
    where they are, or why there are none (its collections then score raw cosines)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / CALIBRATION).unlink(missing_ok=True)  # an earlier autoencoder's would not fit
    if len(held_out) < MIN_HELD_OUT:
        return (
            f"none: fewer than {MIN_HELD_OUT} held-out images (--val-fraction); scores of "
            "different item kinds are raw cosines, not comparable"
        )
    maps, fits = fit_maps(data, held_out, autoencoder=autoencoder, seed=seed)
    about = {
        "data": f"the autoencoder's {len(held_out)} held-out images and their captions",
        "command": "mmq train --fusion autoencoder",
        "fits": fits,
    }
    save_maps(out, maps, about)
    return f"{CALIBRATION}: fitted on the {len(held_out)} held-out images"

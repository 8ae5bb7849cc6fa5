"""The `autoencoder` fusion: a learned shared code for an image, a text, or both (numpy).

A small bimodal autoencoder (Ngiam et al., ICML 2011) over a model's own image and text
vectors, trained by `mmq train --fusion autoencoder` (mmq/training/autoencoder.py). Only
its encoder ships and runs here; the decoders were needed to train it:

    h = relu(W1 [image ; text] + b1)
    (g_image, g_text) = 2 sigmoid(G h + c)
    code = normalize(g_image image + g_text text + W2 h + b2)

A missing modality is a zero vector, so an image alone, a text alone and a pair all get a
code in one space. G, c, W2 and b2 start at zero, so an untrained autoencoder is the `sum`
fusion exactly; training learns how to weigh the two, and what to add. The folder holds
`autoencoder.safetensors` and its `card.json` (data, recipe, the model version whose
vectors it read); a model serves the one in `<head folder>/autoencoder` (encoders/lite.py).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmq.encoders.calibration import (
    IDENTITY,
    ITEM_KINDS,
    QUERY_KINDS,
    Affine,
    Calibration,
    anchored,
)
from mmq.errors import BadRequest

WEIGHTS = "autoencoder.safetensors"
CARD = "card.json"
CALIBRATION = "calibration.json"  # its own maps (encoders/calibration.py), under "autoencoder"
FOLDER = "autoencoder"  # where a head's folder keeps its autoencoder
PARAMETERS = (
    "encoder_in.weight",
    "encoder_in.bias",
    "encoder_out.weight",
    "encoder_out.bias",
    "gate.weight",
    "gate.bias",
)


@dataclass(frozen=True)
class Autoencoder:
    """The encoder half: `encode(image=, text=)` → unit float32 codes."""

    weights: dict[str, np.ndarray]
    card: dict[str, Any]
    hash: str  # of the weights file: part of the version of a collection of its codes
    source: str
    # Its own maps, fitted on its codes (`calibration.json`); none: raw cosines.
    calibration: Calibration = field(default=IDENTITY)

    @property
    def dim(self) -> int:
        """The code's dimension: the model's (the code is a residual on the sum)."""
        return int(self.weights["encoder_out.weight"].shape[0])

    def encode(self, *, image: np.ndarray | None, text: np.ndarray | None) -> np.ndarray:
        """Codes of `(n, d)` or `(d,)` image and/or text vectors (at least one given; both
        with the same rows). Each given vector is L2-normalised first, as fusion does."""
        given = [x for x in (image, text) if x is not None]
        if not given:
            raise BadRequest("nothing to encode: no image and no text vector")
        arrays = [np.atleast_2d(np.asarray(x, dtype=np.float64)) for x in given]
        if len({a.shape for a in arrays}) > 1 or arrays[0].shape[-1] != self.dim:
            raise BadRequest(
                f"the autoencoder reads ({self.dim},) vectors, got {[a.shape for a in arrays]}"
            )
        if not all(np.isfinite(a).all() for a in arrays):
            raise BadRequest("a vector to encode contains NaN or inf")
        units = [_unit(a) for a in arrays]
        zeros = np.zeros_like(units[0])
        img = units[0] if image is not None else zeros
        txt = units[-1] if text is not None else zeros
        w = self.weights
        x = np.concatenate([img, txt], axis=1)
        hidden = np.maximum(x @ w["encoder_in.weight"].T + w["encoder_in.bias"], 0.0)
        gates = 2.0 / (1.0 + np.exp(-(hidden @ w["gate.weight"].T + w["gate.bias"])))
        residual = hidden @ w["encoder_out.weight"].T + w["encoder_out.bias"]
        code = gates[:, :1] * img + gates[:, 1:] * txt + residual
        out = _unit(code).astype(np.float32)
        single = all(np.asarray(x).ndim == 1 for x in given)
        return out[0] if single else out


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise BadRequest("a vector to encode is zero, which has no direction")
    return x / norms


def load_autoencoder(folder: Path, *, base_version: str) -> Autoencoder:
    """The autoencoder in `folder`, which must have been trained on vectors of the model
    version `base_version`: codes of another model's vectors would mean nothing."""
    from safetensors.numpy import load_file

    folder = Path(folder)
    try:
        card = json.loads((folder / CARD).read_text())
        weights = {k: v.astype(np.float64) for k, v in load_file(str(folder / WEIGHTS)).items()}
    except (OSError, ValueError) as exc:
        raise BadRequest(f"the autoencoder in {folder} is unusable: {exc}") from None
    if sorted(weights) != sorted(PARAMETERS):
        raise BadRequest(f"{folder / WEIGHTS} holds {sorted(weights)}, expected {PARAMETERS}")
    if card.get("base_version") != base_version:
        raise BadRequest(
            f"the autoencoder in {folder} was trained on vectors of version "
            f"{card.get('base_version')}; this model is version {base_version}: train it "
            "again (mmq train --fusion autoencoder) or remove the folder"
        )
    return Autoencoder(weights, card, autoencoder_hash(folder), str(folder), load_maps(folder))


def load_optional(folder: Path, *, base_version: str) -> Autoencoder | None:
    """The autoencoder in `folder`, or None where there is none."""
    if not (Path(folder) / WEIGHTS).is_file():
        return None
    return load_autoencoder(folder, base_version=base_version)


def load_maps(folder: Path) -> Calibration:
    """The calibration of an autoencoder's codes in `folder`, or the identity without one.
    Checked as a model's: every query and item kind, finite, slopes positive."""
    path = Path(folder) / CALIBRATION
    if not path.is_file():
        return IDENTITY
    try:
        raw = json.loads(path.read_text())["maps"]
        maps = {q: {k: _affine(raw[q][k]) for k in ITEM_KINDS} for q in QUERY_KINDS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"calibration file {path} is unusable: {exc!r}") from None
    return Calibration(anchored({"autoencoder": maps}), source=str(path))


def save_maps(
    folder: Path, maps: Mapping[str, Mapping[str, Affine]], about: Mapping[str, Any]
) -> None:
    """Write maps (query kind → item kind → (slope, offset)) with `about` beside them."""
    rounded = {q: {k: [round(v, 6) for v in maps[q][k]] for k in ITEM_KINDS} for q in QUERY_KINDS}
    text = json.dumps({**about, "maps": rounded}, indent=2, ensure_ascii=False)
    text = re.sub(r"\[\s+(\S+),\s+(\S+)\s+\]", r"[\1, \2]", text)  # a map on one line
    (Path(folder) / CALIBRATION).write_text(text + "\n")
    load_maps(folder)  # what we write must load


def _affine(value: Any) -> Affine:
    slope, offset = (float(v) for v in value)
    if not (math.isfinite(slope) and math.isfinite(offset) and slope > 0):
        raise ValueError(f"bad map {value}: needs a finite positive slope and a finite offset")
    return slope, offset


def autoencoder_hash(folder: Path) -> str:
    """Content hash of the weights (as alignment_head.head_hash)."""
    return hashlib.sha256((Path(folder) / WEIGHTS).read_bytes()).hexdigest()[:16]

"""Score calibration: makes scores of different item kinds comparable in one result list.

Raw cosines of different (query kind, item kind) pairs live on different scales: with
`lite`, two unrelated captions score about as high as a caption and its own photo, so a
text item crowds out the right photo (docs/models.md, "Scores across item kinds"). A model
may ship a `calibration.json` with one affine map `score' = slope * cosine + offset` per
pair, fitted on data (mmq/training/calibration.py), which puts every pair on one scale.

A query's scores are then given on the scale of its usual target, images: text→image,
image→image and composed→image scores are plain cosines (an image finds itself at 1, and
`min_score` means what it did for images), and the query's other item kinds are mapped
onto that. Within one query this differs from the fitted common scale by one increasing
map, the same for every kind, so the order is the fitted one (`anchored`).

The maps are data beside the model, not part of it: stored vectors and the model version
do not depend on them, they only reorder results at query time. A model without a file
(`clip:` checkpoints, a head trained without held-out images) gets the identity: raw cosines.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmq.errors import BadRequest

FILE = "calibration.json"
QUERY_KINDS = ("text", "image", "composed")
ITEM_KINDS = ("image", "text", "pair", "video")
# Pairs (and composed queries) are fused by the collection's fusion; `attention` with two
# modalities and equal weights is `sum` exactly, so it uses `sum`'s maps.
FUSIONS = ("sum", "concat")
SAME_AS = {"attention": "sum"}

Affine = tuple[float, float]  # (slope, offset)
Maps = Mapping[str, Mapping[str, Mapping[str, Affine]]]  # fusion → query kind → item kind


@dataclass(frozen=True)
class Calibration:
    """Per-pair affine maps; `maps` empty means the identity."""

    maps: Maps = field(default_factory=dict)
    source: str | None = None  # where it was read from, for logs and errors

    @property
    def is_identity(self) -> bool:
        return not self.maps

    def affine(self, *, query_kind: str | None, item_kind: str, fusion: str) -> Affine:
        """The map for this pair. A raw vector query (`query_kind` None) is not calibrated:
        what the vector is, and so which scale its cosines are on, is not known."""
        if query_kind is None or not self.maps:
            return (1.0, 0.0)
        return self.maps[SAME_AS.get(fusion, fusion)][query_kind][item_kind]

    def apply(self, score: float, *, query_kind: str | None, item_kind: str, fusion: str) -> float:
        slope, offset = self.affine(query_kind=query_kind, item_kind=item_kind, fusion=fusion)
        return slope * score + offset


IDENTITY = Calibration()


def query_kind(*, text: bool, image: bool) -> str | None:
    """ "text", "image", "composed" (both), or None for a raw vector query."""
    if text and image:
        return "composed"
    return "text" if text else "image" if image else None


def load_calibration(path: Path) -> Calibration:
    """The maps in `path` (a calibration.json), checked: every fusion, query kind and item
    kind present, finite, slopes positive (a map must keep each kind's own order: search
    finds each kind's k nearest and merges them by calibrated score)."""
    try:
        doc = json.loads(Path(path).read_text())
        raw = doc["maps"]
        maps = {
            fusion: {q: {k: _affine(raw[fusion][q][k]) for k in ITEM_KINDS} for q in QUERY_KINDS}
            for fusion in FUSIONS
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadRequest(f"calibration file {path} is unusable: {exc!r}") from None
    return Calibration(anchored(maps), source=str(path))


ANCHOR = "image"  # the item kind whose scores stay cosines, for every query kind


def anchored(maps: Maps) -> Maps:
    """The maps composed with the inverse of each query kind's ANCHOR map."""
    out: dict[str, dict[str, dict[str, Affine]]] = {}
    for fusion, by_query in maps.items():
        out[fusion] = {}
        for query, by_item in by_query.items():
            a0, b0 = by_item[ANCHOR]
            out[fusion][query] = {k: (a / a0, (b - b0) / a0) for k, (a, b) in by_item.items()}
    return out


def load_optional(path: Path) -> Calibration:
    """The calibration at `path`, or the identity where there is no file."""
    return load_calibration(path) if Path(path).is_file() else IDENTITY


def save_calibration(path: Path, maps: Maps, about: Mapping[str, Any]) -> None:
    """Write the maps with `about` (data, method, command) beside them."""
    rounded = {
        f: {q: {k: [round(v, 6) for v in maps[f][q][k]] for k in ITEM_KINDS} for q in QUERY_KINDS}
        for f in FUSIONS
    }
    text = json.dumps({**about, "maps": rounded}, indent=2, ensure_ascii=False)
    text = re.sub(r"\[\s+(\S+),\s+(\S+)\s+\]", r"[\1, \2]", text)  # a map on one line
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n")
    tmp.replace(path)
    load_calibration(path)  # what we write must load


def _affine(value: Any) -> Affine:
    slope, offset = (float(v) for v in value)
    if not (math.isfinite(slope) and math.isfinite(offset) and slope > 0):
        raise ValueError(f"bad map {value}: needs a finite positive slope and a finite offset")
    return slope, offset

"""How items and queries become the one vector a collection searches.

In a `concat` collection every stored vector has an image slot and a text slot of equal
weight (a single-modality item fills both with its own vector: in a joint space that is
where it lives). The per-modality weights belong to the query: its slots are scaled by
w_m linearly, so cosine(query, item) = (sum_m w_m cos_m) / (sqrt(2) * |w|), and multiplying
by `score_scale` = sqrt(2) * |w| reports the weighted sum of per-modality cosines exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmq.fusion import FusionError, expand_single, fuse, normalize_weights
from mmq.schemas import FusionName

MODALITIES = ("image", "text")


def item_vector(
    parts: Mapping[str, np.ndarray],
    *,
    collection_fusion: FusionName,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The stored vector of an item with one or two modalities."""
    if collection_fusion == "concat":
        if len(parts) == 1:
            parts = {m: _only(parts) for m in MODALITIES}
        return _slots(parts, None)[0]
    if len(parts) == 1:
        return expand_single(_only(parts), collection_fusion)
    return fuse(parts, method=collection_fusion, weights=weights)


def query_vector(
    parts: Mapping[str, np.ndarray],
    *,
    collection_fusion: FusionName,
    method: FusionName | None = None,
    weights: Mapping[str, float] | None = None,
) -> tuple[np.ndarray, float]:
    """(unit query vector, score scale) for a text, image or composed query."""
    method = method or collection_fusion
    if method == "concat" and collection_fusion != "concat":
        raise FusionError("a concat-fused query needs a collection created with fusion=concat")
    if len(parts) > 1 and method == "concat":
        return _slots(parts, weights)
    single = _only(parts) if len(parts) == 1 else fuse(parts, method=method, weights=weights)
    if collection_fusion == "concat":
        return _slots({m: single for m in MODALITIES}, None)
    return expand_single(single, collection_fusion), 1.0


def _slots(
    parts: Mapping[str, np.ndarray], weights: Mapping[str, float] | None
) -> tuple[np.ndarray, float]:
    names = sorted(parts)
    if names != sorted(MODALITIES):
        raise FusionError(f"concat needs both {MODALITIES}, got {names}")
    w = normalize_weights(names, weights)
    units = [parts[n] / np.linalg.norm(parts[n]) for n in names]
    raw = np.concatenate([wi * u for wi, u in zip(w, units, strict=True)])
    norm = float(np.linalg.norm(raw))
    return (raw / norm).astype(np.float32), norm * np.sqrt(len(names))


def _only(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    if len(parts) != 1:
        raise FusionError(f"expected one modality, got {sorted(parts)}")
    (vector,) = parts.values()
    return vector

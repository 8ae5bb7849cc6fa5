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

from mmq.errors import BadRequest
from mmq.fusion import expand_single, fuse, normalize_weights
from mmq.schemas import FusionName

MODALITIES = ("image", "text")


def item_vector(
    parts: Mapping[str, np.ndarray],
    *,
    collection_fusion: FusionName,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """The stored vector of an item with one or two modalities."""
    if len(parts) == 1:
        return expand_single(_only(parts), collection_fusion, n_modalities=len(MODALITIES))
    if collection_fusion == "concat":
        return fuse(parts, method="concat")  # equal slots: the query carries the weights
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
        raise BadRequest("a concat-fused query needs a collection created with fusion=concat")
    if len(parts) > 1 and method == "concat":
        names = sorted(parts)
        w = normalize_weights(names, weights)
        # fuse() puts sqrt(weight) in each slot; squared weights make the slots linear in w.
        squared = {name: float(wi * wi) for name, wi in zip(names, w, strict=True)}
        scale = float(np.sqrt(len(names)) * np.linalg.norm(w))
        return fuse(parts, method="concat", weights=squared), scale
    single = _only(parts) if len(parts) == 1 else fuse(parts, method=method, weights=weights)
    return expand_single(single, collection_fusion, n_modalities=len(MODALITIES)), 1.0


def _only(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    if len(parts) != 1:
        raise BadRequest(f"expected one modality, got {sorted(parts)}")
    (vector,) = parts.values()
    return vector

"""How items and queries become the one vector a collection searches."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mmq.fusion import FusionError, expand_single, fuse
from mmq.schemas import FusionName


def collection_vector(
    parts: Mapping[str, np.ndarray],
    *,
    collection_fusion: str,
    method: FusionName | None = None,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """One unit vector from the present modalities, shaped for the collection's fusion.

    In a `concat` collection every vector has one slot per modality; a single modality (an
    image-only item, a text-only query) fills each slot with its own vector, which in a joint
    space makes its score against a pair the weighted sum of per-modality cosines.
    """
    method = method or collection_fusion  # type: ignore[assignment]
    assert method is not None
    if method == "concat" and collection_fusion != "concat":
        raise FusionError("a concat-fused query needs a collection created with fusion=concat")
    if len(parts) == 1:
        (vector,) = parts.values()
        single = vector
    elif method == "concat":
        return fuse(parts, method="concat", weights=weights)
    else:
        single = fuse(parts, method=method, weights=weights)
    return expand_single(single, collection_fusion, n_modalities=2)  # type: ignore[arg-type]

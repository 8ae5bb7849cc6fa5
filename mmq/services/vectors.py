"""How items and queries become the one vector a collection searches.

A collection's vectors live in a `Space`: the model's joint space fused by the collection's
fusion, or, for `autoencoder`, the codes of the model's autoencoder, whose hash joins the
collection's model version (so a worker with another autoencoder, or none, refuses it).

In a `concat` collection every stored vector has an image slot and a text slot of equal
weight (a single-modality item fills both with its own vector: in a joint space that is
where it lives). The per-modality weights belong to the query: its slots are scaled by
w_m linearly, so cosine(query, item) = (sum_m w_m cos_m) / (sqrt(2) * |w|), and multiplying
by `score_scale` = sqrt(2) * |w| reports the weighted sum of per-modality cosines exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mmq.encoders.autoencoder import Autoencoder
from mmq.encoders.calibration import Calibration
from mmq.errors import BadRequest
from mmq.fusion import expand_single, fuse, fused_dim, normalize_weights
from mmq.schemas import FusionName

if TYPE_CHECKING:
    from mmq.encoders.base import Encoder
    from mmq.store.tables import Collection

MODALITIES = ("image", "text")


@dataclass(frozen=True)
class Space:
    """Where a collection's vectors live: what its rows record, how its scores compare."""

    fusion: FusionName
    version: str  # the collection's model version
    dim: int
    calibration: Calibration
    autoencoder: Autoencoder | None = None


def space(encoder: Encoder, fusion: FusionName) -> Space:
    """The space of a `fusion` collection of `encoder`'s vectors (loads the encoder)."""
    encoder.load()
    if fusion != "autoencoder":
        return Space(fusion, encoder.version, fused_dim(fusion, encoder.dim), encoder.calibration)
    ae = encoder.autoencoder
    if ae is None:
        raise BadRequest(
            f"model {encoder.name} has no autoencoder fusion: train one with "
            "`mmq train --fusion autoencoder` into its head's folder (docs/models.md)"
        )
    return Space(fusion, f"{encoder.version}+ae-{ae.hash}", ae.dim, ae.calibration, ae)


def collection_space(encoder: Encoder, collection: Collection) -> Space:
    """The space of an existing collection, once `repository.require_model` has checked
    that this encoder (and, for `autoencoder`, its autoencoder) made its vectors."""
    from mmq.store.repository import require_model

    fusion: FusionName = collection.fusion  # type: ignore[assignment]
    encoder.load()
    if fusion == "autoencoder" and encoder.autoencoder is None:
        # Without one this worker cannot serve it: the check says whose collection it is.
        require_model(collection, model=encoder.name, model_version=encoder.version)
    found = space(encoder, fusion)
    require_model(collection, model=encoder.name, model_version=found.version)
    return found


def item_vector(
    parts: Mapping[str, np.ndarray],
    *,
    collection_fusion: FusionName,
    weights: Mapping[str, float] | None = None,
    autoencoder: Autoencoder | None = None,
) -> np.ndarray:
    """The stored vector of an item with one or two modalities (`autoencoder`: the
    collection's, for an autoencoder collection)."""
    if collection_fusion == "autoencoder":
        return _code(parts, autoencoder, weights)
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
    autoencoder: Autoencoder | None = None,
) -> tuple[np.ndarray, float]:
    """(unit query vector, score scale) for a text, image or composed query."""
    method = method or collection_fusion
    if "autoencoder" in (method, collection_fusion):
        if method != collection_fusion:
            raise BadRequest(
                f"a query fused by {method!r} cannot search a collection created with "
                f"fusion={collection_fusion!r}: its vectors live in another space"
            )
        return _code(parts, autoencoder, weights), 1.0
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


def _code(
    parts: Mapping[str, np.ndarray],
    autoencoder: Autoencoder | None,
    weights: Mapping[str, float] | None,
) -> np.ndarray:
    """The autoencoder's code of an image, a text or both: one space for all three."""
    if autoencoder is None:
        raise BadRequest("an autoencoder collection needs the autoencoder of its model")
    if weights is not None:
        raise BadRequest("weights do not apply to the autoencoder fusion: it learned the mix")
    if not parts or set(parts) - set(MODALITIES):
        raise BadRequest(f"expected modalities among {MODALITIES}, got {sorted(parts)}")
    return autoencoder.encode(image=parts.get("image"), text=parts.get("text"))


def _only(parts: Mapping[str, np.ndarray]) -> np.ndarray:
    if len(parts) != 1:
        raise BadRequest(f"expected one modality, got {sorted(parts)}")
    (vector,) = parts.values()
    return vector

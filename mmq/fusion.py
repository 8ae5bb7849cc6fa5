"""Fusion: per-modality embeddings in one joint space -> one vector per item.

Vectors in, vectors out (numpy only), so workers, services and benchmarks share one copy of
the maths. Modalities are always visited in sorted name order, so a ``concat`` layout never
depends on the order in which a caller happened to build its dict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mmq.errors import BadRequest
from mmq.schemas import FusionName

FUSIONS: tuple[FusionName, ...] = ("sum", "concat", "attention")
# Fusions with weights of their own, trained per model: their vectors come from the model's
# trained fusion (mmq/encoders/autoencoder.py, through mmq/services/vectors.py), not from here.
LEARNED: tuple[FusionName, ...] = ("autoencoder",)


def _check_method(method: str) -> None:
    if method in LEARNED:
        raise BadRequest(f"fusion {method!r} is learned: the model's own weights compute it")
    if method not in FUSIONS:
        raise BadRequest(f"unknown fusion {method!r}; expected one of {FUSIONS + LEARNED}")


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norms == 0):
        raise BadRequest(f"{what} contains a zero vector, which has no direction")
    return x / norms


def normalize_weights(names: Sequence[str], weights: Mapping[str, float] | None) -> np.ndarray:
    """Weights for ``names`` (in that order) summing to 1; equal when ``weights`` is None.

    A given mapping must name exactly these modalities (a missing one is an error, not a
    silent 0); each weight finite and >= 0, not all zero."""
    if not names or len(set(names)) != len(names):
        raise BadRequest(f"modality names must be non-empty and distinct, got {list(names)}")
    if weights is None:
        return np.full(len(names), 1.0 / len(names))
    if set(weights) != set(names):
        raise BadRequest(f"weights name {sorted(weights)}, modalities are {list(names)}")
    w = np.array([float(weights[name]) for name in names], dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise BadRequest(f"weights must be finite and >= 0, got {dict(weights)}")
    if w.sum() == 0:
        raise BadRequest("weights are all zero")
    return w / w.sum()


def _prepare(
    vectors: Mapping[str, np.ndarray], same_dim: bool
) -> tuple[list[str], list[np.ndarray], bool]:
    """Sorted names, unit-normalised (n, d_i) float64 arrays, and whether input was (d,)."""
    if not vectors:
        raise BadRequest("nothing to fuse: no modality vectors given")
    names = sorted(vectors)
    arrays = []
    for name in names:
        try:
            x = np.asarray(vectors[name], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"{name!r} is not a numeric array") from exc
        if x.ndim not in (1, 2) or x.shape[-1] == 0:
            raise BadRequest(f"{name!r} must have shape (n, d) or (d,), got {x.shape}")
        if not np.all(np.isfinite(x)):
            raise BadRequest(f"{name!r} contains NaN or inf")
        arrays.append(x)
    if len({x.ndim for x in arrays}) > 1 or len({x.shape[:-1] for x in arrays}) > 1:
        raise BadRequest(f"modalities disagree on rows: {[x.shape for x in arrays]}")
    if same_dim and len({x.shape[-1] for x in arrays}) > 1:
        raise BadRequest(f"sum/attention need one dimension, got {[x.shape for x in arrays]}")
    units = [_unit(np.atleast_2d(x), repr(n)) for n, x in zip(names, arrays, strict=True)]
    return names, units, arrays[0].ndim == 1


def _attention(stack: np.ndarray, prior: np.ndarray, temperature: float) -> np.ndarray:
    """(m, n) row weights: softmax_i(log prior_i + mean_{j!=i} cos(v_i, v_j) / temperature)."""
    if not temperature > 0:  # also rejects NaN
        raise BadRequest(f"temperature must be > 0, got {temperature}")
    m = stack.shape[0]
    if m == 1:  # no one to agree with; the mean over j != i would be 0/0
        return np.ones(stack.shape[:2])
    cos = np.einsum("ind,jnd->ijn", stack, stack)
    agreement = (cos.sum(axis=1) - np.einsum("iin->in", cos)) / (m - 1)
    with np.errstate(divide="ignore"):  # a zero prior gives log 0 = -inf, i.e. weight 0
        logits = np.log(prior)[:, None] + agreement / temperature
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def attention_weights(
    vectors: Mapping[str, np.ndarray],
    *,
    weights: Mapping[str, float] | None = None,
    temperature: float = 0.1,
) -> dict[str, np.ndarray]:
    """The per-row weights "attention" fusion gives each modality (for tests and debugging):
    {name: (n,) array}, or 0-d arrays for (d,) input; they sum to 1 per row."""
    names, arrays, single = _prepare(vectors, same_dim=True)
    w = _attention(np.stack(arrays), normalize_weights(names, weights), temperature)
    return {name: (row[0] if single else row) for name, row in zip(names, w, strict=True)}


def fuse(
    vectors: Mapping[str, np.ndarray],
    *,
    method: FusionName = "sum",
    weights: Mapping[str, float] | None = None,
    temperature: float = 0.1,
) -> np.ndarray:
    """Fuse {modality: (n, d) or (d,) embeddings} into unit float32 (n, d') or (d',).

    Each modality vector is L2-normalised first; ``weights`` go through normalize_weights.
    - "sum": normalize(sum_i w_i v_i).
    - "concat": [sqrt(w_1) v_1, sqrt(w_2) v_2, ...] in sorted name order (d' = sum of dims).
      Its norm is sqrt(sum w_i) = 1 already, and for two items fused with the same weights
      dot(concat(v), concat(u)) = sum_i w_i cos(v_i, u_i) exactly: a weighted late fusion
      of per-modality cosines that an ANN index can search as one vector.
    - "attention": per row, w = softmax(log prior_w + a / temperature) where
      a_i = mean_{j!=i} cos(v_i, v_j), then normalize(sum_i w_i v_i). Nothing is trained.
      One modality returns itself; with two, a_1 == a_2 so it reduces to "sum" with the
      prior weights; with three or more, a modality that disagrees with the rest (a wrong
      caption, a blank image) is down-weighted. Large temperatures tend to the prior.
    """
    _check_method(method)
    names, arrays, single = _prepare(vectors, same_dim=method != "concat")
    w = normalize_weights(names, weights)
    if method == "concat":
        out = np.concatenate([np.sqrt(wi) * x for wi, x in zip(w, arrays, strict=True)], axis=1)
    else:
        stack = np.stack(arrays)
        row_w = np.broadcast_to(w[:, None], stack.shape[:2])
        if method == "attention":
            row_w = _attention(stack, w, temperature)
        out = _unit(np.einsum("mn,mnd->nd", row_w, stack), "the fused result")
    out = out.astype(np.float32)
    return out[0] if single else out


def fused_dim(method: FusionName, dim: int, n_modalities: int = 2) -> int:
    """Dimension of fused vectors: dim * n_modalities for "concat", else dim."""
    _check_method(method)
    if dim < 1 or n_modalities < 1:
        raise BadRequest(f"dim and n_modalities must be >= 1, got {dim}, {n_modalities}")
    return dim * n_modalities if method == "concat" else dim


def expand_single(
    vector: np.ndarray,
    method: FusionName,
    n_modalities: int = 2,
    *,
    weights: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Place a one-modality vector (text-only query, image-only item) in a ``method`` space.

    It is fuse() of the same unit vector ``a`` in every slot. For "concat" slot m holds
    sqrt(w_m) a, so against an item fused with the same weights
    cos(expand_single(a), concat(t, i)) = w_t cos(a, t) + w_i cos(a, i) exactly, and two
    expanded vectors keep cos(a, b). That needs the collection's ``weights`` (whose size must
    equal n_modalities); with None the slots get 1/n each, which is exact only for an
    equal-weight collection (otherwise the score is sum_m sqrt(w_m / n) cos(a, v_m)).
    For "sum"/"attention" it is the normalised vector itself, already in the joint space.
    """
    if weights is not None and len(weights) != n_modalities:
        raise BadRequest(f"{len(weights)} weights given for {n_modalities} modalities")
    # fuse() checks the rest: the method name, and n_modalities < 1 leaves nothing to fuse
    names = sorted(weights) if weights is not None else [f"m{k:04d}" for k in range(n_modalities)]
    return fuse({name: vector for name in names}, method=method, weights=weights)

"""A query direction learned from examples: a linear SVM, or Rocchio's centroid.

Vectors in, a direction out (numpy and scikit-learn only), so the worker and the
benchmarks share one copy of the maths. Both rank an item `x` by `cosine(direction, x) +
offset`, which is one ANN query on the collection's cosine index with the direction as
its query vector:

- `svm`: a linear SVM (LinearSVC) fitted on the positives against the given negatives and
  a sample of the collection ("background"), each of the three groups weighing as much in
  total as the others, whatever their sizes. For a unit vector `x`, `(w·x + b) / |w|` is
  `cosine(w, x) + b / |w|`: its signed distance to the SVM's boundary, > 0 on the
  positives' side. Ranking the whole collection by that margin is ranking it by cosine to
  `w`, so the index finds the top of the margin directly.
- `centroid` (Rocchio): the positives' mean minus ROCCHIO_NEGATIVE times the negatives'
  mean (the given negatives only: the collection sample is the SVM's), offset 0.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from mmq.errors import BadRequest

Method = Literal["svm", "centroid"]
METHODS: tuple[Method, ...] = ("svm", "centroid")

# Chosen on the photos the benchmark's heads were trained on, never on those it scores
# (benchmarks/more_like_these.py --tune; docs/examples.md).
SVM_C = 0.1
SVM_LOSS = "hinge"
ROCCHIO_NEGATIVE = 0.75
# Group weights of the SVM's samples, in total: positives, given negatives, background.
GROUP_WEIGHTS = (1.0, 1.0, 1.0)


@dataclass(frozen=True)
class Direction:
    """Rank by `cosine(vector, x) + offset`; `vector` is unit."""

    vector: np.ndarray
    offset: float = 0.0

    def scores(self, items: np.ndarray) -> np.ndarray:
        """The scores of unit item vectors (n, d), exactly as search computes them."""
        return items @ self.vector + self.offset


def direction(
    method: Method,
    positives: np.ndarray,
    negatives: np.ndarray | None = None,
    background: np.ndarray | None = None,
    *,
    c: float = SVM_C,
    gamma: float = ROCCHIO_NEGATIVE,
    group_weights: tuple[float, float, float] = GROUP_WEIGHTS,
    loss: str = SVM_LOSS,
) -> Direction:
    """The query direction of `method` for these unit vectors (rows)."""
    if len(positives) == 0:
        raise BadRequest("an example search needs at least one positive example")
    if method == "centroid":
        return rocchio(positives, negatives, gamma=gamma)
    if method == "svm":
        return svm(positives, negatives, background, c=c, group_weights=group_weights, loss=loss)
    raise BadRequest(f"unknown method {method!r}: use one of {', '.join(METHODS)}")


def rocchio(positives: np.ndarray, negatives: np.ndarray | None, *, gamma: float) -> Direction:
    q = positives.mean(0)
    if negatives is not None and len(negatives):
        q = q - gamma * negatives.mean(0)
    return Direction(_unit(q, "the positives' centroid"), 0.0)


def svm(
    positives: np.ndarray,
    negatives: np.ndarray | None,
    background: np.ndarray | None,
    *,
    c: float,
    group_weights: tuple[float, float, float] = GROUP_WEIGHTS,
    loss: str = SVM_LOSS,
) -> Direction:
    """The linear SVM's boundary as a direction and an offset. With nothing to learn
    against (no negatives, an empty collection sample), the positives' centroid."""
    groups = [g for g in (negatives, background) if g is not None and len(g)]
    if not groups:
        return rocchio(positives, None, gamma=0.0)
    parts = [(positives, 1, group_weights[0])]
    if negatives is not None and len(negatives):
        parts.append((negatives, 0, group_weights[1]))
    if background is not None and len(background):
        parts.append((background, 0, group_weights[2]))
    x = np.concatenate([p for p, _, _ in parts]).astype(np.float64)
    y = np.concatenate([np.full(len(p), label) for p, label, _ in parts])
    weight = np.concatenate([np.full(len(p), w / len(p)) for p, _, w in parts])
    weight *= len(x) / weight.sum()  # mean 1, as scikit-learn's "balanced" weights
    # The hinge loss is solved in the dual only; squared hinge in the primal when there are
    # more samples than dimensions (faster there).
    dual = loss == "hinge" or len(x) <= x.shape[1]
    model = LinearSVC(C=c, loss=loss, dual=dual, max_iter=5000, random_state=0)
    with warnings.catch_warnings():
        # Few iterations short of the tolerance change no ranking worth a warning per query.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y, sample_weight=weight)
    w, b = model.coef_[0], float(model.intercept_[0])
    norm = float(np.linalg.norm(w))
    if not norm > 1e-9:
        raise BadRequest("the positive examples cannot be told apart from the negatives")
    return Direction((w / norm).astype(np.float32), b / norm)


def _unit(v: np.ndarray, what: str) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if not norm > 1e-9:
        raise BadRequest(f"{what} is a zero vector: it has no direction to search")
    return (v / norm).astype(np.float32)

"""Fit a model's score calibration (mmq/encoders/calibration.py) on images and captions.

Every (query kind, item kind) pair gets an affine map onto the text→image scale:

- where the data says which items are relevant (a caption and its image, two captions of
  one image, a caption and the pair of its image with another caption, an image and its
  captions), by **equal likelihood ratio**: a one-feature logistic regression of
  relevance on the cosine, with the two classes weighted equally, per pair; the map sends a
  cosine to the text→image cosine that has the same odds of being relevant. It is affine
  because both logits are. Of the fits measured (benchmarks/kind_bias.py) it is the one
  that lifts the right photo without burying relevant texts;
- where it does not (image→image, image→pair: the only "relevant" item would be the very
  image; composed queries), by the **non-relevant scores**: their mean and spread are
  mapped onto those of non-relevant text→image pairs.

Videos are ranked by their best segment, whose vector is an image vector: they get the
image maps. Pairs are fitted with equal weights, composed queries too.

The cosines must come from images the model was not trained on (held-out images): on its
training images a head scores a caption and its own photo far higher than on new photos,
and a calibration fitted there pushes every other kind too far down.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from mmq.encoders.autoencoder import Autoencoder
from mmq.encoders.calibration import FUSIONS, ITEM_KINDS, QUERY_KINDS, Affine
from mmq.services.vectors import item_vector, query_vector

MIN_RELEVANT = 20  # fewer relevant pairs than this: fit on the non-relevant scores alone
MAX_QUERIES = 2000  # per query kind, drawn at random: keeps the score matrices small
SAMPLE = 200_000  # non-relevant scores kept per pair (drawn at random)
RELEVANCE_PAIRS = {("text", "image"), ("text", "text"), ("text", "pair"), ("image", "text")}


@dataclass(frozen=True)
class Scores:
    """Cosines of one (query kind, item kind) pair, split by relevance (None: unknown)."""

    other: np.ndarray
    relevant: np.ndarray | None


def fit_calibration(
    images: np.ndarray,
    texts: np.ndarray,
    caption_image: np.ndarray,
    *,
    seed: int = 0,
    relevance: bool = True,
    fusions: tuple[str, ...] = FUSIONS,
    autoencoder: Autoencoder | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(maps: fusion → query kind → item kind → (slope, offset), how each was fitted).

    `images` are the model's unit image vectors, `texts` its unit caption vectors and
    `caption_image[i]` the row of caption i's image; every image needs a caption.
    `relevance=False` fits every pair on its non-relevant scores (kept for the benchmark).
    `fusions=("autoencoder",)` with the `autoencoder`: the maps of its codes."""
    maps: dict[str, Any] = {}
    report: dict[str, Any] = {}
    for fusion in fusions:
        scores = pair_scores(
            images, texts, caption_image, fusion=fusion, seed=seed, autoencoder=autoencoder
        )
        maps[fusion], report[fusion] = _maps(scores, relevance=relevance)
    return maps, report


def pair_scores(
    images: np.ndarray,
    texts: np.ndarray,
    caption_image: np.ndarray,
    *,
    fusion: str,
    seed: int = 0,
    autoencoder: Autoencoder | None = None,
) -> dict[tuple[str, str], Scores]:
    """The scores search would give each (query kind, item kind) pair in a `fusion`
    collection holding these images, captions and pairs (each image with its first caption)."""
    rng = np.random.default_rng(seed)
    n = len(images)
    first = np.array([np.flatnonzero(caption_image == j)[0] for j in range(n)])
    f: Any = {"collection_fusion": fusion, "autoencoder": autoencoder}
    image_items = item_vector({"image": images}, **f)
    text_items = item_vector({"text": texts}, **f)
    pair_items = item_vector({"image": images, "text": texts[first]}, **f)
    items = {"image": image_items, "text": text_items, "pair": pair_items}
    item_image = {"image": np.arange(n), "text": caption_image, "pair": np.arange(n)}

    def scored(query: np.ndarray, scale: float) -> dict[str, np.ndarray]:
        return {kind: scale * (query @ vectors.T) for kind, vectors in items.items()}

    out: dict[tuple[str, str], Scores] = {}
    # Text queries: captions; the relevant items are their image, their image's other
    # captions and their image's pair (unless the pair holds the query caption itself).
    q = _draw(len(texts), rng)
    owner = caption_image[q]
    vectors, scale = query_vector({"text": texts[q]}, **f)
    for kind, s in scored(vectors, scale).items():
        relevant = owner[:, None] == item_image[kind][None, :]
        keep = np.ones_like(relevant)
        if kind == "text":  # a caption is not its own neighbour
            keep = q[:, None] != np.arange(len(texts))[None, :]
        elif kind == "pair":  # nor is the pair that holds it
            keep = q[:, None] != first[None, :]
        out[("text", kind)] = _split(s, relevant, keep, rng)
    # Image queries: their captions are relevant; the image itself (and its pair) is left out.
    q = _draw(n, rng)
    vectors, scale = query_vector({"image": images[q]}, **f)
    for kind, s in scored(vectors, scale).items():
        same = q[:, None] == item_image[kind][None, :]
        if kind == "text":
            out[("image", kind)] = _split(s, same, np.ones_like(same), rng)
        else:
            out[("image", kind)] = _split(s, None, ~same, rng)
    # Composed queries: a caption of one image with another image; both images' items are
    # left out, the rest is unrelated to either.
    q = _draw(n, rng)
    partner = (q + rng.integers(1, n, size=len(q))) % n
    caption = np.array([rng.choice(np.flatnonzero(caption_image == j)) for j in partner])
    vectors, scale = query_vector({"text": texts[caption], "image": images[q]}, **f)
    for kind, s in scored(vectors, scale).items():
        near = (q[:, None] == item_image[kind][None, :]) | (
            partner[:, None] == item_image[kind][None, :]
        )
        out[("composed", kind)] = _split(s, None, ~near, rng)
    return out


def _maps(
    scores: dict[tuple[str, str], Scores], *, relevance: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    reference = scores[("text", "image")]
    assert reference.relevant is not None
    ref_logit = logistic(reference.other, reference.relevant)
    maps: dict[str, Any] = {q: {} for q in QUERY_KINDS}
    report: dict[str, Any] = {q: {} for q in QUERY_KINDS}
    for (q, kind), s in scores.items():
        how, affine = "noise", _noise_map(s.other, reference.other)
        if (q, kind) == ("text", "image"):
            how, affine = "reference", (1.0, 0.0)
        elif relevance and (q, kind) in RELEVANCE_PAIRS and s.relevant is not None:
            if len(s.relevant) >= MIN_RELEVANT and ref_logit[0] > 0:
                slope, offset = logistic(s.other, s.relevant)
                if slope > 0:
                    how = "relevance"
                    affine = (slope / ref_logit[0], (offset - ref_logit[1]) / ref_logit[0])
        maps[q][kind] = affine
        report[q][kind] = {
            "fit": how,
            "map": [round(v, 4) for v in affine],
            "other": _describe(s.other),
            "relevant": _describe(s.relevant) if s.relevant is not None else None,
        }
    for q in QUERY_KINDS:  # a video is ranked by its best segment: an image vector
        maps[q]["video"] = maps[q]["image"]
        report[q]["video"] = {"fit": "as image"}
    assert all(set(maps[q]) == set(ITEM_KINDS) for q in QUERY_KINDS)
    return maps, report


def fit_summary(report: dict[str, Any]) -> dict[str, dict[str, str]]:
    """How each pair of the `sum` maps was fitted: reference, relevance, noise or as image."""
    return {q: {k: r["fit"] for k, r in kinds.items()} for q, kinds in report["sum"].items()}


def logistic(other: np.ndarray, relevant: np.ndarray, *, steps: int = 50) -> Affine:
    """(a, b) of P(relevant | s) = sigmoid(a s + b), both classes weighted equally
    (Newton's method on the weighted log-likelihood, with a tiny ridge for stability)."""
    x = np.concatenate([other, relevant]).astype(np.float64)
    y = np.concatenate([np.zeros(len(other)), np.ones(len(relevant))])
    w = np.where(y == 1, 0.5 / len(relevant), 0.5 / len(other))
    mu, sd = x.mean(), max(float(x.std()), 1e-9)
    z = (x - mu) / sd  # standardised, so the Newton steps are well scaled
    theta = np.zeros(2)
    design = np.stack([z, np.ones_like(z)], axis=1)
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(design @ theta)))
        grad = design.T @ (w * (p - y)) + 1e-6 * theta
        hess = (design * (w * p * (1 - p))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        theta -= step
        if np.abs(step).max() < 1e-10:
            break
    a = theta[0] / sd
    return float(a), float(theta[1] - a * mu)


def _noise_map(other: np.ndarray, reference: np.ndarray) -> Affine:
    slope = float(reference.std() / max(float(other.std()), 1e-9))
    return slope, float(reference.mean() - slope * other.mean())


def _draw(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=min(n, MAX_QUERIES), replace=False))


def _split(
    s: np.ndarray, relevant: np.ndarray | None, keep: np.ndarray, rng: np.random.Generator
) -> Scores:
    other = s[keep & ~relevant] if relevant is not None else s[keep]
    if len(other) > SAMPLE:
        other = rng.choice(other, size=SAMPLE, replace=False)
    return Scores(other, s[keep & relevant] if relevant is not None else None)


def _describe(x: np.ndarray) -> dict[str, float]:
    if not len(x):
        return {"n": 0}
    return {"n": int(len(x)), "mean": round(float(x.mean()), 4), "sd": round(float(x.std()), 4)}


MIN_HELD_OUT = 10  # held-out images needed to fit a head's calibration


def fit_for_head(
    head: Any, pairs: Any, held_out: np.ndarray, *, seed: int = 0
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The calibration of a trained head, fitted on its held-out images (`pairs` rows
    `held_out`: their features and captions); None with fewer than MIN_HELD_OUT of them."""
    import torch
    from torch.nn import functional as F

    if len(held_out) < MIN_HELD_OUT:
        return None
    head.eval()
    with torch.no_grad():
        features = torch.from_numpy(pairs.images[held_out]).float()
        images = F.normalize(head(features), dim=-1).numpy()
    keep = np.flatnonzero(np.isin(pairs.caption_image, held_out))
    row = {int(image): i for i, image in enumerate(held_out)}
    owner = np.array([row[int(i)] for i in pairs.caption_image[keep]])
    return fit_calibration(images, pairs.texts[keep], owner, seed=seed)

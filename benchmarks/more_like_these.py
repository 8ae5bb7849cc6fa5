"""More like these: searches by example on the flickr8k-dev photos, and their latency.

    python -m benchmarks.more_like_these [--splits 3] [--draws 10]    # quality
    python -m benchmarks.more_like_these --tune                       # how the defaults were chosen
    python -m benchmarks.more_like_these --latency [--sizes 10000,100000] [--queries 100]

Quality: concepts read from the captions (benchmarks/concepts.py). For each concept with
enough photos, 1, 3 and 10 positives drawn at random (`--draws` times); the relevant set is
every other photo of the concept. Every photo of the collection but the positives is
ranked exactly (numpy), by the same maths as the worker (mmq/relevance.py): `svm`,
`centroid`, `nn` (the first positive alone: "view similar photos"), and `svm, pooled` (the
SVM's margin over a candidate pool of the positives' and their mean's neighbours only,
everything else after). mAP@50 and P@10, in %.

Then one round of relevance feedback from 1 and 3 positives: the top 20 of the centroid's
ranking are judged by the concept labels; the relevant ones join the positives, the others
become negatives; `svm` and Rocchio (`centroid` with those negatives) rank what is left,
scored on the photos not yet judged.

`lite`'s shipped head was trained on every dev photo, so `lite` is measured as `make eval`
measures it: the head's recipe trained on half the photos (`--splits` seeds) and the
collection is the other half, 250 photos it never saw. `lite-conse` (trained on no Flickr
photo) is measured on all 500. `--tune` runs the grid of SVM C, class weights and Rocchio's
negative weight on the head's training halves, the photos it is never scored on; the
defaults in mmq/relevance.py were read off that table.

Latency: collections of 10k and 100k vectors (the 500 dev photos' `lite` vectors plus
synthetic ones, as benchmarks/bench_search.py makes them), a search worker, and searches
by 1, 3 and 10 stored examples through the queue; p50 of the whole round trip and of the
round trip less encoding (examples by id are not encoded), the first search of a
collection (which samples it), and the recall@20 of the index against the exact margin
ranking. Needs ../shared/data/flickr8k-dev: says so and exits 0 without it.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass

import numpy as np

from benchmarks.concepts import concept_photos
from benchmarks.kind_bias import _imagenet, _recipe
from mmq.cli.sources import read_captions
from mmq.config import get_settings
from mmq.encoders.base import l2_normalize
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.relevance import (
    GROUP_WEIGHTS,
    ROCCHIO_NEGATIVE,
    SVM_C,
    SVM_LOSS,
    Direction,
    direction,
)
from mmq.services.examples import BACKGROUND_SIZE
from mmq.training.features import image_features, text_features
from mmq.training.fit import Pairs, split_by_image
from tests.support.data import FLICKR

NS = (1, 3, 10)
FEEDBACK_NS = (1, 3)
JUDGED = 20
FEEDBACK = "after one round of feedback"
MIN_LEFT = 5  # a concept is used with n positives when it has n + MIN_LEFT photos at least
POOL_EACH, POOL_MEAN = 25, 50  # `svm, pooled`: neighbours of each positive, of their mean


@dataclass(frozen=True)
class Params:
    c: float = SVM_C
    weights: tuple[float, float, float] = GROUP_WEIGHTS
    gamma: float = ROCCHIO_NEGATIVE
    loss: str = SVM_LOSS


Scores = dict[tuple[str, str, int], list[tuple[float, float]]]  # (table, method, n) → [(AP, P)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    if not FLICKR.is_dir():
        print(f"{FLICKR} is absent: nothing to measure")
        return 0
    if args.latency:
        from benchmarks.more_like_these_latency import run_latency

        run_latency([int(s) for s in args.sizes.split(",")], args.queries)
        return 0
    data, names, concepts = _dev_photos()
    if args.tune:
        tune(data, concepts, args.splits, args.draws)
        return 0
    results: Scores = {}
    for seed in range(args.splits):
        train, held = split_by_image(len(names), 0.5, seed)
        vectors = _lite(data, train, seed)
        _merge(results, measure(vectors, held, concepts, args.draws, seed, Params()))
    _print(f"lite (recipe head, {args.splits} splits, the 250 held-out photos)", results)
    conse = l2_normalize(data.images[:, -data.texts.shape[1] :])
    everything = np.arange(len(names))
    _print(
        "lite-conse (all 500 photos)", measure(conse, everything, concepts, args.draws, 0, Params())
    )
    return 0


def measure(
    vectors: np.ndarray,
    photos: np.ndarray,
    concepts: dict[str, np.ndarray],
    draws: int,
    seed: int,
    params: Params,
    svm: bool = True,
) -> Scores:
    """The collection is `photos` (rows of `vectors`); each concept's photos among them.
    Without `svm`, the rankings that need no SVM only (what tuning γ needs)."""
    v = vectors[photos]
    rng = np.random.default_rng(seed)
    out: Scores = {}
    for members in concepts.values():
        relevant = np.flatnonzero(np.isin(photos, members))
        for n, _ in itertools.product(NS, range(draws)):
            if len(relevant) < n + MIN_LEFT:
                continue
            positives = rng.choice(relevant, n, replace=False)
            for method, score in _rankings(v, positives, rng, params, svm).items():
                _add(out, ("positives alone", method, n), score, positives, relevant)
            if n in FEEDBACK_NS:
                _feedback(out, v, positives, relevant, rng, params, svm)
    return out


def _rankings(
    v: np.ndarray, positives: np.ndarray, rng: np.random.Generator, params: Params, svm: bool
) -> dict[str, np.ndarray]:
    pos = v[positives]
    scores = {
        "centroid": _direction("centroid", v, pos, None, None, params).scores(v),
        "nn": v @ pos[0],
    }
    if not svm:
        return scores
    ranker = _direction("svm", v, pos, None, _sample(len(v), positives, rng), params)
    scores = {"svm": ranker.scores(v), **scores}
    # The issue's candidate pool: the SVM ranks only the positives' and their mean's
    # neighbours; the rest of the collection comes after them.
    pool = np.zeros(len(v), bool)
    for q, size in [*((p, POOL_EACH) for p in pos), (pos.mean(0), POOL_MEAN)]:
        pool[np.argsort(-(v @ q))[: size + len(positives)]] = True
    scores["svm, pooled"] = np.where(pool, scores["svm"], scores["svm"] - 1e3)
    return scores


def _feedback(
    out: Scores,
    v: np.ndarray,
    positives: np.ndarray,
    relevant: np.ndarray,
    rng: np.random.Generator,
    params: Params,
    svm: bool,
) -> None:
    """One round: the centroid's top JUDGED judged, then svm and Rocchio on the rest."""
    first = _direction("centroid", v, v[positives], None, None, params).scores(v)
    first[positives] = -np.inf
    judged = np.argsort(-first)[:JUDGED]
    likes = np.concatenate([positives, judged[np.isin(judged, relevant)]])
    unlikes = judged[~np.isin(judged, relevant)]
    seen = np.concatenate([positives, judged])
    if not np.isin(relevant, seen, invert=True).any():
        return  # nothing relevant left to find
    neg = v[unlikes] if len(unlikes) else None
    background = _sample(len(v), seen, rng)
    n = len(positives)
    ranked = {
        "Rocchio": _direction("centroid", v, v[likes], neg, None, params),
        "centroid, likes only": _direction("centroid", v, v[likes], None, None, params),
    }
    if svm:
        ranked = {
            "svm": _direction("svm", v, v[likes], neg, background, params),
            **ranked,
            "svm, likes only": _direction("svm", v, v[likes], None, background, params),
        }
    for method, d in ranked.items():
        _add(out, (FEEDBACK, method, n), d.scores(v), seen, relevant)


def _direction(
    method: str,
    v: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray | None,
    background: np.ndarray | None,
    params: Params,
) -> Direction:
    return direction(
        "svm" if method == "svm" else "centroid",
        pos,
        neg,
        None if background is None else v[background],
        c=params.c,
        gamma=params.gamma,
        group_weights=params.weights,
        loss=params.loss,
    )


def _sample(n: int, leave_out: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The worker's background: up to BACKGROUND items of the collection, less the examples."""
    rest = np.setdiff1d(np.arange(n), leave_out)
    if len(rest) <= BACKGROUND_SIZE:
        return rest
    return rng.choice(rest, BACKGROUND_SIZE, replace=False)


def _add(
    out: Scores,
    key: tuple[str, str, int],
    scores: np.ndarray,
    seen: np.ndarray,
    relevant: np.ndarray,
) -> None:
    """AP@50 and P@10 of the ranking of every item not in `seen`."""
    scores = scores.astype(np.float64).copy()
    scores[seen] = -np.inf
    order = np.argsort(-scores, kind="stable")[: len(scores) - len(seen)]
    wanted = np.setdiff1d(relevant, seen)
    hit = np.isin(order[:50], wanted)
    precision = np.cumsum(hit) / np.arange(1, len(hit) + 1)
    ap = float((precision * hit).sum() / min(len(wanted), 50))
    out.setdefault(key, []).append((100 * ap, 100 * float(hit[:10].mean())))


def tune(data: Pairs, concepts: dict[str, np.ndarray], splits: int, draws: int) -> None:
    """The grids on the photos each split's head was trained on (never those scored): the
    SVM's C and group weights, then Rocchio's negative weight γ."""
    svm_grid = [
        Params(c=c, loss=loss)
        for loss in ("hinge", "squared_hinge")
        for c in (0.01, 0.03, 0.1, 0.3, 1.0)
    ] + [Params(weights=w) for w in ((1.0, 2.0, 1.0), (1.0, 1.0, 0.5), (2.0, 1.0, 1.0))]
    rocchio_grid = [Params(gamma=g) for g in (0.25, 0.5, 0.75, 1.0, 1.5)]
    rows: dict[tuple[Params, bool], Scores] = {}
    for seed in range(splits):
        train, _ = split_by_image(len(data.images), 0.5, seed)
        vectors = _lite(data, train, seed)
        for p, svm in [*((p, True) for p in svm_grid), *((p, False) for p in rocchio_grid)]:
            scored = measure(vectors, train, concepts, draws, seed, p, svm=svm)
            _merge(rows.setdefault((p, svm), {}), scored)
    print(f"\ntuning on the heads' training halves ({splits} splits): mAP@50, %")
    # weights: the SVM's group weights (positives, given negatives, collection sample)
    print("\n| loss | C | weights | svm 1 | svm 3 | svm 10 | svm fb 1 | svm fb 3 |")
    print("|---|---|---|---|---|---|---|---|")
    for (p, svm), scores in rows.items():
        if svm:
            cells = [_ap(scores, ("positives alone", "svm", n)) for n in NS]
            cells += [_ap(scores, (FEEDBACK, "svm", n)) for n in FEEDBACK_NS]
            print(f"| {p.loss} | {p.c} | {p.weights} | " + " | ".join(cells) + " |")
    print("\n| Rocchio γ | centroid 1 | centroid 3 | centroid 10 | Rocchio fb 1 | Rocchio fb 3 |")
    print("|---|---|---|---|---|---|")
    for (p, svm), scores in rows.items():
        if not svm:
            cells = [_ap(scores, ("positives alone", "centroid", n)) for n in NS]
            cells += [_ap(scores, (FEEDBACK, "Rocchio", n)) for n in FEEDBACK_NS]
            print(f"| {p.gamma} | " + " | ".join(cells) + " |")


def _ap(scores: Scores, key: tuple[str, str, int]) -> str:
    return f"{np.mean([a for a, _ in scores[key]]):.1f}" if key in scores else "—"


def _merge(into: Scores, more: Scores) -> None:
    for key, values in more.items():
        into.setdefault(key, []).extend(values)


def _print(title: str, scores: Scores) -> None:
    print(f"\n{title}: mAP@50 / P@10 in %, (concept, draw) pairs averaged")
    for table in ("positives alone", FEEDBACK):
        ns = NS if table == "positives alone" else FEEDBACK_NS
        print(f"\n{table}\n| method | " + " | ".join(f"{n} positive(s)" for n in ns) + " |")
        print("|---|" + "---|" * len(ns))
        for method in dict.fromkeys(m for t, m, _ in scores if t == table):
            cells = []
            for n in ns:
                got = scores.get((table, method, n), [])
                a, p = np.mean(got, axis=0) if got else (np.nan, np.nan)
                cells.append(f"{a:.1f} / {p:.1f} (n={len(got)})")
            print(f"| {method} | " + " | ".join(cells) + " |", flush=True)


def _dev_photos() -> tuple[Pairs, list[str], dict[str, np.ndarray]]:
    cache = get_settings().state_dir / "cache"
    encoder = LiteConseEncoder(device="cpu", cache_dir=cache)
    captions = read_captions(FLICKR / "captions.csv")
    names = sorted(captions)
    data = Pairs(
        image_features(encoder, [FLICKR / "images" / n for n in names], cache),
        text_features(encoder, [c for n in names for c in captions[n]], cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    global _extra
    _extra = _imagenet(encoder, cache)
    return data, names, concept_photos(captions, names)


_extra: Pairs | None = None


def _lite(data: Pairs, train: np.ndarray, seed: int) -> np.ndarray:
    """Every photo's unit vector from the shipped head's recipe trained on `train`."""
    return _recipe(data, _extra, train, seed)


if __name__ == "__main__":
    raise SystemExit(main())

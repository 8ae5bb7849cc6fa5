"""Kind bias: how items of different kinds share one result list, before and after calibration.

    python -m benchmarks.kind_bias [--splits 3]          # measure
    python -m benchmarks.kind_bias --fit                 # also write the shipped calibrations

On flickr8k-dev, for `lite` (the shipped head's recipe, trained on one half of the images
as `make eval` does, so that every figure is on images it never saw) and `lite-conse`:
the held-out half is cut into two folds; the calibration (mmq/training/calibration.py) is
fitted on one fold and measured on the other, and the other way round. A fold's images are
cut in three: photos stored as image items; captions stored as text items (all but the
first of each photo); pairs (a photo with its first caption). One collection holds them
all, and four sets of queries run against it, each with one kind of relevant item:

- caption → photo: every caption of the stored photos; the relevant item is its photo;
- caption → caption: the first caption of each text-item photo; relevant: its siblings;
- caption → pair: the other captions of each pair's photo; relevant: that pair;
- photo → caption: the photos of the text items (not stored); relevant: their captions.

It prints, per query set, R@1/5/10 of a relevant item and the share of the top-10 slots
taken by each kind: raw cosines; calibrated; calibrated from the non-relevant scores only
("noise only", the other fit mmq/training/calibration.py describes); for `lite`, calibrated
on the images its head was trained on (what `--val-fraction 0` would give); and the
relevant kind stored alone (what a perfect calibration cannot beat). Scores are computed
exactly (numpy), as search computes them with the default `sum` fusion; the mean over
`--splits` splits × 2 folds.

`--fit` writes the calibrations the models ship with: `lite`'s is fitted, for each split,
on the held-out half with the recipe's head trained on the other half (cosines of photos a
head never saw: docs/models.md), and the maps averaged; `lite-conse`'s on all 500 images
(ConSE was not trained on Flickr). Needs ../shared/data/flickr8k-dev (and imagenet-sample
for the recipe's extra pairs); says so and exits 0 without it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mmq.cli.sources import read_captions
from mmq.config import get_settings
from mmq.encoders.base import l2_normalize
from mmq.encoders.calibration import FILE, FUSIONS, ITEM_KINDS, QUERY_KINDS, save_calibration
from mmq.encoders.lite import SHIPPED_HEAD
from mmq.encoders.lite_conse import TEMPLATE, LiteConseEncoder
from mmq.services.vectors import item_vector, query_vector
from mmq.training.calibration import fit_calibration, fit_summary
from mmq.training.config import TrainConfig
from mmq.training.features import image_features, text_features
from mmq.training.fit import Pairs, fit, split_by_image
from tests.support.data import FLICKR, IMAGENET

CONSE_FILE = Path(__file__).resolve().parents[1] / "mmq" / "encoders" / "calibrations"
KINDS = ("image", "text", "pair")
QUERY_SETS = (  # (name, query kind, relevant item kind)
    ("caption → photo", "text", "image"),
    ("caption → caption", "text", "text"),
    ("caption → pair", "text", "pair"),
    ("photo → caption", "image", "text"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--fit", action="store_true", help="write the shipped calibrations")
    args = parser.parse_args()
    if not FLICKR.is_dir():
        print(f"{FLICKR} is absent: nothing to measure")
        return 0
    cache = get_settings().state_dir / "cache"
    encoder = LiteConseEncoder(device="cpu", cache_dir=cache)
    captions = read_captions(FLICKR / "captions.csv")
    names = sorted(captions)
    data = Pairs(
        image_features(encoder, [FLICKR / "images" / n for n in names], cache),
        text_features(encoder, [c for n in names for c in captions[n]], cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    extra = _imagenet(encoder, cache)
    conse = l2_normalize(data.images[:, -data.texts.shape[1] :])
    for model in ("lite", "lite-conse"):
        results: dict[tuple[str, str], list[list[float]]] = {}
        cosines: dict[tuple[str, str], list[list[float]]] = {}
        for seed in range(args.splits):
            train, held = split_by_image(len(names), 0.5, seed)
            vectors = conse if model == "lite-conse" else _recipe(data, extra, train, seed)
            folds = np.array_split(np.random.default_rng(seed).permutation(held), 2)
            for fit_on, measure_on in ((folds[0], folds[1]), (folds[1], folds[0])):
                fits = {}
                for how, relevance in (("calibrated", True), ("noise only", False)):
                    fits[how], report = _fit(data, vectors, fit_on, relevance=relevance)
                    if relevance:
                        _collect(cosines, report, "held-out images")
                if model == "lite":  # fitted on the images the head was trained on
                    fits["fit on training images"], report = _fit(data, vectors, train)
                    _collect(cosines, report, "training images")
                for name, row in measure(data, vectors, measure_on, fits, seed).items():
                    results.setdefault(name, []).append(row)
        _print(model, results, args.splits)
        _print_cosines(cosines)
    if args.fit:
        ship(data, extra, conse, args.splits)
    return 0


def ship(data: Pairs, extra: Pairs | None, conse: np.ndarray, splits: int) -> None:
    """Write `lite`'s and `lite-conse`'s calibrations (see the module's docstring)."""
    fitted: list[dict[str, Any]] = []
    report: dict[str, Any] = {}
    for seed in range(splits):
        train, held = split_by_image(len(data.images), 0.5, seed)
        vectors = _recipe(data, extra, train, seed)
        maps, report = fit_calibration(vectors[held], *_captions_of(data, held))
        fitted.append(maps)
    lite = {
        f: {q: {k: _mean([m[f][q][k] for m in fitted]) for k in ITEM_KINDS} for q in QUERY_KINDS}
        for f in FUSIONS
    }
    command = "python -m benchmarks.kind_bias --fit"
    save_calibration(
        SHIPPED_HEAD / FILE,
        lite,
        {
            "data": "flickr8k-dev: images and captions.csv",
            "fitted_on": f"the held-out half of {splits} splits, each with the recipe's head "
            "trained on the other half (docs/models.md); maps averaged over the splits",
            "command": command,
            "fits": fit_summary(report),
        },
    )
    maps, report = fit_calibration(conse, data.texts, data.caption_image)
    save_calibration(
        CONSE_FILE / "lite-conse.json",
        maps,
        {
            "data": "flickr8k-dev: images and captions.csv",
            "fitted_on": "all 500 images (ConSE saw none of them)",
            "command": command,
            "fits": fit_summary(report),
        },
    )
    print(f"wrote {SHIPPED_HEAD / FILE} and {CONSE_FILE / 'lite-conse.json'}")


def measure(
    data: Pairs, vectors: np.ndarray, images: np.ndarray, fits: dict[str, Any], seed: int
) -> dict[tuple[str, str], list[float]]:
    """{(query set, how): [R@1, R@5, R@10, % image, % text, % pair in the top 10]}."""
    photos, texted, paired = np.array_split(np.random.default_rng(seed + 1).permutation(images), 3)
    caps = {int(i): np.flatnonzero(data.caption_image == i) for i in images}
    text_ids = np.concatenate([caps[int(i)][1:] for i in texted])
    first = np.array([caps[int(i)][0] for i in paired])
    item = {
        "image": item_vector({"image": vectors[photos]}, collection_fusion="sum"),
        "text": item_vector({"text": data.texts[text_ids]}, collection_fusion="sum"),
        "pair": item_vector(
            {"image": vectors[paired], "text": data.texts[first]}, collection_fusion="sum"
        ),
    }
    # Each item's photo (the one it shows or describes) and kind, in the order of `every`.
    owner = np.concatenate([photos, data.caption_image[text_ids], paired])
    kind = np.repeat(KINDS, [len(photos), len(text_ids), len(paired)])
    every = np.concatenate([item[k] for k in KINDS])
    queries = {
        "caption → photo": ("text", np.concatenate([caps[int(i)] for i in photos])),
        "caption → caption": ("text", np.array([caps[int(i)][0] for i in texted])),
        "caption → pair": ("text", np.concatenate([caps[int(i)][1:] for i in paired])),
        "photo → caption": ("image", texted),
    }
    out: dict[tuple[str, str], list[float]] = {}
    for name, q_kind, relevant in QUERY_SETS:
        modality, rows = queries[name]
        source = data.texts if modality == "text" else vectors
        q, scale = query_vector({modality: source[rows]}, collection_fusion="sum")
        q_owner = data.caption_image[rows] if modality == "text" else rows
        raw = scale * (q @ every.T)
        scored = {"raw cosine": raw}
        for how, maps in fits.items():
            scored[how] = raw.copy()
            for k in KINDS:
                slope, offset = maps[q_kind][k]
                scored[how][:, kind == k] = slope * raw[:, kind == k] + offset
        scored["kind alone"] = np.where(kind == relevant, raw, -np.inf)
        for how, s in scored.items():
            top = np.argsort(-s, axis=1)[:, :10]
            hit = (owner[top] == q_owner[:, None]) & (kind[top] == relevant)
            rank = np.where(hit.any(1), hit.argmax(1), 10)
            row = [100.0 * float(np.mean(rank < k)) for k in (1, 5, 10)]
            row += [100.0 * float(np.mean(kind[top] == k)) for k in KINDS]
            out[(name, how)] = row
    return out


def _recipe(data: Pairs, extra: Pairs | None, train: np.ndarray, seed: int) -> np.ndarray:
    """Unit image vectors from the shipped head's recipe trained on `train` (docs/models.md:
    100 fixed steps, English captions, ImageNet-sample prompts as extra pairs)."""
    pairs, ids = data.extended(extra) if extra is not None else (data, np.array([], int))
    config = TrainConfig(steps=100, eval_every=1000, seed=seed)
    head = fit(pairs, np.concatenate([train, ids]), np.array([], int), config).head.eval()
    with torch.no_grad():
        return F.normalize(head(torch.from_numpy(data.images).float()), dim=-1).numpy()


def _imagenet(encoder: LiteConseEncoder, cache: Path) -> Pairs | None:
    if not (IMAGENET / "labels.csv").is_file():
        print(f"{IMAGENET} is absent: the recipe is trained without its extra pairs")
        return None
    with open(IMAGENET / "labels.csv", newline="", encoding="utf-8") as f:
        labelled = [(r["image"], r["label"]) for r in csv.DictReader(f)]
    return Pairs(
        image_features(encoder, [IMAGENET / i for i, _ in labelled], cache),
        text_features(encoder, [TEMPLATE.format(label) for _, label in labelled], cache),
        np.arange(len(labelled)),
    )


def _fit(
    data: Pairs, vectors: np.ndarray, images: np.ndarray, *, relevance: bool = True
) -> tuple[Any, dict[str, Any]]:
    """The `sum` maps fitted on these images and their captions, and how they were fitted."""
    maps, report = fit_calibration(
        vectors[images], *_captions_of(data, images), relevance=relevance
    )
    return maps["sum"], report["sum"]


def _collect(
    cosines: dict[tuple[str, str], list[list[float]]], report: dict[str, Any], on: str
) -> None:
    """Mean and spread of each pair's non-relevant and relevant cosines (NaN: no relevant
    ones). On training images, text→image only: the pair where a head's own images differ."""
    for q, kinds in report.items():
        for kind, r in kinds.items():
            if kind == "video" or (on == "training images" and (q, kind) != ("text", "image")):
                continue
            relevant = r["relevant"] or {"mean": np.nan, "sd": np.nan}
            row = [r["other"]["mean"], r["other"]["sd"], relevant["mean"], relevant["sd"]]
            cosines.setdefault((f"{q} → {kind}", on), []).append(row)


def _print_cosines(cosines: dict[tuple[str, str], list[list[float]]]) -> None:
    print("\n| pair | cosines on | not relevant: mean (sd) | relevant: mean (sd) |")
    print("|---|---|---|---|")
    for (pair, on), rows in cosines.items():
        m = np.mean(rows, axis=0)
        relevant = "—" if np.isnan(m[2]) else f"{m[2]:.3f} ({m[3]:.3f})"
        print(f"| {pair} | {on} | {m[0]:.3f} ({m[1]:.3f}) | {relevant} |")


def _captions_of(data: Pairs, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(caption vectors, each caption's row in `images`) for these images."""
    keep = np.flatnonzero(np.isin(data.caption_image, images))
    row = {int(i): j for j, i in enumerate(images)}
    return data.texts[keep], np.array([row[int(i)] for i in data.caption_image[keep]])


def _mean(affines: list[Any]) -> tuple[float, float]:
    return float(np.mean([a[0] for a in affines])), float(np.mean([a[1] for a in affines]))


def _print(model: str, results: dict[tuple[str, str], list[list[float]]], splits: int) -> None:
    print(f"\n{model}: mean of {splits} splits x 2 folds, recalls and top-10 shares in %")
    print(f"| {'queries':17s} | {'scores':22s} | R@1 | R@5 | R@10 | image | text | pair |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, how), rows in results.items():
        m = np.mean(rows, axis=0)
        print(
            f"| {name:17s} | {how:22s} | {m[0]:4.1f} | {m[1]:4.1f} | {m[2]:4.1f} | "
            f"{m[3]:5.1f} | {m[4]:4.1f} | {m[5]:4.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    raise SystemExit(main())

"""The alignment head's hyper-parameters, measured on images held out of flickr8k-dev.

    python -m benchmarks.alignment_table [--val-fraction 0.5] [--splits 3]

Each row trains a head on the training images of several random splits (by image) and
reports the mean validation recalls in percent (t2i: each caption ranks its image among the
held-out images; i2t: each image ranks its captions). Extra pairs (ImageNet-sample label
prompts, mirrored images) are only ever added to the training side.

Half the images are held out by default: recall@5 among 250 images estimates recall@10
among all 500 (docs/models.md compares the two for ConSE). The first rows early-stop on
the held-out images, which flatters them a little; the "fixed steps" rows train without
looking at them, as the shipped head must.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace

import numpy as np
import torch

from mmq.cli.sources import read_captions
from mmq.config import get_settings
from mmq.encoders.lite_conse import TEMPLATE, LiteConseEncoder
from mmq.training.config import TrainConfig
from mmq.training.features import image_features, text_features
from mmq.training.fit import Pairs, evaluate, fit, split_by_image
from tests.support.data import FLICKR, IMAGENET

COLUMNS = ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val-fraction", type=float, default=0.5)
    parser.add_argument("--splits", type=int, default=3)
    args = parser.parse_args()
    flickr = FLICKR
    if not flickr.is_dir():
        raise SystemExit(f"{flickr} is absent")
    cache = get_settings().state_dir / "cache"
    encoder = LiteConseEncoder(device="cpu", cache_dir=cache)
    captions = read_captions(flickr / "captions.csv")
    names = sorted(captions)
    paths = [flickr / "images" / n for n in names]
    texts = [c for n in names for c in captions[n]]
    base = Pairs(
        image_features(encoder, paths, cache),
        text_features(encoder, texts, cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    flipped = image_features(encoder, paths, cache, flip=True)
    with open(IMAGENET / "labels.csv", newline="") as f:
        labelled = [(r["image"], r["label"]) for r in csv.DictReader(f)]
    imagenet = Pairs(
        image_features(encoder, [IMAGENET / i for i, _ in labelled], cache),
        text_features(encoder, [TEMPLATE.format(label) for _, label in labelled], cache),
        np.arange(len(labelled)),
    )
    default = TrainConfig(eval_every=10)
    # (title, config, extra training pairs, early-stop on the held-out images)
    rows: list[tuple[str, TrainConfig, str, bool]] = [
        ("linear, wd 0.1, dropout 0.8 (default)", default, "", True),
        (
            "linear, no weight decay, no dropout",
            replace(default, weight_decay=0.0, dropout=0.0),
            "",
            True,
        ),
        ("linear, wd 0.1, no dropout", replace(default, dropout=0.0), "", True),
        ("linear, dropout 0.8, no weight decay", replace(default, weight_decay=0.0), "", True),
        ("linear, dropout 0.5", replace(default, dropout=0.5), "", True),
        ("MLP with ConSE residual", replace(default, kind="mlp"), "", True),
        ("fixed temperature 0.07", replace(default, learn_temperature=False), "", True),
        ("temperature 0.03, learned", replace(default, temperature=0.03), "", True),
        ("lr 3e-4", replace(default, lr=3e-4), "", True),
        ("one caption per image in a batch", replace(default, batch="one-caption"), "", True),
        ("captions drawn at random (false negatives)", replace(default, batch="random"), "", True),
        ("+ mirrored training images", default, "flip", True),
        ("+ ImageNet-sample label prompts", default, "imagenet", True),
    ]
    # Recipes for a head trained on every image, which has nothing to stop on.
    rows += [
        (f"fixed {n} steps, + ImageNet prompts", replace(default, steps=n), "imagenet", False)
        for n in (40, 60, 100, 150)
    ]
    results: dict[str, list[dict[str, float]]] = {"ConSE (no head)": []}
    for split in range(args.splits):
        train, val = split_by_image(len(names), args.val_fraction, seed=split)
        for title, config, extra, stop_early in rows:
            pairs, train_ids = with_extra(base, train, extra, flipped, imagenet)
            if not stop_early:
                result = fit(pairs, train_ids, np.array([], int), replace(config, seed=split))
                scores = evaluate(result.head, pairs, val, torch.zeros(()), step=config.steps)
            else:
                result = fit(pairs, train_ids, val, replace(config, seed=split))
                scores = result.best
            results.setdefault(title, []).append({**scores, "step": result.best_step})
            if title.endswith("(default)"):
                results["ConSE (no head)"].append(result.history[0])
    n_val = len(split_by_image(len(names), args.val_fraction, 0)[1])
    print(f"validation: {n_val} held-out images, mean of {args.splits} splits; recalls in %")
    print(f"| {'variant':50s} | " + " | ".join(COLUMNS) + " | best step |")
    print("|" + "---|" * (len(COLUMNS) + 2))
    for title, runs in results.items():
        means = [np.mean([r[c] for r in runs]) for c in COLUMNS]
        step = np.mean([r["step"] for r in runs])
        print(f"| {title:50s} | " + " | ".join(f"{m:6.1f}" for m in means) + f" | {step:5.0f} |")
    return 0


def with_extra(
    base: Pairs, train: np.ndarray, extra: str, flipped: np.ndarray, imagenet: Pairs
) -> tuple[Pairs, np.ndarray]:
    """Append training-only pairs: mirrored training images (with their captions), or the
    ImageNet-sample photos with their label prompts."""
    if not extra:
        return base, train
    if extra == "flip":
        keep = np.isin(base.caption_image, train)
        position = {int(i): j for j, i in enumerate(train)}
        added = Pairs(
            flipped[train],
            base.texts[keep],
            np.array([position[int(i)] for i in base.caption_image[keep]]),
        )
    else:
        added = imagenet
    pairs, added_ids = base.extended(added)
    return pairs, np.concatenate([train, added_ids])


if __name__ == "__main__":
    raise SystemExit(main())

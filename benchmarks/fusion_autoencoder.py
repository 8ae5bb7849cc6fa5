"""Autoencoder fusion: pair retrieval on flickr8k-dev photos held out by photo.

    python -m benchmarks.fusion_autoencoder [--splits 3]   # measure
    python -m benchmarks.fusion_autoencoder --ship         # also write lite's autoencoder
    python -m benchmarks.fusion_autoencoder --penalties 0,100,1000   # residual penalties

Per split, the 500 photos are cut in halves (`split_by_image`, seed = split). Everything is
trained on one half and scored on the other:

- the autoencoder, with its default recipe, on out-of-fold vectors of the training half:
  each photo's image vector from the shipped head's recipe (as `make eval` and
  benchmarks/kind_bias.py train it: 100 steps, the ImageNet-sample prompts as extra pairs)
  trained on the other quarter, because a head puts its own training photos much closer to
  their captions than new photos, and the autoencoder is for new photos; early-stopped on
  10% of the half (the rest of the half as distractors);
- the held-out half's vectors come from the recipe's head trained on the whole training
  half. Each held-out photo is stored with its first caption as a pair, and two sets of
  queries look for the pair: caption → pair (the photo's other 4 captions) and
  photo → pair (the photo alone).

R@1/5/10 (%) of the right pair for the fixed fusions (sum, concat, attention) and the
autoencoder, with vectors made as search makes them (mmq/services/vectors.py); the mean
over `--splits` splits, and each autoencoder's best step. `--ship` then trains `lite`'s
autoencoder the same way on all 500 photos for the mean best step, and writes it beside the
shipped head. Needs ../shared/data/flickr8k-dev (and imagenet-sample for the recipe's extra
pairs); says so and exits 0 without it.
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
from mmq.encoders.alignment_head import head_hash
from mmq.encoders.autoencoder import FOLDER, save_maps
from mmq.encoders.lite import SHIPPED_HEAD
from mmq.encoders.lite_conse import TEMPLATE, LiteConseEncoder
from mmq.schemas import FusionName
from mmq.services.vectors import item_vector, query_vector
from mmq.training.autoencoder import (
    KS,
    PairVectors,
    fit_autoencoder,
    pair_retrieval,
    save_autoencoder,
)
from mmq.training.autoencoder_calibration import fit_maps
from mmq.training.autoencoder_config import AutoencoderConfig
from mmq.training.config import TrainConfig
from mmq.training.features import image_features, text_features
from mmq.training.fit import Pairs, fit, split_by_image
from tests.support.data import FLICKR, IMAGENET

FIXED: tuple[FusionName, ...] = ("sum", "concat", "attention")
QUERIES = (("caption → pair", "text"), ("photo → pair", "image"))
KINDS = ("image", "text", "pair")
MIXED = ("caption → photo", "caption → caption", "caption → pair", "photo → caption")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    parser.add_argument("--ship", action="store_true", help="also write the shipped autoencoder")
    parser.add_argument(
        "--penalties",
        help="instead: validation curves for these residual penalties, e.g. 0,100,1000",
    )
    args = parser.parse_args()
    if not FLICKR.is_dir():
        print(f"{FLICKR} is absent: nothing to measure")
        return 0
    torch.set_num_threads(2)
    data, extra = load_data()
    if args.penalties:
        penalty_curves(data, extra, [float(p) for p in args.penalties.split(",")])
        return 0
    rows: dict[str, list[list[float]]] = {}
    kinds: dict[str, list[list[float]]] = {}
    best_steps = []
    for seed in range(args.splits):
        train, held = split_by_image(len(data.images), 0.5, seed)
        seen, inner_train, inner_val = training_set(data, extra, train, seed)
        trained = fit_autoencoder(seen, inner_train, inner_val, AutoencoderConfig())
        best_steps.append(trained.best_step)
        code = trained.model.shipped()
        # Calibrations fitted on the training half (out-of-fold vectors), as `--ship` does.
        sum_maps = fit_maps(seen, train, autoencoder=None, fusion="sum", seed=seed)[0]
        code_maps = fit_maps(seen, train, autoencoder=code, seed=seed)[0]
        # The held-out half, through the recipe's head trained on the whole training half.
        vectors = PairVectors(
            recipe_vectors(data, extra, train, seed), data.texts, data.caption_image
        )
        for fusion in FIXED:
            rows.setdefault(fusion, []).append(_row(pair_retrieval(vectors, held, fusion=fusion)))
        found = pair_retrieval(vectors, held, fusion="autoencoder", autoencoder=code)
        rows.setdefault("autoencoder", []).append(_row(found))
        ae: dict[str, Any] = {"collection_fusion": "autoencoder", "autoencoder": code}
        for name, maps, space in (
            ("sum, raw cosines", None, {"collection_fusion": "sum"}),
            ("sum, calibrated", sum_maps, {"collection_fusion": "sum"}),
            ("autoencoder, raw cosines", None, ae),
            ("autoencoder, calibrated", code_maps, ae),
        ):
            kinds.setdefault(name, []).append(mixed(vectors, held, seed, maps, **space))
        print(
            f"split {seed}: autoencoder best step {trained.best_step}; caption → pair R@1 "
            f"sum {rows['sum'][-1][0]:.1f}, autoencoder {rows['autoencoder'][-1][0]:.1f}",
            flush=True,
        )
    _print(rows, args.splits, len(held))
    _print_kinds(kinds, args.splits)
    print(f"\nbest steps (early stopping on 10% of each training half): {best_steps}")
    if args.ship:
        ship(data, extra, steps=int(np.mean(best_steps)))
    return 0


def load_data() -> tuple[Pairs, Pairs | None]:
    """flickr8k-dev's tower features and caption vectors, and the recipe's extra pairs."""
    cache = get_settings().state_dir / "cache"
    towers = LiteConseEncoder(device="cpu", cache_dir=cache)
    captions = read_captions(FLICKR / "captions.csv")
    names = sorted(captions)
    data = Pairs(
        image_features(towers, [FLICKR / "images" / n for n in names], cache),
        text_features(towers, [c for n in names for c in captions[n]], cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    return data, _imagenet(towers, cache)


def training_set(
    data: Pairs, extra: Pairs | None, photos: np.ndarray, seed: int
) -> tuple[PairVectors, np.ndarray, np.ndarray]:
    """(vectors, training photos, validation photos) for an autoencoder of `photos`.

    A head scores its own training photos far closer to their captions than new photos
    (docs/models.md, calibration), and an autoencoder serves new photos: it is trained on
    out-of-fold vectors, each photo's from the recipe's head trained on the other half of
    `photos`. 10% of them are held out for early stopping."""
    vectors = np.zeros((len(data.images), data.texts.shape[1]), dtype=np.float32)
    folds = [photos[i] for i in split_by_image(len(photos), 0.5, seed)]
    for fit_on, fill in ((folds[0], folds[1]), (folds[1], folds[0])):
        vectors[fill] = recipe_vectors(data, extra, fit_on, seed)[fill]
    inner_train, inner_val = (photos[i] for i in split_by_image(len(photos), 0.1, seed))
    return PairVectors(vectors, data.texts, data.caption_image), inner_train, inner_val


def penalty_curves(data: Pairs, extra: Pairs | None, penalties: list[float]) -> None:
    """Caption → pair R@1 on validation photos while training, per residual penalty: the
    training half of split 0 (out-of-fold vectors), 200 photos to train on, 50 to
    validate on, the other 200 pairs as distractors; and the last training loss."""
    train, _ = split_by_image(len(data.images), 0.5, 0)
    seen, _, _ = training_set(data, extra, train, 0)
    inner_train, inner_val = (train[i] for i in split_by_image(len(train), 0.2, 0))
    steps = (0, 25, 50, 100, 200, 400, 600)
    print("| residual penalty | " + " | ".join(f"step {s}" for s in steps) + " | training loss |")
    print("|---" * (len(steps) + 2) + "|")
    for penalty in penalties:
        config = AutoencoderConfig(residual_penalty=penalty, steps=600, patience=10**6)
        curve = fit_autoencoder(seen, inner_train, inner_val, config).history
        r1 = [f"{h['text_r1']:.1f}" for h in curve if h["step"] in steps]
        print(f"| {penalty:g} | " + " | ".join(r1) + f" | {curve[-1]['contrastive']:.3f} |")


def ship(data: Pairs, extra: Pairs | None, *, steps: int) -> None:
    """Write `lite`'s autoencoder beside its head: trained for `steps` steps (the mean best
    step of the splits) on out-of-fold vectors of all 500 photos, none held out."""
    photos = np.arange(len(data.images))
    vectors, _, _ = training_set(data, extra, photos, seed=0)
    config = AutoencoderConfig(steps=steps)
    trained = fit_autoencoder(vectors, photos, np.array([], dtype=np.int64), config)
    maps, fits = fit_maps(vectors, photos, autoencoder=trained.model.shipped())
    towers = LiteConseEncoder(device="cpu", cache_dir=get_settings().state_dir / "cache").load()
    card = {
        "fusion": "autoencoder",
        "model": "lite",
        "base_version": f"{towers.version}+head-{head_hash(SHIPPED_HEAD)}",
        "data": {
            "images": "flickr8k-dev/images",
            "captions": "flickr8k-dev/captions.csv",
            "n_images": len(photos),
            "n_captions": len(data.texts),
            "n_train_images": len(photos),
            "n_val_images": 0,
            "val_fraction": 0.0,
            "note": "Flickr8k (Hodosh, Young, Hockenmaier 2013), research use only: the 500 "
            "photos of flickr8k-dev and their captions. The image vectors are out-of-fold: "
            "each photo's from the shipped head's recipe trained on the other half (with the "
            "ImageNet-sample prompts), since the shipped head saw every dev photo and an "
            "autoencoder serves photos a head never saw. Command: python -m "
            "benchmarks.fusion_autoencoder --ship (docs/models.md has its table).",
        },
        **trained.card(),
        "autoencoder": {"dim": int(vectors.images.shape[1]), "hidden": config.hidden},
        "calibration": "calibration.json: fitted on the codes of the 500 training photos",
    }
    digest = save_autoencoder(SHIPPED_HEAD / FOLDER, trained.model, card)
    about = {
        "data": "flickr8k-dev: images and captions.csv",
        "fitted_on": "the codes of all 500 photos' out-of-fold vectors, as it was trained",
        "command": "python -m benchmarks.fusion_autoencoder --ship",
        "fits": fits,
    }
    save_maps(SHIPPED_HEAD / FOLDER, maps, about)
    print(f"wrote {SHIPPED_HEAD / FOLDER} (autoencoder {digest}, {steps} steps, calibration)")


def mixed(
    vectors: PairVectors, held: np.ndarray, seed: int, maps: Any, **space: Any
) -> list[float]:
    """One collection of images, texts and pairs, as kind_bias measures them: the
    held-out photos cut in three, a third stored as images, a third as their captions but
    the first (texts), a third as pairs with their first caption. Per query set, R@10 of a
    relevant item of its kind, then the share (%) of the top-10 slots each kind takes,
    ranked by raw cosines or by `maps` (query kind → item kind → (slope, offset))."""
    captions_of = vectors.captions_of()
    photos, texted, paired = np.array_split(np.random.default_rng(seed + 1).permutation(held), 3)
    text_ids = np.concatenate([captions_of[p][1:] for p in texted])
    first = np.array([captions_of[p][0] for p in paired])
    every = np.concatenate(
        [
            item_vector({"image": vectors.images[photos]}, **space),
            item_vector({"text": vectors.texts[text_ids]}, **space),
            item_vector({"image": vectors.images[paired], "text": vectors.texts[first]}, **space),
        ]
    )
    owner = np.concatenate([photos, vectors.caption_image[text_ids], paired])
    kind = np.repeat(np.array(KINDS), [len(photos), len(text_ids), len(paired)])
    queries = {  # (modality, rows of the query vectors, the kind of its relevant items)
        "caption → photo": ("text", np.concatenate([captions_of[p] for p in photos]), "image"),
        "caption → caption": ("text", np.array([captions_of[p][0] for p in texted]), "text"),
        "caption → pair": ("text", np.concatenate([captions_of[p][1:] for p in paired]), "pair"),
        "photo → caption": ("image", texted, "text"),
    }
    out = []
    for modality, rows, relevant in queries.values():
        source = vectors.texts if modality == "text" else vectors.images
        q, _ = query_vector({modality: source[rows]}, **space)
        scores = q @ every.T
        for k in KINDS if maps is not None else ():
            slope, offset = maps[modality][k]
            scores[:, kind == k] = slope * scores[:, kind == k] + offset
        top = np.argsort(-scores, axis=1)[:, :10]
        q_owner = vectors.caption_image[rows] if modality == "text" else rows
        hit = (owner[top] == q_owner[:, None]) & (kind[top] == relevant)
        out += [100.0 * float(np.mean(hit.any(1)))]
        out += [100.0 * float(np.mean(kind[top] == k)) for k in KINDS]
    return out


def _row(recalls: dict[str, float]) -> list[float]:
    return [recalls[f"{kind}_r{k}"] for _, kind in QUERIES for k in KS]


def _print(rows: dict[str, list[list[float]]], splits: int, n_photos: int) -> None:
    print(
        f"\nPair retrieval, {n_photos} held-out photos each stored with its first caption; "
        f"R@k in %, mean of {splits} splits"
    )
    head = " | ".join(f"{name} R@{k}" for name, _ in QUERIES for k in KS)
    print(f"| fusion | {head} |")
    print("|---" * (1 + len(QUERIES) * len(KS)) + "|")
    for fusion, values in rows.items():
        mean = np.mean(values, axis=0)
        print(f"| {fusion} | " + " | ".join(f"{v:.1f}" for v in mean) + " |", flush=True)


def _print_kinds(kinds: dict[str, list[list[float]]], splits: int) -> None:
    print(
        "\nImages, texts and pairs in one collection (maps fitted on the training half): R@10 "
        f"of a relevant item, and the top-10 slots each kind takes, in %; mean of {splits} splits"
    )
    print("| queries | scores | R@10 | image | text | pair |")
    print("|---|---|---|---|---|---|")
    for q, name in enumerate(MIXED):
        for fusion, values in kinds.items():
            m = np.mean(values, axis=0)[4 * q : 4 * q + 4]
            print(f"| {name} | {fusion} | " + " | ".join(f"{v:.1f}" for v in m) + " |")


def recipe_vectors(data: Pairs, extra: Pairs | None, train: np.ndarray, seed: int) -> np.ndarray:
    """Unit image vectors from the shipped head's recipe trained on `train` (docs/models.md:
    100 fixed steps, English captions, ImageNet-sample prompts as extra pairs)."""
    pairs, ids = data.extended(extra) if extra is not None else (data, np.array([], int))
    config = TrainConfig(steps=100, eval_every=1000, seed=seed)
    head = fit(pairs, np.concatenate([train, ids]), np.array([], int), config).head.eval()
    with torch.no_grad():
        out: Any = F.normalize(head(torch.from_numpy(data.images).float()), dim=-1).numpy()
    return np.asarray(out)


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


if __name__ == "__main__":
    raise SystemExit(main())

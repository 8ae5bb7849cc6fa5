"""`mmq train`: fit an alignment head for `lite` on image–caption pairs; write it with a card.
With `--fusion autoencoder`, a model's pair autoencoder instead (cli/train_autoencoder.py)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mmq.cli.sources import Captions, read_captions
from mmq.config import get_settings
from mmq.errors import BadRequest
from mmq.training.autoencoder_config import AutoencoderConfig
from mmq.training.config import TrainConfig

if TYPE_CHECKING:  # torch and the models load only when a head is trained
    from mmq.encoders.lite_conse import LiteConseEncoder
    from mmq.training.fit import Pairs


Recipe = TypeVar("Recipe", TrainConfig, AutoencoderConfig)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of the images named in --captions")
    p.add_argument("--captions", required=True, help="CSV with columns image,caption")
    p.add_argument("--out", required=True, help="folder for the weights and card.json")
    p.add_argument(
        "--fusion",
        choices=["autoencoder"],
        help="train the model's autoencoder fusion of pairs instead of a head",
    )
    p.add_argument("--model", help="--fusion autoencoder: whose vectors (default MMQ_MODEL)")
    p.add_argument("--val-fraction", type=float, default=0.1, help="images held out")
    p.add_argument("--extra-images", help="folder of extra training-only images")
    p.add_argument(
        "--extra-captions",
        help="CSV for --extra-images: image,caption or image,label (label → a prompt)",
    )
    p.add_argument("--json", action="store_true", help="print the card as JSON at the end")
    p.add_argument("--note", default="", help="provenance and terms of the data, for the card")
    # Flags of either recipe; unset ones take the recipe's default (shown in --help).
    head, autoencoder = TrainConfig(), AutoencoderConfig()
    for name in dict.fromkeys(f.name for c in (head, autoencoder) for f in fields(c)):
        value = getattr(head, name, getattr(autoencoder, name, None))
        shown = [
            f"{getattr(c, name)} ({what})"
            for c, what in ((head, "head"), (autoencoder, "autoencoder"))
            if hasattr(c, name)
        ]
        flag, about = "--" + name.replace("_", "-"), "default " + ", ".join(shown)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, help=about)
        else:
            p.add_argument(flag, type=type(value), help=about)


def captioned_images(args: argparse.Namespace) -> tuple[Captions, list[str]]:
    """`--captions` read, and the names of its images found under `--images` (sorted)."""
    captions = read_captions(args.captions)
    names = sorted(n for n in captions if (Path(args.images) / n).is_file())
    if len(names) < 2:
        raise BadRequest(f"fewer than 2 images of {args.captions} are under {args.images}")
    return captions, names


def config_from(recipe: type[Recipe], args: argparse.Namespace) -> Recipe:
    """The recipe's hyper-parameters from the flags given (the rest: its defaults). A flag
    of the other recipe only is an error, not silently ignored."""
    own = {f.name for f in fields(recipe)}
    for f in fields(TrainConfig) + fields(AutoencoderConfig):
        if f.name not in own and getattr(args, f.name) is not None:
            raise BadRequest(f"--{f.name.replace('_', '-')} is not an option of this recipe")
    return recipe(**{n: getattr(args, n) for n in own if getattr(args, n) is not None})


def run_train(args: argparse.Namespace) -> int:
    from mmq.encoders.alignment_head import save_head
    from mmq.encoders.lite_conse import LiteConseEncoder
    from mmq.training.features import image_features, text_features
    from mmq.training.fit import Pairs, fit, split_by_image

    if args.fusion == "autoencoder":
        from mmq.cli.train_autoencoder import run_train_autoencoder

        return run_train_autoencoder(args)
    if args.model:
        raise BadRequest("--model is for --fusion autoencoder: a head is trained for lite")
    settings = get_settings()
    captions, names = captioned_images(args)
    config = config_from(TrainConfig, args)
    t0 = time.monotonic()
    cache = settings.state_dir / "cache"
    encoder = LiteConseEncoder(device=settings.device, cache_dir=cache)
    images = image_features(encoder, [Path(args.images) / n for n in names], cache, quiet=args.json)
    texts = [c for n in names for c in captions[n]]
    pairs = Pairs(
        images,
        text_features(encoder, texts, cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    train, val = split_by_image(len(names), args.val_fraction, config.seed)
    n_extra = 0
    if args.extra_images and args.extra_captions:
        extra = _extra_pairs(encoder, Path(args.extra_images), Path(args.extra_captions), cache)
        pairs, extra_ids = pairs.extended(extra)
        train, n_extra = np.concatenate([train, extra_ids]), len(extra_ids)
    t1 = time.monotonic()
    result = fit(pairs, train, val, config)
    if not args.json:
        for h in result.history:
            line = f"step {int(h['step']):4d}"
            if "val_loss" in h:
                line += (
                    f"  val loss {h['val_loss']:.3f}  t2i R@1/5/10 "
                    f"{h['t2i_r1']:.1f}/{h['t2i_r5']:.1f}/{h['t2i_r10']:.1f}  "
                    f"i2t R@10 {h['i2t_r10']:.1f}"
                )
            print(line + (f"  train loss {h['train_loss']:.3f}" if "train_loss" in h else ""))
    card = {
        "model": "lite-conse",  # the encoder whose features the head maps
        "base_version": encoder.version,
        "data": {
            "images": str(Path(args.images).resolve()),
            "captions": str(Path(args.captions).resolve()),
            "n_images": len(names),
            "n_captions": len(texts),
            "n_train_images": len(train),
            "n_val_images": len(val),
            "val_fraction": args.val_fraction,
            "extra_images": n_extra,
            "extra_captions": Path(args.extra_captions).name if n_extra else None,
            "note": args.note,
        },
        "conse_val": _recalls(result.history[0]) if len(val) else None,
        "head_val": _recalls(result.best) if len(val) else None,
        "seconds": {"features": round(t1 - t0, 1), "training": round(time.monotonic() - t1, 1)},
        **result.card(),
    }
    card["calibration"] = _calibrate(result.head, pairs, val, Path(args.out), config.seed)
    digest = save_head(Path(args.out), result.head, card)
    # The held-out images, for `mmq eval --only`: the honest test set of this head.
    if len(val):  # for `mmq eval --only`
        (Path(args.out) / "val_images.txt").write_text("".join(f"{names[i]}\n" for i in val))
    if args.json:
        print(json.dumps({**card, "head_hash": digest}))
    else:
        print(f"calibration: {card['calibration']}")
        print(
            f"head {digest} written to {args.out} (best step {result.best_step}); "
            f"serve it with MMQ_MODEL=lite+head:{Path(args.out).resolve()}"
        )
    return 0


def _extra_pairs(encoder: LiteConseEncoder, images: Path, captions_csv: Path, cache: Path) -> Pairs:
    """Training-only pairs from `image,caption` rows, or `image,label` rows turned into the
    lite prompt ("a photo of a {label}.")."""
    import csv

    from mmq.encoders.lite_conse import TEMPLATE
    from mmq.training.features import image_features, text_features
    from mmq.training.fit import Pairs

    with open(captions_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "image" not in rows[0] or not {"caption", "label"} & set(rows[0]):
        raise BadRequest(f"{captions_csv}: expected the columns image,caption or image,label")
    rows = [r for r in rows if (images / r["image"]).is_file()]
    texts = [r["caption"] if "caption" in r else TEMPLATE.format(r["label"]) for r in rows]
    names = sorted({r["image"] for r in rows})
    index = {n: i for i, n in enumerate(names)}
    return Pairs(
        image_features(encoder, [images / n for n in names], cache),
        text_features(encoder, texts, cache),
        np.array([index[r["image"]] for r in rows]),
    )


def _calibrate(head: Any, pairs: Pairs, val: np.ndarray, out: Path, seed: int) -> str:
    """Fit the head's score calibration on its held-out images and write it beside the
    head; say where it is, or why there is none (a search then ranks by raw cosines)."""
    from mmq.encoders.calibration import FILE, save_calibration
    from mmq.training.calibration import MIN_HELD_OUT, fit_for_head, fit_summary

    (out / FILE).unlink(missing_ok=True)  # an earlier head's would not fit this one
    fitted = fit_for_head(head, pairs, val, seed=seed)
    if fitted is None:
        return (
            f"none: fewer than {MIN_HELD_OUT} held-out images (--val-fraction); scores of "
            "different item kinds are raw cosines, not comparable"
        )
    maps, report = fitted
    about = {
        "data": f"the head's {len(val)} held-out images and their captions",
        "command": "mmq train",
        "fits": fit_summary(report),
    }
    save_calibration(out / FILE, maps, about)
    return f"{FILE}: fitted on the {len(val)} held-out images"


def _recalls(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "_r" in k or k == "val_loss"}

"""`mmq train`: fit an alignment head for `lite` on image–caption pairs; write it with a card."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

import numpy as np

from mmq.cli.sources import read_captions
from mmq.config import get_settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    from mmq.training.config import TrainConfig

    p.add_argument("--images", required=True, help="folder of the images named in --captions")
    p.add_argument("--captions", required=True, help="CSV with columns image,caption")
    p.add_argument("--out", required=True, help="folder for head.safetensors and card.json")
    p.add_argument("--val-fraction", type=float, default=0.1, help="images held out")
    p.add_argument("--json", action="store_true", help="print the card as JSON at the end")
    defaults = TrainConfig()
    for f in fields(TrainConfig):
        value = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            p.add_argument(flag, type=type(value), default=value)


def run_train(args: argparse.Namespace) -> int:
    from mmq.encoders.alignment_head import save_head
    from mmq.encoders.lite import LiteEncoder
    from mmq.training.config import TrainConfig
    from mmq.training.features import image_features, text_features
    from mmq.training.fit import Pairs, fit, split_by_image

    settings = get_settings()
    captions = read_captions(args.captions)
    names = sorted(n for n in captions if (Path(args.images) / n).is_file())
    if len(names) < 2:
        raise SystemExit(f"fewer than 2 images of {args.captions} are under {args.images}")
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    t0 = time.monotonic()
    encoder = LiteEncoder(device="cpu", cache_dir=settings.state_dir / "cache")
    cache = settings.state_dir / "cache"
    images = image_features(encoder, [Path(args.images) / n for n in names], cache, quiet=args.json)
    texts = [c for n in names for c in captions[n]]
    pairs = Pairs(
        images,
        text_features(encoder, texts, cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    t1 = time.monotonic()
    train, val = split_by_image(len(names), args.val_fraction, config.seed)
    result = fit(pairs, train, val, config)
    if not args.json:
        for h in result.history:
            print(
                f"step {int(h['step']):4d}  val loss {h['val_loss']:.3f}  "
                f"t2i R@1/5/10 {h['t2i_r1']:.1f}/{h['t2i_r5']:.1f}/{h['t2i_r10']:.1f}  "
                f"i2t R@10 {h['i2t_r10']:.1f}"
            )
    card = {
        "model": "lite",
        "base_version": encoder.version,
        "data": {
            "images": str(Path(args.images).resolve()),
            "captions": str(Path(args.captions).resolve()),
            "n_images": len(names),
            "n_captions": len(texts),
            "n_train_images": len(train),
            "n_val_images": len(val),
            "val_fraction": args.val_fraction,
        },
        "conse_val": _recalls(result.history[0]),
        "head_val": _recalls(result.best),
        "seconds": {"features": round(t1 - t0, 1), "training": round(time.monotonic() - t1, 1)},
        **result.card(),
    }
    digest = save_head(Path(args.out), result.head, card)
    # The held-out images, for `mmq eval --only`: the honest test set of this head.
    (Path(args.out) / "val_images.txt").write_text("".join(f"{names[i]}\n" for i in val))
    if args.json:
        print(json.dumps({**card, "head_hash": digest}))
    else:
        print(
            f"head {digest} written to {args.out} (best step {result.best_step}); "
            f"serve it with MMQ_MODEL=lite+head:{Path(args.out).resolve()}"
        )
    return 0


def _recalls(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if "_r" in k or k == "val_loss"}

"""`mmq train --fusion autoencoder`: fit a model's pair autoencoder on image–caption pairs
(mmq/training/autoencoder.py); write it with its card."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from mmq.cli.train import captioned_images, config_from
from mmq.config import get_settings
from mmq.errors import BadRequest
from mmq.training.autoencoder_config import AutoencoderConfig


def run_train_autoencoder(args: argparse.Namespace) -> int:
    from mmq.encoders import get_encoder
    from mmq.encoders.autoencoder import FOLDER
    from mmq.encoders.lite import LiteEncoder
    from mmq.training.autoencoder import fit_autoencoder, save_autoencoder
    from mmq.training.autoencoder_calibration import calibrate
    from mmq.training.fit import split_by_image
    from mmq.training.pair_vectors import pair_vectors

    if args.extra_images or args.extra_captions:
        raise BadRequest("--extra-images/--extra-captions train a head, not an autoencoder")
    settings = get_settings()
    captions, names = captioned_images(args)
    config = config_from(AutoencoderConfig, args)
    t0 = time.monotonic()
    cache = settings.state_dir / "cache"
    encoder = get_encoder(args.model or settings.model, settings.device, cache_dir=cache)
    if not isinstance(encoder, LiteEncoder):
        raise BadRequest(
            f"{encoder.name} has no place for an autoencoder: lite models keep theirs in "
            "their head's folder (--model lite or lite+head:<dir>)"
        )
    paths = [Path(args.images) / n for n in names]
    data = pair_vectors(encoder, paths, [captions[n] for n in names], cache)
    train, val = split_by_image(len(names), args.val_fraction, config.seed)
    t1 = time.monotonic()
    result = fit_autoencoder(data, train, val, config)
    if not args.json:
        for h in result.history:
            print("  ".join(f"{k} {v:g}" for k, v in h.items()))
    recalls = [k for k in result.history[0] if "_r" in k]
    card = {
        "fusion": "autoencoder",
        "model": encoder.name,
        "base_version": encoder.version,  # the vectors it reads: checked when it is loaded
        "data": {
            "images": str(Path(args.images).resolve()),
            "captions": str(Path(args.captions).resolve()),
            "n_images": len(names),
            "n_captions": len(data.texts),
            "n_train_images": len(train),
            "n_val_images": len(val),
            "val_fraction": args.val_fraction,
            "note": args.note,
        },
        # Pair retrieval on the held-out images: the `sum` fusion (the untrained start) and
        # the autoencoder at its best step.
        "sum_val": {k: result.history[0][k] for k in recalls} if len(val) else None,
        "autoencoder_val": {k: result.best[k] for k in recalls} if len(val) else None,
        "seconds": {"vectors": round(t1 - t0, 1), "training": round(time.monotonic() - t1, 1)},
        **result.card(),
        "autoencoder": {"dim": int(data.images.shape[1]), "hidden": config.hidden},
    }
    out = Path(args.out)
    card["calibration"] = calibrate(result.model.shipped(), data, val, out, seed=config.seed)
    digest = save_autoencoder(out, result.model, card)
    if len(val):  # for `mmq eval --only`: the images it never saw
        (out / "val_images.txt").write_text("".join(f"{names[i]}\n" for i in val))
    if args.json:
        print(json.dumps({**card, "autoencoder_hash": digest}))
        return 0
    home = encoder.head_dir / FOLDER
    print(f"calibration: {card['calibration']}")
    print(
        f"autoencoder {digest} written to {out} (best step {result.best_step}); "
        + (
            f"{encoder.name} serves it: create collections with fusion=autoencoder"
            if out.resolve() == home.resolve()
            else f"{encoder.name} serves the one in {home}"
        )
    )
    return 0

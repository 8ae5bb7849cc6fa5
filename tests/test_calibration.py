"""Score calibration: the fits' maths, the file format, loading and the identity fallback,
the shipped files, the model version (unchanged by a calibration) and `mmq train`."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from mmq.encoders.calibration import (
    FILE,
    FUSIONS,
    IDENTITY,
    ITEM_KINDS,
    QUERY_KINDS,
    Calibration,
    anchored,
    load_calibration,
    load_optional,
    query_kind,
    save_calibration,
)
from mmq.encoders.lite import SHIPPED_HEAD
from mmq.encoders.lite_conse import CALIBRATION as CONSE_CALIBRATION
from mmq.errors import BadRequest
from mmq.training.calibration import _noise_map, fit_calibration, logistic
from tests.support.cli import mmq

if TYPE_CHECKING:
    from mmq.encoders import Encoder


def maps_of(slope: float, offset: float) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    return {f: {q: {k: (slope, offset) for k in ITEM_KINDS} for q in QUERY_KINDS} for f in FUSIONS}


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_logistic_recovers_the_likelihood_ratio_of_two_gaussians() -> None:
    # Equal variances: log p1(s)/p0(s) = (mu1 - mu0) / var * (s - (mu0 + mu1) / 2) exactly,
    # and with the classes weighted equally the logistic fit is that log ratio, however
    # unbalanced the samples (here 50 to 1).
    rng = np.random.default_rng(0)
    other, relevant = rng.normal(0.1, 0.1, 200_000), rng.normal(0.4, 0.1, 4_000)
    a, b = logistic(other, relevant)
    assert a == pytest.approx(0.3 / 0.01, rel=0.05)
    assert -b / a == pytest.approx(0.25, abs=0.005)  # odds 1:1 half way between the means


def test_a_relevance_map_gives_equal_odds_on_both_scales() -> None:
    rng = np.random.default_rng(1)
    # A reference pair (text→image: close scores) and a pair spread wider (text→text).
    ref = (rng.normal(0.07, 0.13, 50_000), rng.normal(0.35, 0.11, 1_000))
    wide = (rng.normal(0.08, 0.14, 50_000), rng.normal(0.60, 0.15, 1_000))
    a0, b0 = logistic(*ref)
    a1, b1 = logistic(*wide)
    slope, offset = a1 / a0, (b1 - b0) / a0  # as mmq.training.calibration maps a pair
    for s in (0.1, 0.3, 0.5, 0.7):
        assert sigmoid(a0 * (slope * s + offset) + b0) == pytest.approx(sigmoid(a1 * s + b1))
    assert slope > 1  # texts' wider gap between relevant and not: they are spread further


def test_a_noise_map_matches_the_mean_and_spread() -> None:
    rng = np.random.default_rng(2)
    other, reference = rng.normal(0.6, 0.12, 10_000), rng.normal(0.12, 0.09, 10_000)
    slope, offset = _noise_map(other, reference)
    mapped = slope * other + offset
    assert mapped.mean() == pytest.approx(reference.mean(), abs=1e-9)
    assert mapped.std() == pytest.approx(reference.std(), rel=1e-9)


def synthetic(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """60 unit "image" vectors and 3 captions each, near their image: a joint space."""
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((60, 32))
    owner = np.repeat(np.arange(60), 3)
    texts = images[owner] + 1.2 * rng.standard_normal((len(owner), 32))
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(images), unit(texts), owner


def test_fit_calibration_gives_every_pair_an_increasing_map() -> None:
    maps, report = fit_calibration(*synthetic())
    assert set(maps) == set(FUSIONS)
    for fusion in FUSIONS:
        for q in QUERY_KINDS:
            assert set(maps[fusion][q]) == set(ITEM_KINDS)
            assert maps[fusion][q]["video"] == maps[fusion][q]["image"]  # best segment: image
            assert all(slope > 0 for slope, _ in maps[fusion][q].values())
        assert maps[fusion]["text"]["image"] == (1.0, 0.0)  # the reference scale
    fits = {q: {k: r["fit"] for k, r in report["sum"][q].items()} for q in QUERY_KINDS}
    assert fits["text"] == {
        "image": "reference",
        "text": "relevance",
        "pair": "relevance",
        "video": "as image",
    }
    assert fits["image"]["text"] == "relevance"
    assert fits["image"]["image"] == fits["image"]["pair"] == "noise"
    assert {fits["composed"][k] for k in ("image", "text", "pair")} == {"noise"}
    # Single-modality items and queries have the same cosines in a concat collection (to
    # float rounding, which moves an intercept near zero by ~1e-8: an absolute tolerance).
    same = pytest.approx(maps["sum"]["text"]["text"], abs=1e-6)
    assert maps["concat"]["text"]["text"] == same
    assert maps["concat"]["image"]["text"] == pytest.approx(maps["sum"]["image"]["text"], abs=1e-6)
    assert maps["concat"]["text"]["pair"] != maps["sum"]["text"]["pair"]
    again, _ = fit_calibration(*synthetic())
    assert again == maps  # deterministic for its seed


def test_fit_without_relevance_falls_back_to_the_non_relevant_scores() -> None:
    images, texts, owner = synthetic()
    maps, report = fit_calibration(images, texts, owner, relevance=False)
    assert report["sum"]["text"]["text"]["fit"] == "noise"
    # One caption per image: no two captions share an image, so text→text has nothing
    # relevant to fit on, and falls back.
    one = np.flatnonzero(np.arange(len(owner)) % 3 == 0)
    _, report = fit_calibration(images, texts[one], owner[one])
    assert report["sum"]["text"]["text"]["fit"] == "noise"
    assert report["sum"]["text"]["pair"]["fit"] == "noise"  # a pair holds the only caption
    assert report["sum"]["text"]["image"]["fit"] == "reference"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    maps = maps_of(1.25, -0.2)
    maps["sum"]["text"]["text"] = (0.5, 0.1)
    save_calibration(tmp_path / FILE, maps, {"data": "synthetic"})
    loaded = load_calibration(tmp_path / FILE)
    assert loaded.maps == anchored(maps) and loaded.source == str(tmp_path / FILE)
    assert json.loads((tmp_path / FILE).read_text())["data"] == "synthetic"
    # Loaded, every query kind's image scores are cosines; text→text is 0.5 s + 0.1 carried
    # back through the inverse of text→image's 1.25 s - 0.2: (0.5 * 0.4 + 0.1 + 0.2) / 1.25.
    text_text = loaded.apply(0.4, query_kind="text", item_kind="text", fusion="sum")
    assert text_text == pytest.approx(0.4)
    assert loaded.apply(0.4, query_kind="text", item_kind="image", fusion="sum") == 0.4


def test_anchoring_keeps_each_querys_order_and_its_image_cosines() -> None:
    rng = np.random.default_rng(1)
    maps = {
        f: {q: {k: (float(rng.uniform(0.5, 2)), float(rng.uniform(-0.3, 0.3))) for k in ITEM_KINDS}
            for q in QUERY_KINDS}
        for f in FUSIONS
    }  # fmt: skip
    fitted, loaded = Calibration(maps), Calibration(anchored(maps))
    cosines = rng.uniform(-0.2, 1.0, size=(20, len(ITEM_KINDS)))
    for q in QUERY_KINDS:
        for row in cosines:
            by = [dict(query_kind=q, item_kind=k, fusion="sum") for k in ITEM_KINDS]
            before = [fitted.apply(float(c), **b) for c, b in zip(row, by, strict=True)]
            after = [loaded.apply(float(c), **b) for c, b in zip(row, by, strict=True)]
            assert np.argsort(before).tolist() == np.argsort(after).tolist()
            assert after[ITEM_KINDS.index("image")] == pytest.approx(row[0])


def test_the_identity_and_what_is_not_calibrated(tmp_path: Path) -> None:
    assert load_optional(tmp_path / FILE) is IDENTITY  # no file: raw cosines
    assert IDENTITY.is_identity
    assert IDENTITY.apply(0.37, query_kind="image", item_kind="pair", fusion="concat") == 0.37
    calibration = Calibration(maps_of(2.0, -0.5))
    # A raw vector query: its scale is not known, so never calibrated.
    assert calibration.apply(0.4, query_kind=None, item_kind="text", fusion="sum") == 0.4
    # attention with two modalities is sum: it reads sum's maps.
    assert calibration.affine(query_kind="text", item_kind="pair", fusion="attention") == (
        2.0,
        -0.5,
    )
    assert (query_kind(text=True, image=False), query_kind(text=False, image=True)) == (
        "text",
        "image",
    )
    assert query_kind(text=True, image=True) == "composed"
    assert query_kind(text=False, image=False) is None


@pytest.mark.parametrize(
    "damage",
    ["negative slope", "missing kind", "not a number", "not json"],
)
def test_a_broken_file_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / FILE
    save_calibration(path, maps_of(1.0, 0.0), {})
    doc = json.loads(path.read_text())
    if damage == "negative slope":
        doc["maps"]["sum"]["text"]["text"] = [-1.0, 0.0]
    elif damage == "missing kind":
        del doc["maps"]["concat"]["composed"]["pair"]
    elif damage == "not a number":
        doc["maps"]["sum"]["image"]["image"] = ["NaN", 0.0]
    path.write_text("{" if damage == "not json" else json.dumps(doc))
    with pytest.raises(BadRequest, match="calibration file .* is unusable"):
        load_optional(path)


def test_the_shipped_files_load_on_the_text_image_scale() -> None:
    for path in (SHIPPED_HEAD / FILE, CONSE_CALIBRATION):
        calibration = load_calibration(path)
        for fusion in FUSIONS:
            assert calibration.maps[fusion]["text"]["image"] == (1.0, 0.0)
        # The kind bias in the figures: two captions score higher than a caption and its
        # photo, so text items are brought down (docs/models.md).
        slope, offset = calibration.affine(query_kind="text", item_kind="text", fusion="sum")
        assert slope * 0.3 + offset < 0.3


def test_calibration_is_not_part_of_the_model_version(
    encoder: Encoder, state_dir: Path, tmp_path: Path
) -> None:
    from mmq.encoders.lite import LiteEncoder

    # The shipped head without its calibration file: the same weights, so the same
    # version (stored vectors stay valid), and raw cosines.
    bare = tmp_path / "head"
    bare.mkdir()
    for name in ("head.safetensors", "card.json"):
        shutil.copy(SHIPPED_HEAD / name, bare / name)
    plain = LiteEncoder(str(bare), device="cpu", cache_dir=state_dir / "cache").load()
    assert plain.version == encoder.version
    assert plain.calibration is IDENTITY
    assert encoder.calibration == load_calibration(SHIPPED_HEAD / FILE)
    assert not encoder.calibration.is_identity


@pytest.mark.slow
def test_mmq_train_writes_a_calibration_from_held_out_images(
    photos: dict[str, Path], tmp_path: Path
) -> None:
    from PIL import Image

    from mmq.samples import PHOTOS

    rows = ["image,caption"]
    for name in PHOTOS:  # two crops per photo, two captions per crop: 28 images
        image = Image.open(photos[name]).convert("RGB")
        w, h = image.size
        for j, box in enumerate([(0, 0, 3 * w // 4, 3 * h // 4), (w // 4, h // 4, w, h)]):
            image.crop(box).save(tmp_path / f"{name}-{j}.jpg", quality=90)
            rows += [f"{name}-{j}.jpg,{PHOTOS[name]}", f"{name}-{j}.jpg,a photo of {name}"]
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    env = {**os.environ, "MMQ_STATE_DIR": str(tmp_path / "state")}
    args = ["--images", str(tmp_path), "--captions", str(tmp_path / "captions.csv")]
    args += ["--steps", "20", "--eval-every", "10", "--json", "--out", str(tmp_path / "head")]
    card = json.loads(mmq("train", *args, "--val-fraction", "0.5", env=env).stdout.splitlines()[-1])
    assert card["calibration"] == f"{FILE}: fitted on the 14 held-out images"
    written = load_calibration(tmp_path / "head" / FILE)
    assert written.maps["sum"]["text"]["image"] == (1.0, 0.0)
    # Trained again without held-out images: no calibration, and the first one is gone.
    card = json.loads(mmq("train", *args, "--val-fraction", "0", env=env).stdout.splitlines()[-1])
    assert card["calibration"].startswith("none: fewer than 10 held-out images")
    assert not (tmp_path / "head" / FILE).exists()

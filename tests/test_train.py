"""`mmq train` on a small set: the validation loss falls, the head round-trips through
safetensors, training is deterministic and cached, and a search is served with the head."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmq.samples import PHOTOS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_set(photos, tmp_path_factory) -> tuple[Path, Path]:  # type: ignore[no-untyped-def]
    """Four crops of each bundled photo (the crops are the images), two captions per photo."""
    root = tmp_path_factory.mktemp("train-set")
    rng = np.random.default_rng(0)
    rows = []
    for name in PHOTOS:
        photo = Image.open(photos[name]).convert("RGB")
        w, h = photo.size
        for j in range(4):
            x, y = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
            crop = photo.crop((x, y, x + 3 * w // 4, y + 3 * h // 4))
            crop.save(root / f"{name}-{j}.jpg", quality=90)
            rows += [(f"{name}-{j}.jpg", PHOTOS[name]), (f"{name}-{j}.jpg", f"a photo of {name}")]
    with open(root / "captions.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "caption"])
        writer.writerows(rows)
    return root, root / "captions.csv"


def train(images: Path, captions: Path, out: Path, state: Path) -> dict:  # type: ignore[type-arg]
    env = {**os.environ, "MMQ_STATE_DIR": str(state)}
    args = ["--images", str(images), "--captions", str(captions), "--out", str(out)]
    args += ["--val-fraction", "0.25", "--steps", "120", "--eval-every", "10", "--json"]
    done = subprocess.run(
        [sys.executable, "-m", "mmq.cli", "train", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(small_set, tmp_path_factory) -> tuple[Path, dict, dict]:  # type: ignore[no-untyped-def, type-arg]
    images, captions = small_set
    root = tmp_path_factory.mktemp("heads")
    first = train(images, captions, root / "a", root / "state")
    second = train(images, captions, root / "b", root / "state")
    return root / "a", first, second


def test_validation_loss_falls_and_recall_rises(trained) -> None:  # type: ignore[no-untyped-def]
    _, card, _ = trained
    assert card["data"]["n_images"] == 4 * len(PHOTOS)
    assert card["data"]["n_val_images"] == round(0.25 * 4 * len(PHOTOS))
    assert card["head_val"]["val_loss"] < card["conse_val"]["val_loss"]
    assert card["head_val"]["t2i_r1"] >= card["conse_val"]["t2i_r1"]
    assert card["best_step"] > 0


def test_training_is_deterministic_and_features_are_cached(trained) -> None:  # type: ignore[no-untyped-def]
    folder, first, second = trained
    assert first["head_hash"] == second["head_hash"]
    assert first["history"] == second["history"]
    assert second["seconds"]["features"] < first["seconds"]["features"]
    names = (folder / "val_images.txt").read_text().split()
    assert len(names) == first["data"]["n_val_images"]


def test_the_head_round_trips_and_serves_a_search(
    trained, photos, db_session, settings, state_dir
) -> None:  # type: ignore[no-untyped-def]
    import torch

    from mmq import services
    from mmq.encoders import get_encoder
    from mmq.encoders.alignment_head import load_head
    from mmq.errors import Conflict
    from mmq.schemas import RawIngestRequest, SearchRequest

    folder, card, _ = trained
    encoder = get_encoder(f"lite+head:{folder}", "cpu", cache_dir=state_dir / "cache").load()
    lite = get_encoder("lite-conse", "cpu", cache_dir=state_dir / "cache").load()
    assert encoder.version.startswith(lite.version) and encoder.version != lite.version
    image = Image.open(photos["chelsea"]).convert("RGB")
    head, loaded_card = load_head(folder)
    assert loaded_card["head_val"] == card["head_val"]
    with torch.no_grad():
        by_hand = head(torch.from_numpy(lite.image_features([image]))).numpy()[0]
    served = encoder.encode_images([image])[0]
    np.testing.assert_allclose(served, by_hand / np.linalg.norm(by_hand), atol=1e-5)

    name = f"head-{uuid.uuid4().hex[:8]}"
    items = [{"image_path": str(photos[n]), "external_id": n} for n in ("chelsea", "rocket")]
    request = RawIngestRequest(collection=name, items=items)
    stored = services.ingest(
        encoder=encoder, session=db_session, request=request, settings=settings
    )
    assert stored.failed == 0
    query = SearchRequest(collection=name, text="a tabby cat", targets=["image"])
    found = services.search(encoder=encoder, session=db_session, request=query, settings=settings)
    assert found.hits[0].external_id == "chelsea"
    with pytest.raises(Conflict, match="bound to model lite\\+head"):
        services.search(encoder=lite, session=db_session, request=query, settings=settings)

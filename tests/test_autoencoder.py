"""The `autoencoder` fusion: `mmq train --fusion autoencoder` on a small set writes its files;
codes are unit vectors of the model's dimension; a collection of codes (the shipped
autoencoder of `lite`) answers text, image and composed queries through real workers, under
a version of its own; a worker refuses a collection of another autoencoder."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pytest
from PIL import Image

from mmq.client import Client
from mmq.errors import BadRequest, Conflict
from mmq.samples import PHOTOS
from mmq.schemas import IngestItem
from tests.support.cli import mmq
from tests.support.names import fresh
from tests.support.procs import Procs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mmq.config import Settings
    from mmq.encoders import Encoder

pytestmark = pytest.mark.slow


class Trained(NamedTuple):
    folder: Path
    card: dict[str, Any]


@pytest.fixture(scope="module")
def trained(photos: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """An autoencoder of `lite`'s vectors trained by the CLI on three crops of each bundled
    photo, with two captions per photo."""
    root = tmp_path_factory.mktemp("autoencoder-set")
    rng = np.random.default_rng(0)
    rows = []
    for name in PHOTOS:
        photo = Image.open(photos[name]).convert("RGB")
        w, h = photo.size
        for j in range(3):
            x, y = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
            photo.crop((x, y, x + 3 * w // 4, y + 3 * h // 4)).save(root / f"{name}-{j}.jpg")
            rows += [(f"{name}-{j}.jpg", PHOTOS[name]), (f"{name}-{j}.jpg", f"a photo of {name}")]
    with open(root / "captions.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "caption"), *rows])
    out = root / "ae"
    env = {**os.environ, "MMQ_STATE_DIR": str(root / "state"), "MMQ_MODEL": "lite"}
    args = ["--images", str(root), "--captions", str(root / "captions.csv"), "--out", str(out)]
    args += ["--val-fraction", "0.25", "--steps", "40", "--eval-every", "10", "--json"]
    done = mmq("train", "--fusion", "autoencoder", *args, env=env)
    return Trained(out, json.loads(done.stdout.strip().splitlines()[-1]))


def test_training_writes_the_weights_and_the_card(trained: Trained, encoder: Encoder) -> None:
    from mmq.encoders.autoencoder import autoencoder_hash, load_autoencoder

    folder, card = trained
    assert sorted(p.name for p in folder.iterdir()) == [
        "autoencoder.safetensors",
        "calibration.json",
        "card.json",
        "val_images.txt",
    ]
    assert card["autoencoder_hash"] == autoencoder_hash(folder)
    assert (card["model"], card["base_version"]) == ("lite", encoder.version)
    n = 3 * len(PHOTOS)
    assert card["data"]["n_images"] == n and card["data"]["n_captions"] == 2 * n
    assert card["data"]["n_val_images"] == round(0.25 * n)
    assert len((folder / "val_images.txt").read_text().split()) == round(0.25 * n)
    # The history starts at the untrained autoencoder, which is the `sum` fusion.
    assert card["history"][0]["step"] == 0 and card["sum_val"]["image_r1"] > 0
    assert set(card["autoencoder_val"]) == {
        f"{q}_r{k}" for q in ("text", "image") for k in (1, 5, 10)
    }
    loaded = load_autoencoder(folder, base_version=encoder.version)
    assert loaded.dim == encoder.dim
    # Its own calibration, fitted on the held-out images' codes.
    assert card["calibration"].startswith("calibration.json: fitted on the 10 held-out")
    assert not loaded.calibration.is_identity
    assert loaded.calibration.affine(
        query_kind="text", item_kind="image", fusion="autoencoder"
    ) == (1.0, 0.0)
    with pytest.raises(BadRequest, match="trained on vectors of version"):
        load_autoencoder(folder, base_version="another")


def test_codes_are_unit_vectors_of_the_model_dimension(
    trained: Trained, encoder: Encoder, photos: dict[str, Path]
) -> None:
    import torch

    from mmq.encoders.autoencoder import load_autoencoder
    from mmq.fusion import fuse
    from mmq.services.vectors import item_vector, query_vector
    from mmq.training.autoencoder import PairAutoencoder

    ae = load_autoencoder(trained.folder, base_version=encoder.version)
    names = ["chelsea", "coffee", "rocket"]
    images = encoder.encode_images([Image.open(photos[n]).convert("RGB") for n in names])
    texts = encoder.encode_texts([PHOTOS[n] for n in names])
    for code in (
        ae.encode(image=images, text=texts),
        ae.encode(image=images, text=None),
        ae.encode(image=None, text=texts),
    ):
        assert code.shape == (3, encoder.dim) and code.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(code, axis=1), 1.0, atol=1e-6)
    one = ae.encode(image=images[0], text=texts[0])
    assert one.shape == (encoder.dim,)
    np.testing.assert_allclose(one, ae.encode(image=images, text=texts)[0], atol=1e-6)
    # Item and query vectors of an autoencoder collection are these codes.
    stored = item_vector(
        {"image": images, "text": texts}, collection_fusion="autoencoder", autoencoder=ae
    )
    np.testing.assert_allclose(stored, ae.encode(image=images, text=texts))
    query, scale = query_vector({"text": texts}, collection_fusion="autoencoder", autoencoder=ae)
    assert scale == 1.0
    np.testing.assert_allclose(query, ae.encode(image=None, text=texts))
    with pytest.raises(BadRequest, match="weights do not apply"):
        item_vector(
            {"image": images, "text": texts},
            collection_fusion="autoencoder",
            weights={"image": 0.3, "text": 0.7},
            autoencoder=ae,
        )
    with pytest.raises(BadRequest, match="cannot search a collection created with"):
        query_vector({"text": texts}, collection_fusion="autoencoder", method="sum", autoencoder=ae)
    # An untrained autoencoder (a zero residual) is the `sum` fusion, as served (numpy)
    # and as trained (torch).
    untrained = PairAutoencoder(encoder.dim, 16)
    np.testing.assert_allclose(
        untrained.shipped().encode(image=images, text=texts),
        fuse({"image": images, "text": texts}, method="sum"),
        atol=1e-6,
    )
    with torch.no_grad():
        torch_code = untrained.encode(torch.from_numpy(images), torch.zeros(3, encoder.dim))
    np.testing.assert_allclose(torch_code.numpy(), images, atol=1e-6)


def pair_items(photos: dict[str, Path]) -> list[IngestItem]:
    return [
        IngestItem(image_path=str(photos[n]), text=PHOTOS[n], external_id=n)
        for n in ("chelsea", "coffee", "rocket", "astronaut", "clock", "horse")
    ]


def test_a_collection_of_codes_answers_every_query_kind(
    client: Client, workers: Procs, photos: dict[str, Path], encoder: Encoder
) -> None:
    from mmq.encoders.autoencoder import autoencoder_hash
    from mmq.encoders.lite import SHIPPED_HEAD

    name = fresh("ae")
    job = client.ingest(pair_items(photos), collection=name, fusion="autoencoder")
    assert job.result(timeout=300).failed == 0
    # More items later, without naming the fusion: the collection's own is used.
    more = [IngestItem(text="a bowl of soup", external_id="soup")]
    assert client.ingest(more, collection=name).result(timeout=120).failed == 0

    found = client.search(collection=name, text="a cat lying on a blanket", k=3).result(60)
    assert found.hits[0].external_id == "chelsea"
    assert (
        found.model_version
        == f"{encoder.version}+ae-{autoencoder_hash(SHIPPED_HEAD / 'autoencoder')}"
    )
    found = client.search(collection=name, image=photos["rocket"], k=3).result(60)
    assert found.hits[0].external_id == "rocket" and found.hits[0].kind == "pair"
    composed = client.search(
        collection=name, image=photos["coffee"], text="a cup of coffee", k=3
    ).result(60)
    assert composed.hits[0].external_id == "coffee"
    assert all(-1.0 <= h.score <= 1.0 for h in composed.hits)
    with pytest.raises(BadRequest, match="cannot search a collection created with"):
        client.search(collection=name, text="a cat", fusion="sum").result(60)
    # Examples given by content are coded by the same autoencoder as the stored ones.
    for method in ("svm", "centroid"):
        liked = client.search(
            collection=name,
            positives=[{"text": "a cat lying on a blanket"}, "soup"],
            method=method,
            k=3,
        ).result(60)
        assert liked.hits[0].external_id == "chelsea", method
        assert "soup" not in [h.external_id for h in liked.hits]

    # The same pairs fused by `sum`: the encoder's version, not the codes'.
    plain = fresh("ae-sum")
    assert client.ingest(pair_items(photos), collection=plain).result(timeout=300).failed == 0
    summed = client.search(collection=plain, text="a cat lying on a blanket").result(60)
    assert summed.model_version == encoder.version != found.model_version


def test_a_worker_refuses_a_collection_of_another_autoencoder(
    trained: Trained,
    client: Client,
    workers: Procs,
    db_session: Session,
    settings: Settings,
    state_dir: Path,
    photos: dict[str, Path],
) -> None:
    from mmq import services
    from mmq.encoders.autoencoder import autoencoder_hash
    from mmq.encoders.lite import SHIPPED_HEAD, LiteEncoder
    from mmq.schemas import RawIngestRequest, SearchRequest

    # `lite` with the autoencoder trained above instead of the shipped one: the same model
    # name and towers, another autoencoder (what a release with a retrained one would be).
    other = LiteEncoder(device="cpu", cache_dir=state_dir / "cache", autoencoder_dir=trained.folder)
    name = fresh("ae-other")
    items = [i.model_dump(exclude_none=True) for i in pair_items(photos)]
    request = RawIngestRequest(collection=name, items=items, fusion="autoencoder")
    stored = services.ingest(encoder=other, session=db_session, request=request, settings=settings)
    assert stored.failed == 0
    hit = services.search(
        encoder=other,
        session=db_session,
        request=SearchRequest(collection=name, text="a tabby cat", k=1),
        settings=settings,
    )
    assert hit.hits[0].external_id == "chelsea"
    assert hit.model_version is not None
    assert hit.model_version.endswith(f"+ae-{trained.card['autoencoder_hash']}")
    # The workers serve `lite` with the shipped autoencoder: they refuse it, both ways.
    shipped = autoencoder_hash(SHIPPED_HEAD / "autoencoder")
    refusal = f"bound to model lite (version {hit.model_version}); this worker serves lite "
    refusal += f"(version {hit.model_version.split('+ae-')[0]}+ae-{shipped})"
    with pytest.raises(Conflict, match=re.escape(refusal)):
        client.search(collection=name, text="a tabby cat").result(timeout=60)
    result = client.ingest([IngestItem(text="hello")], collection=name).result(timeout=120)
    assert result.items[0].status == "failed"
    assert "bound to model lite" in (result.items[0].error or "")

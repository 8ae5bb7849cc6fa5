"""Ingest through the queue: idempotency, pairs and fusion, job status, bad input in a batch."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from mmq.client import Client
from mmq.schemas import IngestItem
from mmq.store.tables import Collection, Item
from tests.support.names import fresh
from tests.support.procs import Procs

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mmq.encoders import Encoder

pytestmark = pytest.mark.slow


def rows(db_session: Session, name: str) -> list[Item]:
    db_session.rollback()  # see the latest committed state
    cid = db_session.scalar(select(Collection.id).where(Collection.name == name))
    return list(db_session.scalars(select(Item).where(Item.collection_id == cid)))


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


def test_reingest_updates_in_place(
    client: Client, workers: Procs, photos: dict[str, Path], db_session: Session
) -> None:
    name = fresh("t")
    items = [IngestItem(image_path=str(photos["coffee"]), external_id="c", metadata={"v": 1})]
    first = client.ingest(items, collection=name).result(timeout=120)
    items = [IngestItem(image_path=str(photos["coffee"]), external_id="c", metadata={"v": 2})]
    second = client.ingest(items, collection=name).result(timeout=120)
    assert first.items[0].item_id == second.items[0].item_id
    stored = rows(db_session, name)
    assert len(stored) == 1 and stored[0].metadata_ == {"v": 2}
    assert stored[0].model == "lite" and stored[0].dim == 384
    assert "+head-" in stored[0].model_version  # the shipped head's hash is in the version


def test_content_hash_dedupes_without_external_id(
    client: Client, workers: Procs, db_session: Session
) -> None:
    name = fresh("t")
    items = [
        IngestItem(text="a red bicycle"),
        IngestItem(text="a red bicycle"),
        IngestItem(image_bytes=png_bytes((200, 0, 0))),
    ]
    client.ingest(items, collection=name).result(timeout=120)
    client.ingest(items, collection=name, chunk_size=1).result(timeout=120)
    assert len(rows(db_session, name)) == 2


def test_pairs_store_three_vectors(
    client: Client, workers: Procs, photos: dict[str, Path], db_session: Session
) -> None:
    name = fresh("t")
    item = IngestItem(image_path=str(photos["chelsea"]), text="a tabby cat", external_id="p")
    result = client.ingest([item], collection=name).result(timeout=120)
    assert result.items[0].status == "stored"
    (row,) = rows(db_session, name)
    assert row.kind == "pair" and row.text == "a tabby cat"
    image, text, fused = (np.asarray(v) for v in (row.image_vector, row.text_vector, row.vector))
    expected = (image + text) / np.linalg.norm(image + text)
    assert np.allclose(fused, expected, atol=1e-5)


def test_concat_collection_scores_weighted_cosines(
    client: Client, workers: Procs, photos: dict[str, Path], encoder: Encoder
) -> None:
    name = fresh("t")
    pair = IngestItem(image_path=str(photos["chelsea"]), text="a tabby cat", external_id="p")
    client.ingest([pair], collection=name, fusion="concat").result(timeout=120)
    hit = (
        client.search(
            collection=name,
            image=photos["coffee"],
            text="a cat",
            fusion="concat",
            weights={"image": 0.25, "text": 0.75},
        )
        .result(timeout=60)
        .hits[0]
    )
    qi = encoder.encode_images([Image.open(photos["coffee"])])[0]
    ii = encoder.encode_images([Image.open(photos["chelsea"])])[0]
    qt, it = encoder.encode_texts(["a cat", "a tabby cat"])
    assert hit.score == pytest.approx(0.25 * float(qi @ ii) + 0.75 * float(qt @ it), abs=2e-3)
    assert hit.kind == "pair"


def test_attention_collection_ingests_and_searches(
    client: Client, workers: Procs, photos: dict[str, Path], encoder: Encoder
) -> None:
    from mmq.fusion import fuse

    name = fresh("t")
    items = [
        IngestItem(image_path=str(photos["rocket"]), text="a rocket", external_id="r"),
        IngestItem(image_path=str(photos["coffee"]), text="a cup of coffee", external_id="c"),
    ]
    result = client.ingest(items, collection=name, fusion="attention").result(timeout=120)
    assert result.stored == 2, result.items
    hits = client.search(collection=name, text="a rocket", fusion="attention").result(60).hits
    assert [h.external_id for h in hits] == ["r", "c"]
    # The score is the cosine of the text query with the pair's attention-fused vector, on
    # the model's calibrated scale for text → pair (docs/models.md, "Scores across kinds").
    image = encoder.encode_images([Image.open(photos["rocket"])])[0]
    text = encoder.encode_texts(["a rocket"])[0]
    item = fuse({"image": image, "text": text}, method="attention")
    cosine = float(text @ item)
    expected = encoder.calibration.apply(
        cosine, query_kind="text", item_kind="pair", fusion="attention"
    )
    assert expected != pytest.approx(cosine, abs=0.01)  # calibrated: not the raw cosine
    assert hits[0].score == pytest.approx(expected, abs=2e-3)


def test_job_status_only_moves_forward_to_done(
    client: Client, workers: Procs, photos: dict[str, Path]
) -> None:
    job = client.ingest(
        [IngestItem(image_path=str(photos[n])) for n in ("moon", "coins", "brick")],
        collection=fresh("t"),
        chunk_size=1,
    )
    order = {"queued": 0, "running": 1, "done": 2}
    states: list[int] = []
    done: list[int] = []
    deadline = time.monotonic() + 120
    while not states or states[-1] != order["done"]:
        assert time.monotonic() < deadline, (states, done)
        status = job.status()
        assert status.state in order and status.total_tasks == 3, status  # never "failed"
        states.append(order[status.state])
        done.append(status.done_tasks)
        time.sleep(0.01)
    print(f"\nstates seen: {sorted(set(states))}, done tasks seen: {sorted(set(done))}")
    assert states == sorted(states) and done == sorted(done) and done[-1] == 3
    assert client.job(job.id).status() == status

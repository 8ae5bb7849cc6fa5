"""Ingest through the queue: idempotency, pairs and fusion, job status, bad input in a batch."""

from __future__ import annotations

import io
import uuid

import pytest
from PIL import Image
from sqlalchemy import select

from mmq.schemas import IngestItem
from mmq.store.tables import Collection, Item

pytestmark = pytest.mark.slow


def fresh() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def rows(db_session, name: str) -> list[Item]:  # type: ignore[no-untyped-def]
    db_session.rollback()  # see the latest committed state
    cid = db_session.scalar(select(Collection.id).where(Collection.name == name))
    return list(db_session.scalars(select(Item).where(Item.collection_id == cid)))


def png_bytes(color: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), color).save(buf, format="PNG")
    return buf.getvalue()


def test_reingest_updates_in_place(client, workers, photos, db_session) -> None:  # type: ignore[no-untyped-def]
    name = fresh()
    items = [IngestItem(image_path=str(photos["coffee"]), external_id="c", metadata={"v": 1})]
    first = client.ingest(items, collection=name).result(timeout=120)
    items = [IngestItem(image_path=str(photos["coffee"]), external_id="c", metadata={"v": 2})]
    second = client.ingest(items, collection=name).result(timeout=120)
    assert first.items[0].item_id == second.items[0].item_id
    stored = rows(db_session, name)
    assert len(stored) == 1 and stored[0].metadata_ == {"v": 2}
    assert stored[0].model == "lite" and stored[0].dim == 384
    assert "+head-" in stored[0].model_version  # the shipped head's hash is in the version


def test_content_hash_dedupes_without_external_id(client, workers, db_session) -> None:  # type: ignore[no-untyped-def]
    name = fresh()
    items = [
        IngestItem(text="a red bicycle"),
        IngestItem(text="a red bicycle"),
        IngestItem(image_bytes=png_bytes((200, 0, 0))),
    ]
    client.ingest(items, collection=name).result(timeout=120)
    client.ingest(items, collection=name, chunk_size=1).result(timeout=120)
    assert len(rows(db_session, name)) == 2


def test_pairs_store_three_vectors(client, workers, photos, db_session) -> None:  # type: ignore[no-untyped-def]
    name = fresh()
    item = IngestItem(image_path=str(photos["chelsea"]), text="a tabby cat", external_id="p")
    result = client.ingest([item], collection=name).result(timeout=120)
    assert result.items[0].status == "stored"
    (row,) = rows(db_session, name)
    assert row.kind == "pair" and row.text == "a tabby cat"
    import numpy as np

    image, text, fused = (np.asarray(v) for v in (row.image_vector, row.text_vector, row.vector))
    expected = (image + text) / np.linalg.norm(image + text)
    assert np.allclose(fused, expected, atol=1e-5)


def test_concat_collection_scores_weighted_cosines(client, workers, photos, encoder) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    name = fresh()
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
    np.testing.assert_equal(hit.kind, "pair")


def test_attention_collection_ingests_and_searches(client, workers, photos) -> None:  # type: ignore[no-untyped-def]
    name = fresh()
    pair = IngestItem(image_path=str(photos["rocket"]), text="a rocket", external_id="r")
    client.ingest([pair], collection=name, fusion="attention").result(timeout=120)
    hits = client.search(collection=name, text="a rocket", fusion="attention").result(60).hits
    assert hits[0].external_id == "r"


def test_job_status_goes_queued_to_done(client, workers, photos) -> None:  # type: ignore[no-untyped-def]
    job = client.ingest(
        [IngestItem(image_path=str(photos[n])) for n in ("moon", "coins", "brick")],
        collection=fresh(),
        chunk_size=1,
    )
    assert job.status().state in ("queued", "running", "done")
    assert job.status().total_tasks == 3
    job.result(timeout=120)
    status = client.job(job.id).status()
    assert status.state == "done" and status.done_tasks == 3

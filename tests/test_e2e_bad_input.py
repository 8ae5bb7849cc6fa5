"""Bad input fails its own item (or job) with a clear message; the rest is stored."""

from __future__ import annotations

import io
import uuid
from pathlib import Path

import pytest
from PIL import Image

from mmq.errors import Conflict
from mmq.schemas import IngestItem

pytestmark = pytest.mark.slow


def jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (10, 120, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def test_bad_items_fail_alone_and_the_worker_lives_on(
    client, workers, photos, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is a text file with a .jpg name")
    good = jpeg_bytes()
    cases = {
        "truncated": IngestItem(image_bytes=good[: len(good) // 2], external_id="truncated"),
        "corrupt": IngestItem(image_bytes=b"\xff\xd8\xff" + b"\x00" * 500, external_id="corrupt"),
        "not-an-image": IngestItem(image_path=str(not_an_image), external_id="not-an-image"),
        "missing": IngestItem(image_path=str(tmp_path / "nope.png"), external_id="missing"),
        "empty-text": IngestItem(text="   ", external_id="empty-text"),
        "empty-bytes": IngestItem(image_bytes=b"", external_id="empty-bytes"),
    }
    good_items = [
        IngestItem(image_path=str(photos["horse"]), external_id="good-image"),
        IngestItem(text="a horse", external_id="good-text"),
        IngestItem(image_bytes=good, external_id="good-bytes"),
    ]
    items = list(cases.values())[:4] + good_items + list(cases.values())[4:]
    result = client.ingest(items, collection=f"bad-{uuid.uuid4().hex[:8]}").result(timeout=120)
    by_id = {r.external_id: r for r in result.items}
    assert [r.index for r in result.items] == list(range(len(items)))
    expected = {
        "truncated": "corrupt or truncated image",
        "corrupt": "not a supported image",
        "not-an-image": "not a supported image",
        "missing": "no such image file",
        "empty-text": "text is empty",
        "empty-bytes": "image is empty",
    }
    for key, message in expected.items():
        assert by_id[key].status == "failed", key
        assert message in (by_id[key].error or ""), (key, by_id[key].error)
    for key in ("good-image", "good-text", "good-bytes"):
        assert by_id[key].status == "stored", by_id[key]
    assert all(p.poll() is None for p in workers)
    after = client.search(collection=result.collection, text="a horse", k=1).result(60)
    assert after.hits[0].external_id == "good-text"


def test_malformed_items_in_a_raw_message_fail_alone(client, workers) -> None:  # type: ignore[no-untyped-def]
    # Another producer (not mmq.Client) may send anything; each item is judged on its own.
    from mmq.broker import INGEST_TASK

    payload = {
        "collection": f"raw-{uuid.uuid4().hex[:8]}",
        "items": [
            {"text": "fine", "external_id": "fine"},
            {"text": "nan", "external_id": "nan", "metadata": {"x": float("nan")}},
            {"external_id": "nothing"},
            {"text": "x", "external_id": "extra", "unexpected": 1},
            "not even an object",
            {"text": 12, "external_id": "not-a-string"},
        ],
    }
    result = client.app.send_task(INGEST_TASK, args=[payload], queue="ingest").get(timeout=120)
    status = {r["index"]: (r["status"], r["error"]) for r in result["items"]}
    assert status[0] == ("stored", None)
    assert "metadata is not valid JSON" in status[1][1], status
    assert "needs an image, a text, both, or a video" in status[2][1]
    assert "unexpected" in status[3][1]
    assert status[4][0] == "failed" and status[5][0] == "failed"


def test_collection_bound_to_another_model_fails_the_job(client, workers, db_session) -> None:  # type: ignore[no-untyped-def]
    from mmq.store import repository

    name = f"other-{uuid.uuid4().hex[:8]}"
    repository.ensure_collection(
        session=db_session,
        name=name,
        model="clip:some/model",
        model_version="x",
        dim=512,
        fusion="sum",
    )
    db_session.commit()
    result = client.ingest([IngestItem(text="hello")], collection=name).result(timeout=120)
    assert result.items[0].status == "failed"
    assert "bound to model clip:some/model" in (result.items[0].error or "")
    with pytest.raises(Conflict, match="bound to model clip:some/model"):
        client.search(collection=name, text="x").result(timeout=60)


def test_invalid_requests_are_refused_before_enqueueing(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="collection"):
        client.ingest([IngestItem(text="x")], collection="bad name; DROP TABLE items")
    with pytest.raises(ValueError):
        client.search(collection="c")  # no query at all
    with pytest.raises(ValueError, match="metadata is not valid JSON"):
        IngestItem(text="x", metadata={"x": float("inf")})

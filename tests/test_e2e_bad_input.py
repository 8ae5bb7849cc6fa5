"""Bad input fails its own item (or job) with a clear message; the rest is stored. An invalid
request is refused by the Client before anything is written or sent."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from sqlalchemy.orm import Session

from mmq.client import Client
from mmq.embedded import Urls
from mmq.errors import BadRequest, Conflict
from mmq.jobs.records import psycopg_url
from mmq.schemas import IngestItem
from tests.support.images import solid
from tests.support.names import fresh
from tests.support.procs import Procs, all_alive

pytestmark = pytest.mark.slow


def test_bad_items_fail_alone_and_the_worker_lives_on(
    client: Client, workers: Procs, photos: dict[str, Path], tmp_path: Path
) -> None:
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("this is a text file with a .jpg name")
    good = solid((10, 120, 200), (320, 240), "JPEG")
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
    result = client.ingest(items, collection=fresh("bad")).result(timeout=120)
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
        assert (by_id[key].status, by_id[key].error) == ("stored", None), by_id[key]
    assert (result.stored, result.failed) == (3, 6)
    assert all_alive(workers)
    # Stored and searchable (the query is the stored text itself: it wins by construction).
    after = client.search(collection=result.collection, text="a horse", k=1).result(60)
    assert after.hits[0].external_id == "good-text"


def test_malformed_items_in_a_raw_message_fail_alone(client: Client, workers: Procs) -> None:
    # Another producer (not mmq.Client) may send anything; each item is judged on its own.
    from mmq.broker import INGEST_TASK

    payload = {
        "collection": fresh("raw"),
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
    assert sorted(status) == list(range(6))
    assert status[0] == ("stored", None)
    assert all(state == "failed" for state, _ in list(status.values())[1:]), status
    assert "metadata is not valid JSON" in status[1][1], status
    assert "needs an image, a text, both, or a video" in status[2][1]
    assert "unexpected" in status[3][1]
    assert "invalid item" in status[4][1], status  # as the hostile table expects
    assert "text" in status[5][1] and "valid string" in status[5][1], status


def test_collection_bound_to_another_model_fails_the_job(
    client: Client, workers: Procs, db_session: Session
) -> None:
    from mmq.store import repository

    name = fresh("other")
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


def jobs_written(urls: Urls) -> int:
    with psycopg.connect(psycopg_url(urls.database_url), autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM ingest_jobs").fetchone()
    assert row is not None
    return int(row[0])


def no_sending(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"sent: {args[:1]}")


def test_invalid_requests_are_refused_before_enqueueing(
    client: Client, urls: Urls, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = jobs_written(urls)
    monkeypatch.setattr(client.app, "send_task", no_sending)  # sending anything fails the test
    with pytest.raises(BadRequest, match="item 1"):
        client.ingest([{"text": "x"}, {"text": "x", "unexpected": 1}], collection="c")
    with pytest.raises(BadRequest, match="nothing to ingest"):
        client.ingest([], collection="c")
    with pytest.raises(BadRequest, match="invalid search"):
        client.search(collection="c")  # no query at all
    with pytest.raises(BadRequest, match="invalid search"):
        client.search(collection="c", text="x", k=0)
    assert jobs_written(urls) == before  # nothing written either


def test_an_invalid_collection_name_is_refused_before_enqueueing(
    client: Client, urls: Urls, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = jobs_written(urls)
    monkeypatch.setattr(client.app, "send_task", no_sending)
    with pytest.raises(BadRequest, match="collection"):
        client.ingest([IngestItem(text="x")], collection="bad name; DROP TABLE items")
    with pytest.raises(BadRequest, match="collection"):
        client.search(collection="bad name; DROP TABLE items", text="x")
    assert jobs_written(urls) == before

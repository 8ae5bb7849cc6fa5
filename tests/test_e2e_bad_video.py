"""Bad videos fail their own item with a clear message; the worker lives on and the rest of
the batch (in the same job, and in the same task) is stored."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mmq.client import Client
from mmq.schemas import IngestItem
from tests.support.names import fresh
from tests.support.procs import Procs, all_alive
from tests.support.videos import huge_frame_video, video_bytes, video_with_times

pytestmark = pytest.mark.slow

EXPECTED = {
    "truncated": "not a readable video",
    "truncated-faststart": "truncated or corrupt video",
    "text-named-mp4": "not a readable video",
    "zero-length": "video is empty",
    "absurd-duration": "declares a duration of 50001 s, the limit is 7200 s",
    "over-8k": "the limit is 33177600 pixels",
    "missing": "no such video file",
}


@pytest.fixture(scope="module")
def bad_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, IngestItem]:
    folder = tmp_path_factory.mktemp("bad-videos")
    good = video_bytes(seconds=3)
    faststart = video_bytes(seconds=3, faststart=True)
    files = {
        "truncated": good[: len(good) // 2],
        "truncated-faststart": faststart[: len(faststart) // 2],
        "text-named-mp4": b"this is a text file with an .mp4 name\n",
        "zero-length": b"",
        "absurd-duration": video_with_times([0.0, 1.0, 50_000.0]),
        "over-8k": huge_frame_video(),
    }
    items = {}
    for name, data in files.items():
        path = folder / f"{name}.mp4"
        path.write_bytes(data)
        items[name] = IngestItem(video_path=str(path), external_id=name)
    items["missing"] = IngestItem(video_path=str(folder / "nope.mp4"), external_id="missing")
    return items


def test_bad_videos_fail_alone_and_the_worker_lives_on(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    bad_videos: dict[str, IngestItem],
    tmp_path: Path,
) -> None:
    good_video = tmp_path / "good.mp4"
    good_video.write_bytes(video_bytes(seconds=4, size=(160, 120)))
    items = [
        *bad_videos.values(),
        IngestItem(video_path=str(good_video), external_id="good-video"),
        IngestItem(image_path=str(photos["horse"]), external_id="good-image"),
        IngestItem(text="a horse", external_id="good-text"),
    ]
    result = client.ingest(items, collection=fresh("badv")).result(timeout=300)
    by_id = {r.external_id: r for r in result.items}
    for key, message in EXPECTED.items():
        assert by_id[key].status == "failed", key
        assert message in (by_id[key].error or ""), (key, by_id[key].error)
    for key in ("good-video", "good-image", "good-text"):
        assert (by_id[key].status, by_id[key].error) == ("stored", None), by_id[key]
    assert by_id["good-video"].segments and by_id["good-video"].duration_s == pytest.approx(4.0)
    assert all_alive(workers)
    hit = client.search(collection=result.collection, text="x", targets=["video"]).result(60)
    assert [h.external_id for h in hit.hits] == ["good-video"]


def test_bad_videos_in_one_task_fail_alone(
    client: Client, workers: Procs, bad_videos: dict[str, IngestItem]
) -> None:
    # A producer other than mmq.Client may put several videos in one message.
    from mmq.broker import INGEST_TASK

    good = base64.b64encode(video_bytes(seconds=2)).decode()
    items = [
        {"video_bytes": good, "external_id": "good-1"},
        *(item.model_dump(mode="json") for item in bad_videos.values()),
        {"video_bytes": good, "external_id": "good-2"},
        {"video_bytes": good, "text": "a caption", "external_id": "video-with-text"},
    ]
    payload = {"collection": fresh("badv-raw"), "items": items}
    result = client.app.send_task(INGEST_TASK, args=[payload], queue="ingest").get(timeout=300)
    status = {r["external_id"]: (r["status"], r["error"]) for r in result["items"]}
    assert status["good-1"] == ("stored", None) and status["good-2"] == ("stored", None)
    for key, message in EXPECTED.items():
        assert status[key][0] == "failed" and message in status[key][1], (key, status[key])
    assert status["video-with-text"][0] == "failed"
    assert "a video item carries no text" in status["video-with-text"][1]
    assert len(status) == len(items)
    assert all_alive(workers)

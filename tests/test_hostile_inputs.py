"""Hostile input, as a table: each kind ends as the table says (refused with a clear message,
or handled), the worker lives on, the good items of the same task are stored, and the
worker's peak memory while it works through the table stays under the default
MMQ_MAX_WORKER_MEMORY_MB (docs/reliability.md gives both the counts and the peak).

The items travel in one raw message (a producer other than mmq.Client), so even what the
Client would refuse before enqueueing reaches the worker. The sizes of the tables are
checked without a server in tests/test_media.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mmq.broker import INGEST_QUEUE, INGEST_TASK, SEARCH_QUEUE, SEARCH_TASK
from mmq.client import Client, IngestJob, SearchJob
from mmq.config import Settings
from mmq.errors import BadRequest, MmqError, NotFound
from mmq.schemas import IngestResult
from tests.support.images import (
    animated,
    cmyk_jpeg,
    encode,
    exif_rotated_jpeg,
    gif_header_only,
    jpeg_with_zip_appended,
    noise,
    palette_png_with_transparency,
    png_header_only,
    rgba_png,
    sixteen_bit_png,
)
from tests.support.names import fresh
from tests.support.procs import (
    Procs,
    all_alive,
    peak_memory_mb,
    reset_peak_memory,
    resident_memory_mb,
)
from tests.support.videos import video_bytes, video_with_times

pytestmark = pytest.mark.slow

STORED = "stored"
Case = tuple[str, object, str]  # (kind, raw item, STORED or a piece of the item's error)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def image(data: bytes, **extra: object) -> dict[str, object]:
    return {"image_bytes": b64(data), **extra}


def files(folder: Path) -> dict[str, str]:
    """Hostile files under an ingest root, and paths that lead out of it."""
    made = {
        "zero-byte.jpg": b"",
        "text-named.jpg": b"just some text, named like a photo\n",
        "broken.mp4": half(video_bytes(seconds=2)),
        "absurd-duration.mp4": video_with_times([0.0, 1.0, 50_000.0]),
    }
    for name, data in made.items():
        (folder / name).write_bytes(data)
    (folder / "link-out.jpg").symlink_to("/etc/hostname")
    (folder / "a-directory.jpg").mkdir()
    paths = {name: str(folder / name) for name in [*made, "link-out.jpg", "a-directory.jpg"]}
    paths["dot-dot"] = str(folder / ".." / ".." / ".." / ".." / "etc" / "passwd")
    return paths


def table(paths: dict[str, str]) -> list[Case]:
    """(kind, raw item, expected: STORED or a piece of the item's error message)."""
    truncated = "corrupt or truncated image"
    too_big = "image exceeds the pixel limit"
    unsupported = "not a supported image"
    outside = "outside the worker's ingest roots"
    return [
        ("truncated JPEG", image(half(encode(noise(64, 64), "JPEG"))), truncated),
        ("truncated PNG", image(half(encode(noise(64, 64), "PNG"))), truncated),
        ("truncated WebP", image(half(encode(noise(64, 64), "WEBP"))), truncated),
        ("PNG claiming 50,000 x 50,000", image(png_header_only(50_000, 50_000)), too_big),
        ("GIF claiming 50,000 x 50,000", image(gif_header_only(50_000, 50_000)), too_big),
        ("zero-byte file", {"image_path": paths["zero-byte.jpg"]}, "image is empty"),
        ("zero bytes inline", {"image_bytes": ""}, "image is empty"),
        ("text file named .jpg", {"image_path": paths["text-named.jpg"]}, unsupported),
        ("SVG", image(b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'), unsupported),
        ("PDF", image(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), unsupported),
        ("GIF/JavaScript polyglot", image(b"GIF89a/*\x00\x00*/=alert(1)//;"), unsupported),
        ("JPEG with a ZIP appended (polyglot)", image(jpeg_with_zip_appended()), STORED),
        ("CMYK JPEG", image(cmyk_jpeg()), STORED),
        ("16-bit PNG", image(sixteen_bit_png()), STORED),
        ("palette PNG with transparency", image(palette_png_with_transparency()), STORED),
        ("RGBA PNG", image(rgba_png()), STORED),
        ("EXIF-rotated JPEG", image(exif_rotated_jpeg()), STORED),
        ("animated GIF (first frame)", image(animated("GIF")), STORED),
        ("animated WebP (first frame)", image(animated("WEBP")), STORED),
        ("broken mp4", {"video_path": paths["broken.mp4"]}, "not a readable video"),
        (
            "mp4 declaring 50,000 s",
            {"video_path": paths["absurd-duration.mp4"]},
            "declares a duration of 50001 s",
        ),
        ("1 MB text", {"text": "word " * 200_000}, "the limit is 20000"),
        ("invalid UTF-8 (surrogate-escaped)", {"text": "caf\udcc3\udca9 menu"}, STORED),
        ("control characters in text", {"text": "\x00\x07bell\x1b[31m red\u202e"}, STORED),
        ("only control characters", {"text": "\x00\x01\x02"}, "text is empty"),
        ("NaN in metadata", {"text": "x", "metadata": {"v": float("nan")}}, "not valid JSON"),
        ("Infinity in metadata", {"text": "x", "metadata": {"v": float("inf")}}, "not valid JSON"),
        ("NUL in metadata", {"text": "x", "metadata": {"k\x00": "v"}}, "NUL character"),
        ("SQL in metadata", {"text": "x", "metadata": {"q": "'); DROP TABLE items;--"}}, STORED),
        ("200 KB metadata", {"text": "x", "metadata": {"k": "v" * 200_000}}, "the limit is 65536"),
        ("SQL in external_id", {"text": "x", "external_id": "x' OR '1'='1"}, STORED),
        (
            "10,000-character external_id",
            {"text": "x", "external_id": "e" * 10_000},
            "at most 512 characters",
        ),
        (
            "control characters in external_id",
            {"text": "x", "external_id": "a\nb"},
            "contains control",
        ),
        (
            "invalid UTF-8 in external_id",
            {"text": "x", "external_id": "caf\udcc3"},
            "as a unicode string",
        ),
        (
            "invalid UTF-8 in metadata",
            {"text": "x", "metadata": {"k": "\udcff"}},
            "unpaired surrogate",
        ),
        ("path with ../ out of the roots", {"image_path": paths["dot-dot"]}, outside),
        ("absolute path out of the roots", {"image_path": "/etc/passwd"}, outside),
        ("symlink out of the roots", {"image_path": paths["link-out.jpg"]}, outside),
        ("video path out of the roots", {"video_path": "/etc/passwd"}, outside),
        ("a directory", {"image_path": paths["a-directory.jpg"]}, "no such image file"),
        ("not base64", {"image_bytes": "%%% not base64 %%%"}, "valid base64"),
        ("unknown field", {"text": "x", "run": "rm -rf /"}, "Extra inputs"),
        ("not an object", "DROP TABLE items", "invalid item"),
        ("image and video at once", {"image_path": "a.jpg", "video_path": "b.mp4"}, "give one of"),
    ]


# (kind, request fields over {"collection": "photos", "text": "x"}, error kind, message)
SEARCH_CASES: list[tuple[str, dict[str, Any], type[MmqError], str]] = [
    ("SQL in a collection name", {"collection": "x'; DROP TABLE items;--"}, BadRequest, "pattern"),
    ("1,000-character collection name", {"collection": "c" * 1000}, BadRequest, "pattern"),
    ("control characters in a collection name", {"collection": "a\x00b"}, BadRequest, "pattern"),
    ("unknown collection", {"collection": "no-such-collection"}, NotFound, "unknown collection"),
    ("NUL in a filter", {"filter": {"k": "\x00"}}, BadRequest, "NUL"),
    ("300 KB filter", {"filter": {"k": "v" * 300_000}}, BadRequest, "the limit is 65536"),
    ("NaN in a query vector", {"vector": [float("nan")] * 384, "text": None}, BadRequest, "NaN"),
]


class Outcome(NamedTuple):
    cases: list[Case]
    result: IngestResult
    peak_mb: float  # the ingest worker's peak resident memory while it worked on the table
    added_mb: float  # that peak above its resident memory before the table


@pytest.fixture(scope="module")
def outcome(client: Client, workers: Procs, tmp_path_factory: pytest.TempPathFactory) -> Outcome:
    folder = tmp_path_factory.mktemp("hostile")
    cases = table(files(folder))
    good = encode(noise(48, 48), "PNG")
    items: list[object] = [image(good, external_id="good-first")]
    items += [case[1] for case in cases]
    items += [{"text": "a good caption", "external_id": "good-last"}]
    ingest_pid = workers[0].pid  # running_workers: the ingest worker first
    reset_peak_memory(ingest_pid)  # the peak from here on: the table's, not the session's
    before_mb = resident_memory_mb(ingest_pid)
    sent = client.app.send_task(
        INGEST_TASK, args=[{"collection": fresh("hostile"), "items": items}], queue=INGEST_QUEUE
    )
    sent.get(timeout=300)  # the worker made it a job in PostgreSQL; read it from there
    peak_mb = peak_memory_mb(ingest_pid)
    job = client.job(str(sent.id))
    assert isinstance(job, IngestJob)
    return Outcome(cases, job.result(timeout=10), peak_mb, peak_mb - before_mb)


def test_each_kind_ends_as_the_table_says(outcome: Outcome) -> None:
    cases, result, _, _ = outcome
    assert len(result.items) == len(cases) + 2
    ended = {}
    for (kind, _, expected), item in zip(cases, result.items[1:-1], strict=True):
        if expected == STORED:
            ended[kind] = (item.status, item.error) == ("stored", None)
        else:
            ended[kind] = item.status == "failed" and expected in (item.error or "")
    wrong = {
        kind: (item.status, item.error)
        for (kind, _, _), item in zip(cases, result.items[1:-1], strict=True)
        if not ended[kind]
    }
    assert not wrong


def test_the_good_items_of_the_same_task_are_stored(outcome: Outcome) -> None:
    _, result, _, _ = outcome
    assert result.items[0].status == result.items[-1].status == "stored"


def test_the_worker_lives_on_within_its_memory_bound(
    outcome: Outcome, client: Client, workers: Procs, settings: Settings
) -> None:
    if settings.worker_pool != "threads":
        pytest.skip("the figure is the threads pool's, where the worker's process does the work")
    _, result, peak_mb, added_mb = outcome
    assert all_alive(workers)
    hits = client.search(collection=result.collection, text="a good caption", k=1).result(60)
    assert hits.hits[0].external_id == "good-last"  # stored, and searchable
    print(f"\ningest worker peak memory (VmHWM) while on the hostile table: {peak_mb:.0f} MB")
    print(f"of which the table added {added_mb:.0f} MB")
    # docs/reliability.md: 1,330 MB < 4,096 MB (MMQ_MAX_WORKER_MEMORY_MB's default)
    assert Settings.model_fields["max_worker_memory_mb"].default == 4096
    assert peak_mb < 4096
    # What the table itself costs, not the worker's size: that depends on what the session
    # ran before (allocators keep freed memory), the model being most of it. Alone, the
    # peak was 1,320 to 1,337 MB on the 2-vCPU dev machine; the table's share is bounded
    # by the input limits (a 64-megapixel image decoded once at a time).
    assert added_mb < 512  # 152 MB alone


@pytest.mark.parametrize(
    ("kind", "request_", "error", "message"),
    [pytest.param(*case, id=case[0]) for case in SEARCH_CASES],
)
def test_hostile_searches_fail_with_a_clear_message(
    client: Client,
    workers: Procs,
    kind: str,
    request_: dict[str, Any],
    error: type[MmqError],
    message: str,
) -> None:
    payload = {"collection": "photos", "text": "x", **request_}
    sent = client.app.send_task(SEARCH_TASK, args=[payload], queue=SEARCH_QUEUE)
    job = SearchJob(str(sent.id), client.app)
    with pytest.raises(error, match=message):
        job.result(timeout=60)
    assert job.status().error_kind == error.kind
    assert all_alive(workers)


def test_sql_in_a_filter_is_only_data(client: Client, workers: Procs, outcome: Outcome) -> None:
    _, result, _, _ = outcome
    job = client.search(
        collection=result.collection,
        text="x",
        filter={"q": "'); DROP TABLE items;--", "x' OR '1'='1": "1"},
    )
    assert job.result(timeout=60).hits == []
    hits = client.search(
        collection=result.collection, text="x", filter={"q": "'); DROP TABLE items;--"}
    ).result(timeout=60)
    # the item whose metadata held it, and the table is still there
    assert [h.metadata for h in hits.hits] == [{"q": "'); DROP TABLE items;--"}]

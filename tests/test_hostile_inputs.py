"""Hostile input, as a table: each kind ends as the table says (refused with a clear message,
or handled), the worker lives on, the good items of the same task are stored, and the
worker's peak memory stays under Settings.max_worker_memory_mb.

The items travel in one raw message (a producer other than mmq.Client), so even what the
Client would refuse before enqueueing reaches the worker.
"""

from __future__ import annotations

import base64
import io
import os
import uuid
from pathlib import Path

import pytest
from PIL import Image

from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.client import SearchJob
from mmq.errors import BadRequest, MmqError, NotFound
from tests.support.images import (
    cmyk_jpeg,
    encode,
    gif_header_only,
    noise,
    palette_png_with_transparency,
    png_header_only,
    rgba_png,
)
from tests.support.videos import video_bytes, video_with_times

pytestmark = pytest.mark.slow

STORED = "stored"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def image(data: bytes, **extra: object) -> dict[str, object]:
    return {"image_bytes": b64(data), **extra}


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(Image.new("RGB", (40, 20), (200, 30, 30)), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    return encode(Image.new("I;16", (32, 16), 40000), "PNG")


def animated(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


def jpeg_with_zip_appended() -> bytes:
    import zipfile

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("payload.sh", "echo pwned\n")
    return encode(noise(32, 32), "JPEG") + archive.getvalue()


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


def table(paths: dict[str, str]) -> list[tuple[str, object, str]]:
    """(kind, raw item, expected: STORED or a piece of the item's error message)."""
    truncated = "corrupt or truncated image"
    too_big = "pixel"
    unsupported = "not a supported image"
    outside = "outside the ingest roots"
    return [
        ("truncated JPEG", image(half(encode(noise(64, 64), "JPEG"))), truncated),
        ("truncated PNG", image(half(encode(noise(64, 64), "PNG"))), truncated),
        ("truncated WebP", image(half(encode(noise(64, 64), "WEBP"))), truncated),
        ("PNG claiming 50,000 x 50,000", image(png_header_only(50_000, 50_000)), too_big),
        ("GIF claiming 50,000 x 50,000", image(gif_header_only(50_000, 50_000)), too_big),
        ("zero-byte file", {"image_path": paths["zero-byte.jpg"]}, "empty"),
        ("zero bytes inline", {"image_bytes": ""}, "empty"),
        ("text file named .jpg", {"image_path": paths["text-named.jpg"]}, unsupported),
        ("SVG", image(b'<svg xmlns="http://www.w3.org/2000/svg"><script/></svg>'), unsupported),
        ("PDF", image(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), unsupported),
        ("GIF/JavaScript polyglot", image(b"GIF89a/*\x00\x00*/=alert(1)//;"), "image"),
        ("JPEG with a ZIP appended (polyglot)", image(jpeg_with_zip_appended()), STORED),
        ("CMYK JPEG", image(cmyk_jpeg()), STORED),
        ("16-bit PNG", image(sixteen_bit_png()), STORED),
        ("palette PNG with transparency", image(palette_png_with_transparency()), STORED),
        ("RGBA PNG", image(rgba_png()), STORED),
        ("EXIF-rotated JPEG", image(exif_rotated_jpeg()), STORED),
        ("animated GIF (first frame)", image(animated("GIF")), STORED),
        ("animated WebP (first frame)", image(animated("WEBP")), STORED),
        ("broken mp4", {"video_path": paths["broken.mp4"]}, "video"),
        ("mp4 declaring 50,000 s", {"video_path": paths["absurd-duration.mp4"]}, "duration"),
        ("1 MB text", {"text": "word " * 200_000}, "the limit is 20000"),
        ("invalid UTF-8 (surrogate-escaped)", {"text": "caf\udcc3\udca9 menu"}, STORED),
        ("control characters in text", {"text": "\x00\x07bell\x1b[31m red\u202e"}, STORED),
        ("only control characters", {"text": "\x00\x01\x02"}, "text is empty"),
        ("NaN in metadata", {"text": "x", "metadata": {"v": float("nan")}}, "not valid JSON"),
        ("Infinity in metadata", {"text": "x", "metadata": {"v": float("inf")}}, "not valid JSON"),
        ("NUL in metadata", {"text": "x", "metadata": {"k\x00": "v"}}, "NUL character"),
        ("SQL in metadata", {"text": "x", "metadata": {"q": "'); DROP TABLE items;--"}}, STORED),
        ("200 KB metadata", {"text": "x", "metadata": {"k": "v" * 200_000}}, "the limit is"),
        ("SQL in external_id", {"text": "x", "external_id": "x' OR '1'='1"}, STORED),
        ("10,000-character external_id", {"text": "x", "external_id": "e" * 10_000}, "512"),
        ("control characters in external_id", {"text": "x", "external_id": "a\nb"}, "control"),
        ("invalid UTF-8 in external_id", {"text": "x", "external_id": "caf\udcc3"}, "unicode"),
        ("invalid UTF-8 in metadata", {"text": "x", "metadata": {"k": "\udcff"}}, "surrogate"),
        ("path with ../ out of the roots", {"image_path": paths["dot-dot"]}, outside),
        ("absolute path out of the roots", {"image_path": "/etc/passwd"}, outside),
        ("symlink out of the roots", {"image_path": paths["link-out.jpg"]}, outside),
        ("video path out of the roots", {"video_path": "/etc/passwd"}, outside),
        ("a directory", {"image_path": paths["a-directory.jpg"]}, "no such image file"),
        ("not base64", {"image_bytes": "%%% not base64 %%%"}, "base64"),
        ("unknown field", {"text": "x", "run": "rm -rf /"}, "Extra inputs"),
        ("not an object", "DROP TABLE items", "invalid item"),
        ("image and video at once", {"image_path": "a.jpg", "video_path": "b.mp4"}, "give one"),
    ]


@pytest.fixture(scope="module")
def outcome(client, workers, tmp_path_factory):  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("hostile")
    cases = table(files(folder))
    good = encode(noise(48, 48), "PNG")
    items: list[object] = [image(good, external_id="good-first")]
    items += [case[1] for case in cases]
    items += [{"text": "a good caption", "external_id": "good-last"}]
    collection = f"hostile-{uuid.uuid4().hex[:8]}"
    sent = client.app.send_task(
        INGEST_TASK, args=[{"collection": collection, "items": items}], queue=INGEST_QUEUE
    )
    sent.get(timeout=300)  # the worker made it a job in PostgreSQL; read it from there
    result = client.job(str(sent.id)).result(timeout=10)
    return cases, result


def test_there_are_at_least_30_kinds(outcome) -> None:  # type: ignore[no-untyped-def]
    cases, _ = outcome
    assert len({kind for kind, _, _ in cases}) >= 30


def test_each_kind_ends_as_the_table_says(outcome) -> None:  # type: ignore[no-untyped-def]
    cases, result = outcome
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


def test_the_good_items_of_the_same_task_are_stored(outcome) -> None:  # type: ignore[no-untyped-def]
    _, result = outcome
    assert result.items[0].status == result.items[-1].status == "stored"


def test_the_worker_lives_on_within_its_memory_bound(outcome, client, workers, settings) -> None:  # type: ignore[no-untyped-def]
    _, result = outcome
    assert all(p.poll() is None for p in workers)
    hits = client.search(collection=result.collection, text="a good caption", k=1).result(60)
    assert hits.hits[0].external_id == "good-last"
    peak_mb = peak_memory_mb(workers[0].pid)
    print(f"ingest worker peak memory (VmHWM) after the hostile table: {peak_mb:.0f} MB")
    assert peak_mb < settings.max_worker_memory_mb


def peak_memory_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize(
    ("kind", "request_", "error", "message"),
    [
        (
            "SQL in a collection name",
            {"collection": "x'; DROP TABLE items;--"},
            BadRequest,
            "pattern",
        ),
        ("1,000-character collection name", {"collection": "c" * 1000}, BadRequest, "pattern"),
        (
            "control characters in a collection name",
            {"collection": "a\x00b"},
            BadRequest,
            "pattern",
        ),
        (
            "unknown collection",
            {"collection": "no-such-collection"},
            NotFound,
            "unknown collection",
        ),
        ("NUL in a filter", {"filter": {"k": "\x00"}}, BadRequest, "NUL"),
        ("300 KB filter", {"filter": {"k": "v" * 300_000}}, BadRequest, "the limit is"),
        (
            "NaN in a query vector",
            {"vector": [float("nan")] * 384, "text": None},
            BadRequest,
            "NaN",
        ),
    ],
)
def test_hostile_searches_fail_with_a_clear_message(
    client, workers, kind, request_, error: type[MmqError], message: str
) -> None:  # type: ignore[no-untyped-def]
    from mmq.broker import SEARCH_QUEUE, SEARCH_TASK

    payload = {"collection": "photos", "text": "x", **request_}
    sent = client.app.send_task(SEARCH_TASK, args=[payload], queue=SEARCH_QUEUE)
    job = SearchJob(str(sent.id), client.app)
    with pytest.raises(error, match=message):
        job.result(timeout=60)
    assert job.status().error_kind == error.kind
    assert all(p.poll() is None for p in workers)


def test_sql_in_a_filter_is_only_data(client, workers, outcome) -> None:  # type: ignore[no-untyped-def]
    _, result = outcome
    job = client.search(
        collection=result.collection,
        text="x",
        filter={"q": "'); DROP TABLE items;--", "x' OR '1'='1": "1"},
    )
    assert job.result(timeout=60).hits == []
    hits = client.search(
        collection=result.collection, text="x", filter={"q": "'); DROP TABLE items;--"}
    ).result(timeout=60)
    assert len(hits.hits) == 1  # the item whose metadata held it, and the table is still there


def test_paths_are_refused_before_any_read(tmp_path: Path) -> None:
    from mmq.errors import InvalidInput
    from mmq.media import confined

    root = tmp_path.resolve()
    (tmp_path / "in.jpg").write_bytes(b"x")
    assert confined(str(tmp_path / "in.jpg"), [root]) == root / "in.jpg"
    for bad in [str(tmp_path / ".." / "x.jpg"), "/etc/passwd", "relative/../../x", "a\x00b"]:
        with pytest.raises(InvalidInput):
            confined(bad, [root])
    assert os.path.exists("/etc/passwd")

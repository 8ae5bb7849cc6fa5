"""Uploads stored by content, the media directory as an ingest root, and thumbnails."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mmq.config import Settings
from mmq.errors import BadRequest, InvalidInput, NotFound
from mmq.media import thumbnails as thumbnails_module
from mmq.media.store import MediaStore, StoredMedia, kind_of, suffix_for
from mmq.media.thumbnails import thumbnail
from tests.support.images import noise, png_header_only, solid
from tests.support.procs import without_mmq_settings
from tests.support.videos import video_bytes


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


# --- the store ---------------------------------------------------------------------------


def test_the_same_content_stored_twice_is_one_file(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    data = b"\x89PNG not really, but bytes" * 100_000  # over one 1 MiB chunk
    sha = hashlib.sha256(data).hexdigest()
    first = store.put(io.BytesIO(data), suffix=".PNG")
    assert first == StoredMedia(store.root / sha[:2] / f"{sha}.png", sha, len(data))
    assert first.path.read_bytes() == data
    before = first.path.stat()
    second = store.put(io.BytesIO(data), suffix=".png")
    assert second == first
    after = first.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # not rewritten
    assert sorted(p.name for p in store.root.rglob("*")) == [sha[:2], f"{sha}.png"]  # no temp left
    assert store.put(io.BytesIO(data), suffix=".jpg").path == first.path.with_suffix(".jpg")


def test_stored_files_are_readable_by_others_whatever_the_umask(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "deep" / "media")
    with umask(0o077):
        stored = store.put(io.BytesIO(b"video bytes"), suffix=".mp4")
    assert stored.path.parent.parent == store.root == (tmp_path / "deep" / "media").resolve()
    assert mode(stored.path) == 0o644
    assert mode(stored.path.parent) == 0o755
    assert mode(store.root) == 0o755


@pytest.mark.parametrize("bad", ["", "png", ".", ".a/b", "./../x", ".abcdefghijk", ".jp g", ".é"])
def test_a_bad_suffix_is_refused_and_nothing_is_written(tmp_path: Path, bad: str) -> None:
    store = MediaStore(tmp_path / "media")
    with pytest.raises(BadRequest, match="1 to 10 letters or digits"):
        store.put(io.BytesIO(b"x"), suffix=bad)
    assert not store.root.exists() or list(store.root.rglob("*")) == []


def test_a_failing_stream_leaves_no_temporary_file(tmp_path: Path) -> None:
    class Broken(io.RawIOBase):
        def read(self, size: int = -1) -> bytes:
            raise OSError("connection reset")

    store = MediaStore(tmp_path / "media")
    with pytest.raises(OSError, match="connection reset"):
        store.put(Broken(), suffix=".jpg")  # type: ignore[arg-type]
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    ("filename", "content_type", "suffix"),
    [
        ("holiday.JPG", None, ".jpg"),
        ("holiday.jpeg", "image/png", ".jpeg"),  # the name wins when it is known
        ("clip.MOV", None, ".mov"),
        ("C:\\Users\\me\\clip.m4v", None, ".m4v"),
        ("../../etc/x.webm", None, ".webm"),
        ("archive.tar.gz", "image/png", ".png"),
        ("no-extension", "image/jpeg", ".jpg"),
        (None, "video/mp4", ".mp4"),
        (None, "Video/QuickTime; codecs=avc1", ".mov"),
        ("", "video/x-matroska", ".mkv"),
        ("notes.txt", "text/plain", ".bin"),
        ("x.svg", "image/svg+xml", ".bin"),
        (None, None, ".bin"),
    ],
)
def test_suffix_for(filename: str | None, content_type: str | None, suffix: str) -> None:
    assert suffix_for(filename, content_type) == suffix


def test_kind_of() -> None:
    assert [kind_of(s) for s in [".jpg", ".TIFF", ".webp", ".mp4", ".mkv", ".M4V", ".bin", ""]] == [
        "image",
        "image",
        "image",
        "video",
        "video",
        "video",
        None,
        None,
    ]


def test_contains_only_what_really_lies_inside(tmp_path: Path) -> None:
    store = MediaStore(tmp_path / "media")
    stored = store.put(io.BytesIO(b"x"), suffix=".jpg")
    outside = tmp_path / "secret.jpg"
    outside.write_bytes(b"secret")
    (store.root / "ab").mkdir()
    (store.root / "ab" / "out.jpg").symlink_to(outside)
    (tmp_path / "alias").symlink_to(store.root)
    assert store.contains(stored.path)
    assert store.contains(tmp_path / "alias" / stored.path.relative_to(store.root))
    assert store.contains(store.root / "ab" / ".." / stored.path.relative_to(store.root))
    assert not store.contains(store.root / ".." / "secret.jpg")
    assert not store.contains(store.root / "ab" / ".." / ".." / "secret.jpg")
    assert not store.contains(store.root / "ab" / "out.jpg")  # a symlink out
    assert not store.contains(outside)
    assert not store.contains(store.root)
    assert not store.contains(Path("relative.jpg"))
    assert not store.contains(Path(f"{store.root}/a\x00b.jpg"))
    assert not store.contains(tmp_path / "media-sibling" / "x.jpg")


# --- the setting -------------------------------------------------------------------------


def test_the_media_dir_is_always_an_ingest_root(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ["MMQ_MEDIA_DIR", "MMQ_INGEST_ROOTS"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MMQ_STATE_DIR", str(tmp_path / "state"))
    settings = Settings()
    assert settings.resolved_media_dir == tmp_path / "state" / "media"
    assert settings.resolved_ingest_roots == [Path.cwd().resolve(), tmp_path / "state" / "media"]
    monkeypatch.setenv("MMQ_MEDIA_DIR", str(tmp_path / "uploads"))
    monkeypatch.setenv("MMQ_INGEST_ROOTS", f"{tmp_path}/a{os.pathsep}{tmp_path}/uploads")
    settings = Settings()
    assert settings.resolved_media_dir == tmp_path / "uploads"
    assert settings.resolved_ingest_roots == [tmp_path / "a", tmp_path / "uploads"]  # once
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MMQ_MEDIA_DIR", "relative")
    assert Settings().resolved_media_dir == tmp_path / "relative"


# --- thumbnails --------------------------------------------------------------------------


def test_an_image_thumbnail_is_a_small_jpeg_made_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "wide.png"
    source.write_bytes(solid((200, 30, 30), (1000, 500), "PNG"))
    cache = tmp_path / "cache"
    made = thumbnail(source, cache_dir=cache)
    assert made.parent == cache and made.suffix == ".jpg"
    with Image.open(made) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (320, 160))
        assert np.abs(np.asarray(image, float).mean(axis=(0, 1)) - (200, 30, 30)).max() < 8
    assert [p.name for p in cache.iterdir()] == [made.name]  # no temporary file left

    def no_decoding(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("decoded again")

    monkeypatch.setattr(thumbnails_module, "_image", no_decoding)
    assert thumbnail(source, cache_dir=cache) == made
    monkeypatch.undo()
    small = thumbnail(source, cache_dir=cache, side=100)  # another size: another file
    assert small != made and Image.open(small).size == (100, 50)


def test_a_replaced_file_gets_a_new_thumbnail(tmp_path: Path) -> None:
    source = tmp_path / "photo.jpg"
    source.write_bytes(solid((0, 0, 255), (40, 30), "JPEG"))
    first = thumbnail(source, cache_dir=tmp_path / "cache")
    assert Image.open(first).size == (40, 30)  # never upscaled
    source.write_bytes(solid((0, 255, 0), (60, 30), "JPEG"))
    os.utime(source, ns=(1, 1))
    second = thumbnail(source, cache_dir=tmp_path / "cache")
    assert second != first and Image.open(second).size == (60, 30)


def grey(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L"), float).mean())


def test_a_video_thumbnail_is_the_frame_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Frame i is grey (7 * i) % 256, 10 frames a second, one keyframe every 10 frames.
    source = tmp_path / "clip.mp4"
    source.write_bytes(video_bytes(seconds=3, fps=10, size=(640, 360), gop=10))
    cache = tmp_path / "cache"
    at_2 = thumbnail(source, cache_dir=cache, at_s=2.0)
    at_half = thumbnail(source, cache_dir=cache, at_s=0.5)
    default = thumbnail(source, cache_dir=cache)
    assert len({at_2, at_half, default}) == 3
    assert Image.open(at_2).size == (320, 180)
    assert grey(at_2) == pytest.approx(140, abs=6)
    assert grey(at_half) == pytest.approx(35, abs=6)
    assert grey(default) == pytest.approx(70, abs=6)  # 1 s in
    assert thumbnail(source, cache_dir=cache, at_s=2.04) == at_2  # to the tenth of a second
    past_the_end = thumbnail(source, cache_dir=cache, at_s=60.0)
    assert grey(past_the_end) == pytest.approx(29 * 7, abs=6)  # the last frame

    def no_decoding(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("decoded again")

    monkeypatch.setattr(thumbnails_module, "_video_frame", no_decoding)
    assert thumbnail(source, cache_dir=cache, at_s=2.0) == at_2


class CountingContainer:
    """A PyAV container that counts the frames decoded through it."""

    def __init__(self, container: Any, counts: list[int]) -> None:
        self._container, self._counts = container, counts

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def decode(self, *args: Any) -> Iterator[Any]:
        for frame in self._container.decode(*args):
            self._counts.append(1)
            yield frame


def test_a_video_thumbnail_seeks_instead_of_decoding_everything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "long.webm"
    source.write_bytes(video_bytes(seconds=20, fps=10, fmt="webm", codec="libvpx-vp9", gop=10))
    decoded: list[int] = []
    real_open = thumbnails_module.open_video

    @contextmanager
    def counting_open(*args: Any, **kwargs: Any) -> Iterator[tuple[Any, Any]]:
        with real_open(*args, **kwargs) as (container, info):
            yield CountingContainer(container, decoded), info

    monkeypatch.setattr(thumbnails_module, "open_video", counting_open)
    made = thumbnail(source, cache_dir=tmp_path / "cache", at_s=15.0)
    assert grey(made) == pytest.approx((150 * 7) % 256, abs=6)
    assert 1 <= len(decoded) <= 11  # one group of pictures, not 150 frames


def test_a_short_video_thumbnail_is_its_middle(tmp_path: Path) -> None:
    source = tmp_path / "short.mkv"
    source.write_bytes(video_bytes(seconds=1, fps=10, fmt="matroska"))
    assert grey(thumbnail(source, cache_dir=tmp_path / "cache")) == pytest.approx(35, abs=6)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("text.jpg", b"just text", "not a supported image"),
        ("empty.png", b"", "image is empty"),
        ("truncated.png", None, "corrupt or truncated image"),
        ("bomb.png", png_header_only(50_000, 50_000), "pixel limit"),
        ("text.mp4", b"just text, no video", "not a readable video"),
        ("empty.webm", b"", "video is empty"),
        ("unknown.bin", b"just text", "not a supported image"),
    ],
)
def test_bad_media_is_invalid_input(
    tmp_path: Path, name: str, data: bytes | None, message: str
) -> None:
    if data is None:
        whole = io.BytesIO()
        noise(64, 64).save(whole, "PNG")
        data = whole.getvalue()[: len(whole.getvalue()) // 2]
    (tmp_path / name).write_bytes(data)
    with pytest.raises(InvalidInput, match=message):
        thumbnail(tmp_path / name, cache_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists() or list((tmp_path / "cache").iterdir()) == []


def test_limits_and_arguments(tmp_path: Path) -> None:
    source = tmp_path / "photo.png"
    source.write_bytes(solid((1, 2, 3), (100, 100), "PNG"))
    cache = tmp_path / "cache"
    with pytest.raises(InvalidInput, match="the limit is 9999 pixels"):
        thumbnail(source, cache_dir=cache, max_pixels=9_999)
    with pytest.raises(InvalidInput, match="288 bytes, the limit is 10$"):
        thumbnail(source, cache_dir=cache, max_bytes=10)
    video = tmp_path / "clip.mp4"
    video.write_bytes(video_bytes(seconds=1, size=(64, 48)))
    with pytest.raises(InvalidInput, match="the limit is 3000 pixels per frame"):
        thumbnail(video, cache_dir=cache, max_pixels=3_000)
    with pytest.raises(NotFound, match="no such media file"):
        thumbnail(tmp_path / "missing.jpg", cache_dir=cache)
    with pytest.raises(BadRequest, match="0 s or later"):
        thumbnail(video, cache_dir=cache, at_s=-1.0)
    with pytest.raises(BadRequest, match="at least 1 pixel"):
        thumbnail(source, cache_dir=cache, side=0)


# --- what the API process may import -----------------------------------------------------


def test_the_store_and_thumbnails_load_no_model() -> None:
    code = (
        "import sys, mmq.media.store, mmq.media.thumbnails\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers',"
        " 'torchvision') or m.startswith('mmq.encoders')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=without_mmq_settings())

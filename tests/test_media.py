"""Untrusted input: every image and text is built here, in memory, from PIL and numpy."""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmq.errors import InvalidInput
from mmq.media import clean_text, confined, decode_image, read_image_bytes
from tests.support.images import (
    cmyk_jpeg,
    encode,
    gif_header_only,
    la_png,
    noise,
    palette_png_with_transparency,
    png_header_only,
    rgba_png,
)

MAX_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 64_000_000
WHITE = (255, 255, 255)


def decode(data: bytes) -> Image.Image:
    return decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)


# --- valid images ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("JPEG", {"quality": 90}),
        ("PNG", {}),
        ("WEBP", {"quality": 90}),
        ("GIF", {}),
        ("BMP", {}),
        ("TIFF", {}),
    ],
)
def test_supported_formats_decode_to_rgb_with_their_size(
    fmt: str, params: dict[str, object]
) -> None:
    data = encode(noise(37, 23), fmt, **params)
    image = decode(data)
    assert image.mode == "RGB"
    assert image.size == (37, 23)


def test_decoded_pixels_match_the_source() -> None:
    source = noise(16, 8)
    assert np.array_equal(np.asarray(decode(encode(source, "PNG"))), np.asarray(source))


# --- refused images -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "params"),
    [("JPEG", {"quality": 95}), ("PNG", {}), ("WEBP", {"quality": 95})],
)
def test_truncated_images_are_refused(fmt: str, params: dict[str, object]) -> None:
    data = encode(noise(64, 64), fmt, **params)
    with pytest.raises(InvalidInput, match="corrupt or truncated"):
        decode(data[: len(data) // 2])


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(png_header_only(50_000, 50_000), id="png-50000x50000"),
        pytest.param(png_header_only(10_000, 10_000), id="png-10000x10000"),
        pytest.param(png_header_only(9_000, 9_000), id="png-9000x9000"),
        pytest.param(gif_header_only(65_000, 65_000), id="gif-65000x65000"),
        pytest.param(gif_header_only(9_000, 9_000), id="gif-9000x9000"),
    ],
)
def test_huge_pixel_claims_are_refused_from_the_header(data: bytes) -> None:
    assert len(data) < 100
    started = time.perf_counter()
    with pytest.raises(InvalidInput, match="pixel limit|the limit is 64000000 pixels"):
        decode(data)
    assert time.perf_counter() - started < 1.0


def test_pixel_limit_is_the_callers() -> None:
    data = encode(noise(40, 30), "PNG")
    with pytest.raises(InvalidInput, match=r"40x30 pixels, the limit is 1000 pixels"):
        decode_image(data, max_bytes=MAX_BYTES, max_pixels=1000)
    assert decode_image(data, max_bytes=MAX_BYTES, max_pixels=1200).size == (40, 30)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(b"", "empty", id="zero-bytes"),
        pytest.param(b"hello, this is a text file\n", "not a supported image", id="text"),
        pytest.param(
            b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
            b'<rect width="10" height="10"/></svg>',
            "not a supported image",
            id="svg",
        ),
        pytest.param(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not a supported image", id="pdf"),
    ],
)
def test_unusable_bytes_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        decode(data)


def test_oversized_bytes_are_refused() -> None:
    data = encode(noise(32, 32), "PNG")
    with pytest.raises(InvalidInput, match=f"the limit is {len(data) - 1}"):
        decode_image(data, max_bytes=len(data) - 1, max_pixels=MAX_PIXELS)
    assert decode_image(data, max_bytes=len(data), max_pixels=MAX_PIXELS).size == (32, 32)


# --- files ----------------------------------------------------------------------------------


def test_read_image_bytes_reads_a_file_within_the_limit(tmp_path: Path) -> None:
    data = encode(noise(8, 8), "PNG")
    path = tmp_path / "small.png"
    path.write_bytes(data)
    assert read_image_bytes(path, max_bytes=len(data)) == data
    assert read_image_bytes(str(path), max_bytes=len(data)) == data


def test_read_image_bytes_refuses_an_oversized_file_without_reading_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:
        f.truncate(256 * 1024 * 1024)  # sparse: costs no disk, but reading it would hurt

    def no_reading(self: Path) -> bytes:
        raise AssertionError(f"{self} was read")

    monkeypatch.setattr(Path, "read_bytes", no_reading)
    with pytest.raises(InvalidInput, match="the limit is 1000") as info:
        read_image_bytes(path, max_bytes=1000)
    assert "huge.jpg" in str(info.value)


@pytest.mark.parametrize("name", ["missing.png", "."])
def test_read_image_bytes_refuses_missing_files_and_directories(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidInput, match="no such image file"):
        read_image_bytes(tmp_path / name, max_bytes=MAX_BYTES)


def test_paths_out_of_the_roots_are_refused_before_any_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins
    import os

    root, other = (tmp_path / "root").resolve(), (tmp_path / "other").resolve()
    root.mkdir()
    other.mkdir()
    (root / "in.jpg").write_bytes(b"x")
    (other / "also-in.jpg").write_bytes(b"x")
    outside = tmp_path / "outside.jpg"
    outside.write_bytes(b"a file a worker must never read")
    (root / "link-out.jpg").symlink_to(outside)  # planted under the root, leads out of it
    (root / "link-in.jpg").symlink_to(root / "in.jpg")  # stays inside: its target is used
    monkeypatch.chdir(root)  # a relative path resolves against the root, not the repository

    def no_read(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"read attempted: {args[:1]}")

    with monkeypatch.context() as m:  # from here, reading any file fails the test
        m.setattr(builtins, "open", no_read)
        m.setattr(os, "open", no_read)
        m.setattr(Path, "open", no_read)
        m.setattr(Path, "read_bytes", no_read)
        assert confined(str(root / "in.jpg"), [root]) == root / "in.jpg"
        assert confined("in.jpg", [root]) == root / "in.jpg"
        assert confined(str(root / "link-in.jpg"), [root]) == root / "in.jpg"
        assert confined(str(other / "also-in.jpg"), [root, other]) == other / "also-in.jpg"
        for bad in [
            str(root / ".." / "outside.jpg"),  # ../ out of the root, to a file that exists
            str(outside),  # absolute, exists
            str(root / "link-out.jpg"),  # a symlink out
            str(tmp_path / "missing.jpg"),  # out and absent: outside, not "no such file"
            "../outside.jpg",  # relative
            str(other / "also-in.jpg"),  # under a directory that is not one of the roots
        ]:
            with pytest.raises(
                InvalidInput,
                match="outside the worker's ingest roots .*: set MMQ_INGEST_ROOTS where",
            ):
                confined(bad, [root])
        with pytest.raises(InvalidInput, match="NUL byte"):
            confined(str(root / "a\x00b.jpg"), [root])


# --- modes that must become RGB -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "source_mode", "corner", "rest"),
    [
        pytest.param(cmyk_jpeg(), "CMYK", None, None, id="cmyk-jpeg"),
        pytest.param(palette_png_with_transparency(), "P", (0, 0, 255), WHITE, id="palette"),
        pytest.param(rgba_png(), "RGBA", (0, 0, 255), WHITE, id="rgba"),
        pytest.param(la_png(), "LA", (0, 0, 0), WHITE, id="la"),
    ],
)
def test_other_modes_become_rgb_with_transparency_over_white(
    data: bytes,
    source_mode: str,
    corner: tuple[int, int, int] | None,
    rest: tuple[int, int, int] | None,
) -> None:
    assert Image.open(io.BytesIO(data)).mode == source_mode
    image = decode(data)
    assert image.mode == "RGB"
    if corner is not None:
        assert image.getpixel((0, 0)) == corner
        assert image.getpixel((3, 1)) == rest


def test_cmyk_colours_survive() -> None:
    red = np.asarray(decode(cmyk_jpeg()), dtype=int).mean(axis=(0, 1))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_16_bit_greyscale_is_scaled_not_clipped() -> None:
    # A horizontal gradient over the whole 16-bit range.
    gradient = np.tile(np.linspace(0, 65535, 256).astype(np.uint16), (8, 1))
    data = encode(Image.fromarray(gradient), "PNG")
    assert Image.open(io.BytesIO(data)).mode == "I;16"
    pixels = np.asarray(decode(data), dtype=int)
    assert pixels.shape == (8, 256, 3)
    row = pixels[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert np.all(np.diff(row) >= 0)  # still a gradient
    assert len(np.unique(row)) > 200
    assert np.array_equal(pixels[..., 0], pixels[..., 2])  # still grey


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # left quarter blue
    decoded = decode(encode(image, "JPEG", exif=exif, quality=95))
    assert decoded.size == (20, 40)
    top = np.asarray(decoded, dtype=int)[:5].mean(axis=(0, 1))
    assert top[2] > 200 and top[0] < 60  # the blue left edge is now on top


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (12, 6), colour) for colour in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    image = decode(data)
    assert image.mode == "RGB"
    assert image.size == (12, 6)
    assert image.getpixel((6, 3)) == (255, 0, 0)


# --- texts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("a cat", "a cat"),
        ("cafe\u0301", "caf\u00e9"),  # NFD -> NFC
        ("caf\u00e9", "caf\u00e9"),
        ("e\x00\u0301", "\u00e9"),  # NFC still holds once the control character is gone
        ("  a \t cat\n\n on  a mat  ", "a cat on a mat"),
        ("a\r\nb", "a b"),
        ("a\rb", "a b"),  # old Mac line ending separates words
        ("a\x0bb\x0cc\x85d", "a b c d"),
        ("a\u00a0b\u3000c", "a b c"),
        ("a\x00b\x07c\x1b[0md", "abc[0md"),
        ("zero\u200bwidth", "zerowidth"),
        ("bidi\u202eevil", "bidievil"),
        ("\ufeffBOM", "BOM"),
    ],
)
def test_clean_text_normalises(raw: str, clean: str) -> None:
    assert clean_text(raw, max_chars=100) == clean


@pytest.mark.parametrize("raw", ["", " ", "\t\n\r ", "\x00\x01", "\u200b\u00a0"])
def test_empty_texts_are_refused(raw: str) -> None:
    with pytest.raises(InvalidInput, match="text is empty"):
        clean_text(raw, max_chars=100)


@pytest.mark.parametrize(
    ("raw", "limit", "clean"),
    [
        ("x" * 10, 10, "x" * 10),
        ("  " + "x" * 10 + "  ", 10, "x" * 10),  # counted after cleaning
        ("cafe\u0301", 4, "caf\u00e9"),  # counted after NFC: 5 code points become 4
    ],
)
def test_text_at_the_length_limit_is_kept_whole(raw: str, limit: int, clean: str) -> None:
    assert clean_text(raw, max_chars=limit) == clean


@pytest.mark.parametrize(
    ("raw", "limit"), [("x" * 11, 10), ("  " + "x" * 11 + "  ", 10), ("cafe\u0301s", 4)]
)
def test_text_over_the_length_limit_is_refused_not_cut(raw: str, limit: int) -> None:
    with pytest.raises(InvalidInput, match=f"the limit is {limit}"):
        clean_text(raw, max_chars=limit)


@pytest.mark.parametrize("value", [None, 42, b"bytes", ["a", "cat"]])
def test_non_strings_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="must be a string"):
        clean_text(value, max_chars=100)


def test_a_refused_input_is_an_invalid_input_error() -> None:
    from mmq.errors import MmqError

    assert issubclass(InvalidInput, MmqError) and issubclass(InvalidInput, ValueError)
    with pytest.raises(InvalidInput) as info:
        decode(b"")
    assert (info.value.kind, info.value.exit_code) == ("invalid_input", 2)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_that_keeps_min_side() -> None:
    image = Image.new("RGB", (2000, 1600), (200, 120, 40))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    # 1600 // 224 = 7: the largest power of two that keeps both sides >= 224 is 4.
    small = decode_image(data, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, min_side=224)
    assert small.size == (500, 400) and small.mode == "RGB"
    assert small.getpixel((250, 200)) == pytest.approx((200, 120, 40), abs=3)
    assert decode(data).size == (2000, 1600)
    # Only JPEG has a reduced-scale decode; other formats decode in full.
    buf = io.BytesIO()
    image.save(buf, "PNG")
    png = decode_image(buf.getvalue(), max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS, min_side=224)
    assert png.size == (2000, 1600)


# --- the hostile-input table (tests/test_hostile_inputs.py sends it through a worker) -----


def test_the_hostile_tables_hold_the_kinds_the_docs_count(tmp_path: Path) -> None:
    from tests.test_hostile_inputs import SEARCH_CASES, STORED, files, table

    cases = table(files(tmp_path))
    kinds = [kind for kind, _, _ in cases]
    # docs/reliability.md: "44 kinds of item in one task and 7 kinds of search", "each of
    # the 51", "12 handled and stored ... and 32 refused with their reason"
    assert len(set(kinds)) == len(kinds) == 44
    assert sum(expected == STORED for _, _, expected in cases) == 12
    assert sum(expected != STORED for _, _, expected in cases) == 32
    assert len({kind for kind, *_ in SEARCH_CASES}) == len(SEARCH_CASES) == 7

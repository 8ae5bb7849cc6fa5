"""Originals kept by the ingest workers in the media store (MMQ_KEEP_ORIGINALS): images and
videos that arrive as bytes get a file there as their `uri`, once, and only when they are
good; "all" copies path ingests too; "none" keeps nothing; searches never write.

The "all" and "none" workers run on a broker database of their own (the same servers), so
the session's workers never take their tasks."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit, urlunsplit

import av
import httpx
import numpy as np
import pytest
from PIL import Image

from mmq.config import Settings
from mmq.errors import Unavailable
from mmq.media.originals import image_suffix, video_suffix
from mmq.media.store import MediaStore
from mmq.schemas import IngestItem
from mmq.services.originals import Original, keep, keeps
from tests.support.names import fresh
from tests.support.videos import video_bytes

if TYPE_CHECKING:
    from mmq.client import Client
    from mmq.embedded import Urls
    from tests.support.procs import Procs

slow = pytest.mark.slow


def image_bytes(fmt: str = "PNG", *, seed: int = 0) -> bytes:
    """A small noisy image no other test makes (so its file is this test's alone)."""
    noise = np.random.default_rng(seed or np.random.SeedSequence().entropy).integers(
        0, 256, (48, 64, 3), dtype=np.uint8
    )
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format=fmt)
    return buf.getvalue()


def files_of(media: Path, data: bytes) -> list[Path]:
    """The media store's files holding `data` (named by its SHA-256, whatever the suffix)."""
    sha = hashlib.sha256(data).hexdigest()
    return sorted((media / sha[:2]).glob(f"{sha}*"))


def uris(client: Client, result_ids: list[int | None]) -> list[str | None]:
    """The stored items' `uri`, read back from the database."""
    from sqlalchemy import select

    from mmq.store.db import make_engine, make_sessionmaker
    from mmq.store.tables import Item

    engine = make_engine(client.urls.database_url, pool_size=1)
    try:
        with make_sessionmaker(engine)() as session:
            found = session.execute(select(Item.id, Item.uri).where(Item.id.in_(result_ids)))
            by_id = {row.id: row.uri for row in found}
    finally:
        engine.dispose()
    return [by_id[i] if i is not None else None for i in result_ids]


def ingest(client: Client, items: list[IngestItem], name: str) -> list[str | None]:
    """Ingest and wait; every item must be stored. Their `uri`s, in order."""
    result = client.ingest(items, collection=name).result(timeout=300)
    assert [it.status for it in result.items] == ["stored"] * len(items), result.items
    return uris(client, [it.item_id for it in result.items])


# ---------------------------------------------------------------- suffixes and policy


@pytest.mark.parametrize(
    ("fmt", "suffix"),
    [("JPEG", ".jpg"), ("PNG", ".png"), ("WEBP", ".webp"), ("GIF", ".gif"), ("BMP", ".bmp")],
)
def test_image_suffix_is_the_decoded_format(fmt: str, suffix: str) -> None:
    assert image_suffix(image_bytes(fmt, seed=1)) == suffix
    assert image_suffix(b"not an image") == ".bin"


@pytest.mark.parametrize(
    ("fmt", "codec", "suffix"),
    [
        ("mp4", "libx264", ".mp4"),
        ("mov", "libx264", ".mov"),
        ("matroska", "libx264", ".mkv"),
        ("webm", "libvpx-vp9", ".webm"),
        ("avi", "mpeg4", ".avi"),
    ],
)
def test_video_suffix_is_the_container(fmt: str, codec: str, suffix: str) -> None:
    data = video_bytes(seconds=0.5, fmt=fmt, codec=codec)
    with av.open(io.BytesIO(data)) as container:
        assert video_suffix(container, container.streams.video[0].codec_context.name) == suffix


@pytest.mark.parametrize(
    ("mode", "from_bytes", "from_path"),
    [("bytes", True, False), ("all", True, True), ("none", False, False)],
)
def test_which_items_keep_their_original(
    tmp_path: Path, mode: Literal["bytes", "all", "none"], from_bytes: bool, from_path: bool
) -> None:
    settings = Settings(state_dir=tmp_path, keep_originals=mode, media_dir=tmp_path / "media")
    assert keeps(settings, None) is from_bytes
    assert keeps(settings, tmp_path / "photo.png") is from_path
    # A file in the store already (an upload through the API) is its own original.
    assert keeps(settings, tmp_path / "media" / "ab" / "ab.png") is False


def test_a_store_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    (tmp_path / "media").write_text("a file where the folder should be")
    settings = Settings(state_dir=tmp_path, media_dir=tmp_path / "media")
    with pytest.raises(Unavailable, match="MMQ_KEEP_ORIGINALS=none"):
        keep(Original(b"data", ".png"), settings)


# ---------------------------------------------------------------- the default: bytes


@slow
def test_image_bytes_are_kept_once(client: Client, workers: Procs, settings: Settings) -> None:
    media = settings.resolved_media_dir
    png, jpeg = image_bytes("PNG"), image_bytes("JPEG")
    name = fresh("orig")
    items = [
        IngestItem(image_bytes=png, external_id="a"),
        IngestItem(image_bytes=jpeg, text="noise", external_id="pair"),
        IngestItem(text="a text has no file", external_id="t"),
    ]
    a, pair, text = ingest(client, items, name)
    assert a is not None and pair is not None and text is None
    for uri, data, suffix in [(a, png, ".png"), (pair, jpeg, ".jpg")]:
        path = Path(uri)
        assert MediaStore(media).contains(path) and path.suffix == suffix
        assert path.read_bytes() == data
    # The same bytes again, as another item and in another task: the same one file.
    (b,) = ingest(client, [IngestItem(image_bytes=png, external_id="b")], name)
    assert b == a and files_of(media, png) == [Path(a)]


@slow
def test_a_replaced_original_goes_unless_another_item_has_it(
    client: Client, workers: Procs, settings: Settings
) -> None:
    media = settings.resolved_media_dir
    first, second, shared = image_bytes(), image_bytes(), image_bytes()
    name = fresh("orig-replaced")
    ingest(client, [IngestItem(image_bytes=first, external_id="a")], name)
    ingest(client, [IngestItem(image_bytes=shared, external_id=i) for i in ("b", "c")], name)
    (a,) = ingest(client, [IngestItem(image_bytes=second, external_id="a")], name)
    assert files_of(media, first) == [] and files_of(media, second) == [Path(a or "")]
    # "c" still has the file "b" had.
    ingest(client, [IngestItem(text="now a caption", external_id="b")], name)
    assert len(files_of(media, shared)) == 1


@slow
def test_video_bytes_are_kept(client: Client, workers: Procs, settings: Settings) -> None:
    video = video_bytes(seconds=2.0, size=(96, 64))
    (uri,) = ingest(client, [IngestItem(video_bytes=video, external_id="v")], fresh("orig"))
    assert uri is not None and Path(uri).suffix == ".mp4"
    assert MediaStore(settings.resolved_media_dir).contains(Path(uri))
    assert Path(uri).read_bytes() == video
    assert files_of(settings.resolved_media_dir, video) == [Path(uri)]


@slow
def test_bad_input_keeps_nothing(client: Client, workers: Procs, settings: Settings) -> None:
    media = settings.resolved_media_dir
    corrupt = image_bytes("PNG")[:400]  # a valid header, then nothing
    not_a_video = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4
    items = [
        IngestItem(image_bytes=corrupt, external_id="corrupt"),
        IngestItem(video_bytes=not_a_video, external_id="bad-video"),
        IngestItem(text="the good one", external_id="good"),
    ]
    result = client.ingest(items, collection=fresh("orig")).result(timeout=300)
    assert [it.status for it in result.items] == ["failed", "failed", "stored"], result.items
    assert files_of(media, corrupt) == [] and files_of(media, not_a_video) == []


@slow
def test_a_search_by_image_writes_nothing(
    client: Client, workers: Procs, settings: Settings
) -> None:
    name = fresh("orig")
    ingest(client, [IngestItem(text="something to find", external_id="t")], name)
    query = image_bytes("PNG")
    assert client.search(collection=name, image=query).result(timeout=60).hits
    assert files_of(settings.resolved_media_dir, query) == []


@slow
def test_the_api_serves_a_bytes_ingest(
    client: Client, workers: Procs, settings: Settings, urls: Urls
) -> None:
    from tests.support.api import bearer, new_key, serving

    png = image_bytes("PNG")
    name = fresh("orig")
    result = client.ingest([IngestItem(image_bytes=png)], collection=name).result(timeout=300)
    item_id = result.items[0].item_id
    headers = bearer(new_key(urls, [name], "read"))
    with serving(settings, urls) as api:
        original = httpx.get(f"{api.url}/v1/items/{item_id}/media", headers=headers, timeout=60)
        assert original.status_code == 200, original.text
        assert original.headers["content-type"] == "image/png"
        assert original.content == png
        thumb = httpx.get(f"{api.url}/v1/items/{item_id}/thumbnail", headers=headers, timeout=60)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


# ---------------------------------------------------------------- "all" and "none"


@dataclass(frozen=True)
class Keeping:
    client: Client
    media: Path  # its workers' MMQ_MEDIA_DIR


def on_database(url: str, db: int) -> str:
    """The Redis URL `url` with database number `db`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="module")
def keeping(
    request: pytest.FixtureRequest, settings: Settings, urls: Urls, state_dir: Path
) -> Iterator[Keeping]:
    """An ingest worker with MMQ_KEEP_ORIGINALS=<the test's parameter> and a media folder of
    its own, and a client of it: on Redis databases no other worker listens to."""
    import os

    from mmq.cli.spawn import running_workers
    from mmq.client import Client
    from mmq.embedded import Urls

    mode: str = request.param
    db = {"all": 10, "none": 12}[mode]
    own = Urls(
        broker_url=on_database(urls.broker_url, db),
        result_backend=on_database(urls.result_backend, db + 1),
        database_url=urls.database_url,
    )
    # Under the tests' temporary files: an ingest root of the session's API and workers too.
    media = Path(settings.ingest_roots[0]) / f"media-keep-{mode}"
    env = dict(os.environ)
    env.update(
        MMQ_BROKER_URL=own.broker_url,
        MMQ_RESULT_BACKEND=own.result_backend,
        MMQ_KEEP_ORIGINALS=mode,
        MMQ_MEDIA_DIR=str(media),
    )
    client = Client(settings, own)
    logs = state_dir / f"logs-keep-{mode}"
    with running_workers(client.app, queues=("ingest",), log_dir=logs, env=env):
        yield Keeping(client, media)
    client.close()


@slow
@pytest.mark.parametrize("keeping", ["all"], indirect=True)
def test_all_copies_path_ingests(keeping: Keeping, photos: dict[str, Path], tmp_path: Path) -> None:
    store = MediaStore(keeping.media)
    video_path = tmp_path / "clip.webm"
    video_path.write_bytes(video_bytes(seconds=2.0, fmt="webm", codec="libvpx-vp9"))
    # A file already in the store (an upload through the API) is not copied again.
    upload = store.put(io.BytesIO(image_bytes("PNG")), suffix=".PNG")
    png = image_bytes("PNG")
    items = [
        IngestItem(image_path=str(photos["coffee"]), external_id="coffee"),
        IngestItem(video_path=str(video_path), external_id="clip"),
        IngestItem(image_path=str(upload.path), external_id="upload"),
        IngestItem(image_bytes=png, external_id="bytes"),
    ]
    coffee, clip, uploaded, from_bytes = ingest(keeping.client, items, fresh("orig-all"))
    for uri, source, suffix in [(coffee, photos["coffee"], ".png"), (clip, video_path, ".webm")]:
        assert uri is not None and store.contains(Path(uri)) and Path(uri).suffix == suffix
        assert Path(uri).read_bytes() == source.read_bytes()
        assert source.is_file()  # the user's file stays where it was
    assert uploaded == str(upload.path)
    assert files_of(keeping.media, upload.path.read_bytes()) == [upload.path]
    assert from_bytes is not None and Path(from_bytes).read_bytes() == png


@slow
@pytest.mark.parametrize("keeping", ["none"], indirect=True)
def test_none_keeps_nothing(keeping: Keeping, photos: dict[str, Path]) -> None:
    items = [
        IngestItem(image_bytes=image_bytes("PNG"), external_id="bytes"),
        IngestItem(video_bytes=video_bytes(seconds=2.0), external_id="video"),
        IngestItem(image_path=str(photos["coffee"]), external_id="coffee"),
    ]
    from_bytes, video, coffee = ingest(keeping.client, items, fresh("orig-none"))
    assert from_bytes is None and video is None
    assert coffee == str(photos["coffee"].resolve())  # the path itself, as always
    assert not keeping.media.exists() or not any(keeping.media.rglob("*"))

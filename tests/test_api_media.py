"""Items' media through the API: signed URLs that work without a key (and stop working
when expired or moved to another item), Range on an uploaded video (206), thumbnails of
images and of a video's moment, and no media for a text."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from mmq.api.tokens import Signer, api_secret
from mmq.config import Settings
from mmq.embedded import Urls
from tests.support.api import (
    Api,
    accepted,
    bearer,
    error_of,
    item_ids,
    new_key,
    upload,
    wait_job,
)
from tests.support.names import fresh
from tests.support.videos import video_bytes

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Media:
    api: Api
    collection: str
    headers: dict[str, str]
    ids: dict[str, int]  # "chelsea.png", "clip.mp4", "note" → item id
    video: bytes  # the uploaded video's bytes

    def hit(self, http: httpx.Client, item: str, query: dict[str, Any]) -> dict[str, Any]:
        """The hit for `item` in a search (`query`) of the collection."""
        url = f"/v1/collections/{self.collection}/search"
        response = http.post(url, headers=self.headers, json=query)
        assert response.status_code == 200, response.text
        return next(h for h in response.json()["hits"] if h["item_id"] == self.ids[item])


@pytest.fixture(scope="module")
def media(api: Api, http: httpx.Client, urls: Urls, photos: dict[str, Path]) -> Media:
    """A photo and a 4 s video uploaded together, and a text item."""
    name = fresh("media")
    headers = bearer(new_key(urls, [name], "write"))
    video = video_bytes(seconds=4.0, size=(160, 120))
    note = http.post(
        f"/v1/collections/{name}/items",
        headers=headers,
        json={"items": [{"text": "a note without a file", "external_id": "note"}]},
    )
    note_url = accepted(note)
    sent: dict[str, bytes | Path] = {"chelsea.png": photos["chelsea"], "clip.mp4": video}
    ids = item_ids(upload(http, name, headers, sent), list(sent))
    ids |= item_ids(wait_job(http, note_url, headers), ["note"])
    return Media(api, name, headers, ids, video)


@pytest.fixture(scope="module")
def signer(settings: Settings, api: Api) -> Signer:
    """Signs as the server signs: the same secret (made in the state folder at start-up)."""
    return Signer(api_secret(settings), settings.api_url_ttl_s)


def _jpeg(response: httpx.Response) -> Image.Image:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    return image


def test_signed_urls_work_without_a_key(
    http: httpx.Client, media: Media, photos: dict[str, Path]
) -> None:
    hit = media.hit(http, "chelsea.png", {"text": "a cat", "targets": ["image"]})
    original = httpx.get(hit["media_url"])
    assert original.status_code == 200
    assert original.headers["content-type"] == "image/png"
    assert original.content == photos["chelsea"].read_bytes()
    thumb = _jpeg(httpx.get(hit["thumbnail_url"]))
    assert max(thumb.size) <= 320
    # The same URLs without their token need a key.
    for url in (hit["media_url"], hit["thumbnail_url"]):
        error_of(httpx.get(url.split("?")[0]), 401)


def test_expired_and_foreign_tokens_are_401(
    http: httpx.Client, media: Media, signer: Signer
) -> None:
    photo, clip = media.ids["chelsea.png"], media.ids["clip.mp4"]
    assert http.get(f"/v1/items/{photo}/media", params={"token": signer.sign(photo)}).is_success
    expired = signer.sign(photo, now=time.time() - signer.ttl_s - 60)
    other_item = signer.sign(clip)
    for token in (expired, other_item, "garbage", "99999999999.AAAA", ""):
        for what in ("media", "thumbnail"):
            response = http.get(f"/v1/items/{photo}/{what}", params={"token": token})
            error = error_of(response, 401)
            assert error["type"] == "unauthorized" and "expired" in error["message"]


def test_range_on_an_uploaded_video_is_206(http: httpx.Client, media: Media) -> None:
    hit = media.hit(http, "clip.mp4", {"text": "a grey picture", "targets": ["video"]})
    assert hit["kind"] == "video" and hit["source"].endswith(".mp4")
    assert 0 <= hit["start_s"] <= hit["keyframe_s"] <= hit["end_s"] <= hit["duration_s"]
    size = len(media.video)

    whole = httpx.get(hit["media_url"])
    assert whole.status_code == 200 and whole.content == media.video
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"

    part = httpx.get(hit["media_url"], headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{size}"
    assert part.content == media.video[100:1100]
    tail = httpx.get(hit["media_url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == media.video[-10:]

    outside = httpx.get(hit["media_url"], headers={"Range": f"bytes={size + 10}-"})
    error = error_of(outside, 416)
    assert outside.headers["content-range"] == f"bytes */{size}"
    assert error["type"] == "range_not_satisfiable"
    error_of(httpx.get(hit["media_url"], headers={"Range": "lines=1-2"}), 400)


def test_thumbnails_of_an_image_and_of_a_video_moment(http: httpx.Client, media: Media) -> None:
    photo, clip = media.ids["chelsea.png"], media.ids["clip.mp4"]
    image = _jpeg(http.get(f"/v1/items/{photo}/thumbnail", headers=media.headers))
    assert max(image.size) == 320  # chelsea is 451 x 300: its longest side to 320

    hit = media.hit(http, "clip.mp4", {"text": "a grey picture", "targets": ["video"]})
    assert f"&t={hit['keyframe_s']:g}" in hit["thumbnail_url"]
    assert _jpeg(httpx.get(hit["thumbnail_url"])).size == (160, 120)  # never upscaled

    # The video's frames go from dark to light: a later moment is a lighter thumbnail.
    def grey(t: float) -> float:
        url = f"/v1/items/{clip}/thumbnail"
        response = http.get(url, headers=media.headers, params={"t": t})
        return float(np.asarray(_jpeg(response).convert("L")).mean())

    assert grey(0.5) < grey(3.0)
    bad = http.get(f"/v1/items/{clip}/thumbnail", headers=media.headers, params={"t": -1})
    error_of(bad, 422, field="t")


def test_a_text_has_no_media(http: httpx.Client, media: Media, signer: Signer) -> None:
    note = media.ids["note"]
    hit = media.hit(http, "note", {"text": "a note", "targets": ["text"]})
    assert hit["kind"] == "text" and hit["media_url"] is None and hit["thumbnail_url"] is None
    for what in ("media", "thumbnail"):
        by_key = http.get(f"/v1/items/{note}/{what}", headers=media.headers)
        assert "no media file" in error_of(by_key, 404)["message"]
        by_token = http.get(f"/v1/items/{note}/{what}", params={"token": signer.sign(note)})
        assert "no media file" in error_of(by_token, 404)["message"]

"""Search through the API over photos uploaded once: by text, by an uploaded image, both,
filters and min_score, validation, the 202 answer past `wait_ms`, and "more like this"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mmq.embedded import Urls
from tests.support.api import (
    Api,
    accepted,
    bearer,
    error_of,
    item_ids,
    new_key,
    wait_job,
)
from tests.support.names import fresh

pytestmark = pytest.mark.slow

GROUPS: dict[str, tuple[str, ...]] = {
    "a": ("chelsea", "coffee", "rocket"),
    "b": ("astronaut", "horse", "clock"),
}
HIT_FIELDS = {
    "item_id",
    "external_id",
    "kind",
    "score",
    "source",
    "metadata",
    "media_url",
    "thumbnail_url",
}


@dataclass(frozen=True)
class Searched:
    api: Api
    collection: str
    headers: dict[str, str]
    ids: dict[str, int]  # photo → item id of its upload; "kitty": chelsea again, by path

    @property
    def url(self) -> str:
        return f"/v1/collections/{self.collection}/search"


@pytest.fixture(scope="module")
def searched(api: Api, http: httpx.Client, urls: Urls, photos: dict[str, Path]) -> Searched:
    """Two uploads of three photos each (metadata `group` a and b), and chelsea once more
    by path with the external id "kitty" (group c): the jobs run together."""
    name = fresh("search")
    headers = bearer(new_key(urls, [name], "admin"))
    status_urls = []
    for group, names in GROUPS.items():
        files = [("file", (f"{n}.png", photos[n].read_bytes())) for n in names]
        response = http.post(
            f"/v1/collections/{name}/items",
            headers=headers,
            files=files,
            data={"metadata": f'{{"group": "{group}"}}'},
        )
        status_urls.append(accepted(response))
    kitty = {
        "image_path": str(photos["chelsea"]),
        "external_id": "kitty",
        "metadata": {"group": "c"},
    }
    response = http.post(f"/v1/collections/{name}/items", headers=headers, json={"items": [kitty]})
    status_urls.append(accepted(response))
    ids: dict[str, int] = {}
    for url, names in zip(status_urls, [*GROUPS.values(), ("kitty",)], strict=True):
        ids |= item_ids(wait_job(http, url, headers), names)
    return Searched(api, name, headers, ids)


def _chelsea(searched: Searched) -> set[int]:
    return {searched.ids["chelsea"], searched.ids["kitty"]}


def _form(**fields: str) -> list[tuple[str, tuple[None, str]]]:
    """Multipart form fields without a file part (httpx sends `data=` alone urlencoded)."""
    return [(name, (None, value)) for name, value in fields.items()]


def _hits(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


def test_text_search_finds_the_cat_first(http: httpx.Client, searched: Searched) -> None:
    response = http.post(searched.url, headers=searched.headers, json={"text": "a cat"})
    body = response.json()
    hits = _hits(response)
    assert body["collection"] == searched.collection and isinstance(body["model"], str)
    assert len(hits) == 7  # k defaults to 10: every item
    assert hits[0]["item_id"] in _chelsea(searched)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)
    for hit in hits:
        assert HIT_FIELDS <= set(hit), hit
        assert hit["kind"] == "image" and isinstance(hit["score"], float)
        assert isinstance(hit["source"], str) and isinstance(hit["metadata"], dict)
        item = hit["item_id"]
        assert hit["media_url"].startswith(f"{searched.api.url}/v1/items/{item}/media?token=")
        assert hit["thumbnail_url"].startswith(
            f"{searched.api.url}/v1/items/{item}/thumbnail?token="
        )
    uploaded = next(h for h in hits if h["item_id"] == searched.ids["chelsea"])
    assert uploaded["metadata"] == {"filename": "chelsea.png", "group": "a"}
    assert uploaded["external_id"] is None
    kitty = next(h for h in hits if h["item_id"] == searched.ids["kitty"])
    assert kitty["external_id"] == "kitty" and kitty["metadata"] == {"group": "c"}


def test_search_by_an_uploaded_image(
    http: httpx.Client, searched: Searched, photos: dict[str, Path]
) -> None:
    response = http.post(
        searched.url,
        headers=searched.headers,
        files={"image": ("cat.png", photos["chelsea"].read_bytes())},
        data={"k": "3"},
    )
    hits = _hits(response)
    assert len(hits) == 3
    assert {h["item_id"] for h in hits[:2]} == _chelsea(searched)
    assert hits[0]["score"] > 0.99  # the same photo

    response = http.post(
        searched.url,
        headers=searched.headers,
        files={"image": ("coffee.png", photos["coffee"].read_bytes())},
    )
    assert _hits(response)[0]["item_id"] == searched.ids["coffee"]


def test_image_and_text_composed(
    http: httpx.Client, searched: Searched, photos: dict[str, Path]
) -> None:
    coffee = {"image": ("coffee.png", photos["coffee"].read_bytes())}
    alone = _hits(http.post(searched.url, headers=searched.headers, files=coffee))
    composed = http.post(
        searched.url,
        headers=searched.headers,
        files=coffee,
        data={"text": "a cat", "weights": '{"image": 0.3, "text": 0.7}', "k": "3"},
    )
    hits = _hits(composed)
    assert len(hits) == 3
    # The text moves the cat from the bottom, where the coffee photo alone puts it, to the
    # top, and the coffee stays near it.
    assert alone[0]["item_id"] == searched.ids["coffee"]
    assert {h["item_id"] for h in alone[-2:]} == _chelsea(searched)
    assert {h["item_id"] for h in hits} == _chelsea(searched) | {searched.ids["coffee"]}
    bad = http.post(searched.url, headers=searched.headers, files=coffee, data={"weights": "{"})
    error_of(bad, 422, field="weights")


def test_filter_and_min_score(http: httpx.Client, searched: Searched) -> None:
    query = {"text": "a cat", "k": 10}
    filtered = _hits(
        http.post(searched.url, headers=searched.headers, json=query | {"filter": {"group": "b"}})
    )
    assert sorted(h["item_id"] for h in filtered) == sorted(searched.ids[n] for n in GROUPS["b"])
    assert all(h["metadata"]["group"] == "b" for h in filtered)
    nothing = http.post(
        searched.url, headers=searched.headers, json=query | {"filter": {"group": "z"}}
    )
    assert _hits(nothing) == []

    everything = _hits(http.post(searched.url, headers=searched.headers, json=query))
    cut = (everything[0]["score"] + everything[-1]["score"]) / 2
    kept = _hits(http.post(searched.url, headers=searched.headers, json=query | {"min_score": cut}))
    assert 1 <= len(kept) < len(everything)
    assert all(h["score"] >= round(cut, 4) - 1e-4 for h in kept)
    assert [h["item_id"] for h in kept] == [h["item_id"] for h in everything[: len(kept)]]


@pytest.mark.parametrize("k", [0, 1001, "many", 2.5])
def test_k_is_validated(http: httpx.Client, searched: Searched, k: object) -> None:
    response = http.post(searched.url, headers=searched.headers, json={"text": "a cat", "k": k})
    error = error_of(response, 422, field="k")
    assert error["type"] == "invalid" and "k" in error["message"]


def test_other_bad_queries(http: httpx.Client, searched: Searched) -> None:
    as_form = http.post(searched.url, headers=searched.headers, files=_form(text="a cat", k="0"))
    error_of(as_form, 422, field="k")
    # A urlencoded form is neither: the answer says what to send.
    urlencoded = http.post(searched.url, headers=searched.headers, data={"text": "a cat"})
    assert "multipart/form-data" in error_of(urlencoded, 400)["message"]
    unknown = http.post(searched.url, headers=searched.headers, json={"txt": "a cat"})
    error_of(unknown, 422, field="txt")
    not_json = http.post(
        searched.url, headers=searched.headers | {"Content-Type": "application/json"}, content=b"{"
    )
    assert error_of(not_json, 400)["type"] == "bad_request"
    error_of(http.post(searched.url, headers=searched.headers, json=["a cat"]), 422)


def test_past_wait_ms_answers_202_and_the_job_has_the_hits(
    http: httpx.Client, searched: Searched, urls: Urls
) -> None:
    response = http.post(
        searched.url, headers=searched.headers, json={"text": "a cat", "k": 2, "wait_ms": 0}
    )
    status_url = accepted(response)
    job = wait_job(http, status_url, searched.headers, timeout=60)
    assert job["kind"] == "search" and job["state"] == "done"
    assert job["collection"] == searched.collection
    assert len(job["hits"]) == 2 and job["hits"][0]["item_id"] in _chelsea(searched)
    assert HIT_FIELDS <= set(job["hits"][0])
    # A key of another collection does not see the job.
    stranger = bearer(new_key(urls, [fresh("stranger")], "read"))
    error_of(http.get(status_url, headers=stranger), 404)


def test_more_like_this(http: httpx.Client, searched: Searched) -> None:
    # By external id: the other chelsea (the same photo, uploaded) comes first.
    by_external = _hits(
        http.post(searched.url, headers=searched.headers, json={"like": ["kitty"], "k": 3})
    )
    assert by_external[0]["item_id"] == searched.ids["chelsea"]
    assert searched.ids["kitty"] not in [h["item_id"] for h in by_external]
    # By item id, and as a form field: the other way round.
    by_id = _hits(
        http.post(
            searched.url,
            headers=searched.headers,
            files=_form(like=f"[{searched.ids['chelsea']}]", k="3"),
        )
    )
    assert by_id[0]["item_id"] == searched.ids["kitty"]
    assert searched.ids["chelsea"] not in [h["item_id"] for h in by_id]
    missing = http.post(searched.url, headers=searched.headers, json={"like": ["no-such-id"]})
    error = error_of(missing, 404)
    assert error["type"] == "not_found" and "no-such-id" in error["message"]

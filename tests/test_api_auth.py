"""API keys on real requests: 401 without a key or with an unknown or revoked one, either
header, scopes that hide other collections (and their jobs and media) as 404, read keys
that cannot ingest (403), and the per-key rate (429 with Retry-After)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy.orm import Session

from mmq.api.auth import KEY_TTL_S
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.store.api_keys import revoke_key
from tests.support.api import (
    bearer,
    error_of,
    item_ids,
    new_key,
    serving,
    upload,
)
from tests.support.names import fresh

pytestmark = pytest.mark.slow

NOWHERE_ITEM = 2**62  # no item has this id


@dataclass(frozen=True)
class Tenant:
    """A write key over one collection, which holds one uploaded photo."""

    collection: str
    key: str
    item_id: int
    status_url: str  # its ingest job

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.key)


def _tenant(http: httpx.Client, urls: Urls, photo: Path) -> Tenant:
    name = fresh("auth")
    key = new_key(urls, [name], "write")
    job = upload(http, name, bearer(key), {photo.name: photo})
    ids = item_ids(job, [photo.name])
    return Tenant(name, key, ids[photo.name], f"/v1/jobs/{job['job_id']}")


@pytest.fixture(scope="module")
def tenants(http: httpx.Client, urls: Urls, photos: dict[str, Path]) -> tuple[Tenant, Tenant]:
    return _tenant(http, urls, photos["chelsea"]), _tenant(http, urls, photos["coffee"])


def test_no_key_is_401_with_the_error_shape(http: httpx.Client) -> None:
    response = http.get("/v1/collections")
    error = error_of(response, 401)
    assert error["type"] == "unauthorized"
    assert "Bearer" in error["message"]
    assert response.headers["www-authenticate"] == "Bearer"
    # A scheme other than Bearer is no key either.
    error_of(http.get("/v1/collections", headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401)


def test_unknown_key_is_401(http: httpx.Client) -> None:
    forged = "mmq_00000000_" + "0" * 64
    for headers in (bearer(forged), {"X-API-Key": forged}, bearer("not-a-key")):
        response = http.get("/v1/collections", headers=headers)
        assert error_of(response, 401)["message"] == "unknown or revoked API key"
        assert response.headers["www-authenticate"] == "Bearer"


def test_revoked_key_is_401(http: httpx.Client, urls: Urls, db_session: Session) -> None:
    key = new_key(urls, [fresh("auth")], "read")
    assert http.get("/v1/collections", headers=bearer(key)).status_code == 200
    revoke_key(session=db_session, prefix=key)
    db_session.commit()
    # An API process keeps a key it checked for KEY_TTL_S: the revocation holds after that.
    time.sleep(KEY_TTL_S + 0.2)
    response = http.get("/v1/collections", headers=bearer(key))
    assert error_of(response, 401)["message"] == "unknown or revoked API key"


def test_x_api_key_header_works_as_bearer(
    http: httpx.Client, tenants: tuple[Tenant, Tenant]
) -> None:
    mine = tenants[0]
    by_bearer = http.get("/v1/collections", headers=mine.headers)
    by_header = http.get("/v1/collections", headers={"X-API-Key": mine.key})
    assert by_bearer.status_code == by_header.status_code == 200
    assert by_bearer.json() == by_header.json()
    assert [c["name"] for c in by_header.json()["collections"]] == [mine.collection]


def test_keys_see_their_own_collection(
    http: httpx.Client, tenants: tuple[Tenant, Tenant], photos: dict[str, Path]
) -> None:
    for tenant, photo in zip(tenants, ("chelsea", "coffee"), strict=True):
        listed = http.get("/v1/collections", headers=tenant.headers).json()["collections"]
        assert [(c["name"], c["counts"]) for c in listed] == [(tenant.collection, {"image": 1})]
        search = http.post(
            f"/v1/collections/{tenant.collection}/search",
            headers=tenant.headers,
            json={"text": "anything", "k": 5},
        )
        assert search.status_code == 200, search.text
        assert [h["item_id"] for h in search.json()["hits"]] == [tenant.item_id]
        job = http.get(tenant.status_url, headers=tenant.headers)
        assert job.status_code == 200 and job.json()["collection"] == tenant.collection
        media = http.get(f"/v1/items/{tenant.item_id}/media", headers=tenant.headers)
        assert media.status_code == 200 and media.content == photos[photo].read_bytes()
        thumb = http.get(f"/v1/items/{tenant.item_id}/thumbnail", headers=tenant.headers)
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"


def test_keys_cannot_see_each_others_collections(
    http: httpx.Client, tenants: tuple[Tenant, Tenant]
) -> None:
    for me, other in (tenants, tenants[::-1]):
        nowhere = fresh("nowhere")
        for name in (other.collection, nowhere):
            # The other's collection answers as one that does not exist, name aside.
            expected = f"unknown collection {name!r}"
            search = http.post(
                f"/v1/collections/{name}/search", headers=me.headers, json={"text": "a cat"}
            )
            assert error_of(search, 404)["message"] == expected
            ingest = http.post(
                f"/v1/collections/{name}/items",
                headers=me.headers,
                json={"items": [{"text": "planted"}]},
            )
            assert error_of(ingest, 404)["message"] == expected

        listed = http.get("/v1/collections", headers=me.headers).json()["collections"]
        assert other.collection not in [c["name"] for c in listed]

        job_id = other.status_url.rsplit("/", 1)[1]
        hidden = error_of(http.get(other.status_url, headers=me.headers), 404)
        missing = error_of(http.get("/v1/jobs/no-such-job", headers=me.headers), 404)
        assert hidden["message"] == missing["message"].replace("no-such-job", job_id)

        for what in ("media", "thumbnail"):
            hidden = error_of(
                http.get(f"/v1/items/{other.item_id}/{what}", headers=me.headers), 404
            )
            missing = error_of(
                http.get(f"/v1/items/{NOWHERE_ITEM}/{what}", headers=me.headers), 404
            )
            assert hidden["message"] == missing["message"].replace(
                str(NOWHERE_ITEM), str(other.item_id)
            )
            # Without a key, another item's media is 401, not 404: nothing is revealed.
            error_of(http.get(f"/v1/items/{other.item_id}/{what}"), 401)


def test_read_key_cannot_ingest(
    http: httpx.Client, urls: Urls, tenants: tuple[Tenant, Tenant], photos: dict[str, Path]
) -> None:
    name = tenants[0].collection
    reader = bearer(new_key(urls, [name], "read"))
    as_json = http.post(
        f"/v1/collections/{name}/items", headers=reader, json={"items": [{"text": "x"}]}
    )
    error = error_of(as_json, 403)
    assert error["type"] == "forbidden" and "read" in error["message"]
    as_upload = http.post(
        f"/v1/collections/{name}/items",
        headers=reader,
        files=[("file", ("chelsea.png", photos["chelsea"].read_bytes()))],
    )
    error_of(as_upload, 403)
    # It still reads: search and the listing work.
    search = http.post(f"/v1/collections/{name}/search", headers=reader, json={"text": "a cat"})
    assert search.status_code == 200 and len(search.json()["hits"]) == 1
    listed = http.get("/v1/collections", headers=reader).json()["collections"]
    assert [c["name"] for c in listed] == [name]


def test_rate_limit_answers_429_with_retry_after(
    settings: Settings, urls: Urls, http: httpx.Client
) -> None:
    limited = settings.model_copy(update={"api_rate_per_minute": 3})
    name = fresh("rate")
    key, other = new_key(urls, [name], "read"), new_key(urls, [name], "read")
    with serving(limited, urls) as api, httpx.Client(base_url=api.url, timeout=60) as slow:
        answers = [slow.get("/v1/collections", headers=bearer(key)) for _ in range(7)]
        # Three in one minute pass; seven cannot all pass even if a minute ends among them.
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]
        refused = next(r for r in answers if r.status_code == 429)
        error = error_of(refused, 429)
        assert error["type"] == "rate_limited" and "3 requests" in error["message"]
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # The rate is per key: another key still gets through.
        assert slow.get("/v1/collections", headers=bearer(other)).status_code == 200
    # The default server's rate is far above three.
    for _ in range(5):
        assert http.get("/v1/collections", headers=bearer(key)).status_code == 200

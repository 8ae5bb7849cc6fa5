"""The search page at `/` in a real headless browser: Playwright for Python driving Debian's
chromium, against the API over real servers and workers. One collection holds the bundled
photos (chelsea is the cat) and a short video; uploads go to a second one."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from mmq.embedded import Urls
from mmq.samples import write_demo_video
from mmq.schemas import IngestItem
from tests.support.api import Api, bearer, new_key
from tests.support.procs import Procs

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from mmq.client import Client

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)",
        allow_module_level=True,
    )

PHOTOS = "page_photos"  # the photos and the video, ingested once
UPLOADS = "page_uploads"  # filled by the page's upload form
WAIT_MS = 60_000  # a search or an ingest on a busy 2-CPU machine


@pytest.fixture(scope="module")
def collection(
    client: Client,
    workers: Procs,
    photos: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> str:
    # Six seconds, a cut at 2.5 s: the coffee's segment starts past 0, so a player left at
    # the start would not be inside it.
    video = tmp_path_factory.mktemp("page-video") / "clip.mp4"
    write_demo_video(video, photos, shots=(("rocket", 2.5), ("coffee", 3.5)))
    items = [
        IngestItem(image_path=str(path), external_id=name, metadata={"filename": path.name})
        for name, path in photos.items()
    ]
    items.append(IngestItem(video_path=str(video), external_id="clip"))
    result = client.ingest(items, collection=PHOTOS).result(timeout=300)
    assert result.failed == 0, [i.error for i in result.items if i.error]
    return PHOTOS


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM))
        yield launched
        launched.close()


@pytest.fixture()
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test: its own, empty sessionStorage."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(WAIT_MS)
    yield context.new_page()
    context.close()


def signed_in(page: Page, api: Api, key: str) -> Page:
    page.goto(api.url)
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")
    page.wait_for_selector("#app", state="visible")
    return page


def test_key_endpoint_tells_the_role_and_scope(api: Api, urls: Urls) -> None:
    key = new_key(urls, [PHOTOS], "read")
    with httpx.Client(base_url=api.url, timeout=30) as http:
        assert http.get("/v1/key").status_code == 401
        me = http.get("/v1/key", headers=bearer(key)).json()
    assert me == {"prefix": key.split("_")[1], "role": "read", "collections": [PHOTOS]}


def test_without_a_key_the_prompt_shows_and_a_read_key_gets_no_upload(
    page: Page, api: Api, urls: Urls, collection: str
) -> None:
    page.goto(api.url)
    assert page.locator("#key-form").is_visible()
    assert page.locator("#app").is_hidden()
    # An unknown key is dropped with the API's message, and the prompt stays.
    page.fill("#key-input", "mmq_00000000_" + "0" * 64)
    page.press("#key-input", "Enter")
    page.wait_for_selector("#status.error")
    assert "unknown or revoked" in page.locator("#status").inner_text()
    assert page.locator("#key-form").is_visible()
    assert page.evaluate("sessionStorage.getItem('mmq.key')") is None

    signed_in(page, api, new_key(urls, [collection], "read"))
    assert page.locator("#key-form").is_hidden()
    picked = page.locator("#collection option").first.inner_text()
    assert "14 image" in picked and "1 video" in picked  # counts per kind
    # Not disabled: absent.
    assert page.locator("#upload-input").count() == 0
    assert page.locator("#upload").count() == 0
    # Forgetting the key brings the prompt back.
    page.click("#forget")
    assert page.locator("#key-form").is_visible()
    assert page.evaluate("sessionStorage.getItem('mmq.key')") is None


def test_a_write_key_gets_the_upload_control(
    page: Page, api: Api, urls: Urls, collection: str
) -> None:
    signed_in(page, api, new_key(urls, [collection], "write"))
    assert page.locator("#upload-input").is_visible()


def test_typing_a_cat_puts_chelsea_first(
    page: Page, api: Api, urls: Urls, collection: str, tmp_path: Path
) -> None:
    signed_in(page, api, new_key(urls, [collection], "read"))
    page.fill("#q", "a cat")
    page.press("#q", "Enter")  # Enter submits the search
    first = page.locator(".card").first
    first.wait_for()
    assert first.get_attribute("data-name") == "chelsea"
    assert first.locator(".name").inner_text() == "chelsea"
    score = first.locator(".score").inner_text()
    assert len(score.split(".")[1]) == 3, score
    page.wait_for_function(  # thumbnails loaded before the screenshot
        "[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth)"
    )
    path = tmp_path / "search-a-cat.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")

    # More like this: the cat's neighbours, without the cat itself.
    first.locator("button.more").click()
    page.wait_for_function("!document.querySelector('.card[data-name=chelsea]')")
    assert page.locator(".card").count() > 0


def test_picking_the_cat_photo_puts_chelsea_first(
    page: Page, api: Api, urls: Urls, collection: str, photos: dict[str, Path]
) -> None:
    signed_in(page, api, new_key(urls, [collection], "read"))
    page.set_input_files("#image-input", str(photos["chelsea"]))
    first = page.locator(".card").first
    first.wait_for()
    assert first.get_attribute("data-name") == "chelsea"

    # Text and image together: a composed query, weighted by the slider.
    page.evaluate("document.getElementById('results').replaceChildren()")
    page.fill("#weight", "0.7")
    page.fill("#q", "a cat")
    page.press("#q", "Enter")
    first.wait_for()
    assert first.get_attribute("data-name") == "chelsea"
    assert "image 0.70 · text 0.30" in page.locator("#weight-out").inner_text()


def test_dropping_the_cat_photo_puts_chelsea_first(
    page: Page, api: Api, urls: Urls, collection: str, photos: dict[str, Path]
) -> None:
    signed_in(page, api, new_key(urls, [collection], "read"))
    data = base64.b64encode(photos["chelsea"].read_bytes()).decode()
    # A real drop: a DataTransfer holding the file, dragged over the page and dropped.
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "chelsea.png", { type: "image/png" }));
            const target = document.getElementById("results");
            for (const type of ["dragenter", "dragover", "drop"]) {
                target.dispatchEvent(new DragEvent(type, {
                    dataTransfer: transfer, bubbles: true, cancelable: true,
                }));
            }
        }""",
        data,
    )
    first = page.locator(".card").first
    first.wait_for()
    assert first.get_attribute("data-name") == "chelsea"
    assert "chelsea.png" in page.locator("#image-name").inner_text()


def test_a_video_hit_opens_the_player_inside_its_segment(
    page: Page, api: Api, urls: Urls, collection: str, tmp_path: Path
) -> None:
    signed_in(page, api, new_key(urls, [collection], "read"))
    page.fill("#q", "a cup of coffee")
    page.press("#q", "Enter")
    video_card = page.locator(".card[data-kind=video]")
    video_card.wait_for()
    start = float(video_card.get_attribute("data-start-s") or "nan")
    end = float(video_card.get_attribute("data-end-s") or "nan")
    assert 2 <= start < end <= 6.1  # the coffee shot, after the cut at 2.5 s

    video_card.locator(".preview").click()
    assert page.locator("#player").get_attribute("open") is not None
    page.wait_for_function(
        """([start, end]) => {
            const v = document.getElementById("video");
            const t = v.currentTime;
            return v.readyState >= 1 && !v.seeking && t >= start && t <= end;
        }""",
        arg=[start, end],
    )
    current = page.evaluate("document.getElementById('video').currentTime")
    assert start <= current <= end
    mark = page.locator("#mark").bounding_box()
    assert mark is not None and mark["width"] > 0  # the segment is marked on the timeline
    assert page.locator("#segments button").count() == 2  # the rocket's and the coffee's
    path = tmp_path / "player.png"
    page.screenshot(path=str(path))
    print(f"screenshot: {path}")

    # Each listed segment seeks; Escape closes the player and gives focus back.
    first = page.locator("#segments button").first
    seg_start = float(first.get_attribute("data-start-s") or "nan")
    assert seg_start < start
    first.click()
    page.wait_for_function(
        "(s) => Math.abs(document.getElementById('video').currentTime - s) < 0.05", arg=seg_start
    )
    assert first.get_attribute("aria-current") == "true"
    page.keyboard.press("Escape")
    page.wait_for_function("!document.getElementById('player').open")
    assert page.evaluate("document.activeElement.classList.contains('preview')")


def test_uploading_shows_progress_and_each_outcome(
    page: Page, api: Api, urls: Urls, collection: str, photos: dict[str, Path]
) -> None:
    signed_in(page, api, new_key(urls, [collection, UPLOADS], "write"))
    page.select_option("#collection", UPLOADS)
    assert "(empty)" in page.locator("#collection option:checked").inner_text()
    page.set_input_files("#upload-input", [str(photos["coffee"]), str(photos["rocket"])])
    page.click("#upload-form button[type=submit]")
    outcomes = page.locator("#upload-outcomes li")
    outcomes.first.wait_for()
    assert outcomes.count() == 2
    assert [outcomes.nth(i).get_attribute("data-status") for i in range(2)] == ["stored"] * 2
    assert outcomes.first.inner_text() == "coffee.png: stored"
    assert page.locator("#upload-progress").is_visible()
    assert page.evaluate("document.getElementById('upload-progress').value") == 1
    assert "Done: 100%" in page.locator("#upload-phase").inner_text()
    assert "2 stored, 0 failed" in page.locator("#status").inner_text()
    page.wait_for_function(  # the picker's counts are refreshed
        "document.querySelector('#collection option:checked').textContent.includes('2 image')"
    )

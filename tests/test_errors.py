"""The one error family: kinds, the way an item's error is written, the trip through Celery's
JSON result backend back to a producer, and what the CLI makes of each kind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.backends.base import BaseBackend

from mmq.cli import main
from mmq.client import Client, _as_mmq_error
from mmq.config import Settings, get_settings
from mmq.errors import (
    BadRequest,
    Conflict,
    InvalidInput,
    JobTimeout,
    MmqError,
    NotFound,
    Unavailable,
    describe,
)

# Loopback addresses nothing listens on: a Client connects to nothing until a job is sent.
NOWHERE = {
    "MMQ_BROKER_URL": "redis://127.0.0.1:1/0",
    "MMQ_DATABASE_URL": "postgresql://mmq@127.0.0.1:1/mmq",
}


def test_each_kind_has_its_own_name_and_exit_code() -> None:
    kinds = [InvalidInput, BadRequest, NotFound, Conflict, Unavailable, JobTimeout]
    assert all(issubclass(k, MmqError) for k in kinds)
    assert [k.kind for k in kinds] == [
        "invalid_input",
        "bad_request",
        "not_found",
        "conflict",
        "unavailable",
        "timeout",
    ]
    assert [k.exit_code for k in kinds] == [2, 3, 4, 5, 6, 7]
    assert MmqError.kind == "error" and MmqError.exit_code == 1
    # Callers that only know the builtins still catch what they expect.
    assert issubclass(BadRequest, ValueError) and issubclass(InvalidInput, ValueError)
    assert issubclass(NotFound, LookupError) and issubclass(JobTimeout, TimeoutError)


def test_an_items_error_is_its_message_and_a_bug_says_so() -> None:
    assert describe(InvalidInput("image is empty (0 bytes)")) == "image is empty (0 bytes)"
    assert describe(KeyError("vector")) == "internal error: KeyError: 'vector'"
    assert describe(RuntimeError()) == "internal error: RuntimeError"


@pytest.mark.parametrize("kind", [InvalidInput, BadRequest, NotFound, Conflict, Unavailable])
def test_a_workers_error_reaches_the_producer_as_its_kind(kind: type[MmqError]) -> None:
    # What a worker's failed task stores in the result backend, and what a producer's
    # AsyncResult rebuilds from it (JSON only, as mmq configures Celery).
    backend = BaseBackend(Celery(set_as_current=False), serializer="json")
    stored = json.loads(json.dumps(backend.prepare_exception(kind("unknown collection 'x'"))))
    assert stored["exc_module"] == "mmq.errors" and stored["exc_type"] == kind.__name__
    rebuilt = _as_mmq_error(backend.exception_to_python(stored))
    assert type(rebuilt) is kind and str(rebuilt) == "unknown collection 'x'"


def test_an_error_that_is_not_mmqs_reaches_the_producer_as_a_bug() -> None:
    error = _as_mmq_error(ZeroDivisionError("division by zero"))
    assert type(error) is MmqError and error.kind == "error"
    assert str(error) == "internal error: ZeroDivisionError: division by zero"


@pytest.fixture()
def offline_client(monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    for key, value in NOWHERE.items():
        monkeypatch.setenv(key, value)
    client = Client(Settings())
    yield client
    client.close()


def test_an_invalid_item_is_refused_before_anything_is_written(offline_client: Client) -> None:
    # Nothing listens at NOWHERE: reaching PostgreSQL or Redis would fail differently.
    with pytest.raises(BadRequest, match=r"item 1: image_pth: Extra inputs are not permitted"):
        offline_client.ingest([{"text": "fine"}, {"image_pth": "x.jpg"}], collection="c")
    with pytest.raises(BadRequest, match="nothing to ingest"):
        offline_client.ingest([], collection="c")
    with pytest.raises(BadRequest, match="invalid ingest: collection: String should match"):
        offline_client.ingest([{"text": "fine"}], collection="bad name; DROP TABLE items")


def test_a_database_that_cannot_be_reached_is_unavailable(offline_client: Client) -> None:
    with pytest.raises(Unavailable, match="cannot reach PostgreSQL: .*127.0.0.1.*refused"):
        offline_client.ingest([{"text": "fine"}], collection="c")
    with pytest.raises(Unavailable, match="cannot reach PostgreSQL"):
        offline_client.job("0a1b2c")


def test_an_invalid_search_is_refused_before_it_is_sent(offline_client: Client) -> None:
    with pytest.raises(BadRequest, match="a search needs text, an image, or a vector"):
        offline_client.search(collection="c")
    with pytest.raises(NotFound, match="no such image file"):
        offline_client.search(collection="c", image="/nonexistent/query.jpg")


@pytest.mark.parametrize(
    ("argv", "code", "line"),
    [
        (
            ["ingest", "/nonexistent/photos", "--collection", "c"],
            4,
            "mmq ingest: not_found: no such file or folder: /nonexistent/photos",
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--targets", "image,films"],
            3,
            "mmq search: bad_request: --targets 'image,films': use kinds from image, text, "
            "pair, video",
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--filter", "[1]"],
            3,
            'mmq search: bad_request: --filter must be a JSON object, e.g. {"split": "dev"}',
        ),
        (
            ["status", "0a1b2c"],
            6,
            "mmq status: unavailable: cannot reach PostgreSQL: connection failed: connection to "
            'server at "127.0.0.1", port 1 failed: Connection refused',
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--weights", "image:1"],
            3,
            "mmq search: bad_request: --weights 'image:1': expected NAME=NUMBER,... "
            "(image=0.3,text=0.7)",
        ),
        # The first hour's mistakes (issue: "no hangs, no tracebacks").
        (
            ["search", "--collection", "c"],
            3,
            "mmq search: bad_request: invalid search: a search needs text, an image, or a vector",
        ),
        (
            ["search", "--collection", "c", "--image", "/nonexistent/query.jpg"],
            4,
            "mmq search: not_found: no such image file: /nonexistent/query.jpg",
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--filter", "{split: dev}"],
            3,
            "mmq search: bad_request: --filter is not JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)",
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--filter", '["x"]'],
            3,
            'mmq search: bad_request: --filter must be a JSON object, e.g. {"split": "dev"}',
        ),
        (
            ["search", "--collection", "c", "--text", "x", "--targets", "images"],
            3,
            "mmq search: bad_request: --targets 'images': use kinds from image, text, pair, video",
        ),
        (
            ["ingest", __file__, "--collection", "c", "--captions", "/nonexistent/c.csv"],
            4,
            "mmq ingest: not_found: no such captions file: /nonexistent/c.csv",
        ),
        (
            ["ingest", __file__, "--collection", "c", "--metadata", "{split: dev}"],
            3,
            "mmq ingest: bad_request: --metadata is not JSON: Expecting property name enclosed "
            "in double quotes: line 1 column 2 (char 1)",
        ),
    ],
)
def test_the_cli_ends_with_one_line_and_the_kinds_exit_code(
    argv: list[str],
    code: int,
    line: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    for key, value in NOWHERE.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MMQ_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()  # the commands read the settings through it
    try:
        assert main(argv) == code
    finally:
        get_settings.cache_clear()
    assert capsys.readouterr().err == line + "\n"

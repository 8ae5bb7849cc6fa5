"""What an item's metadata may hold: JSON that PostgreSQL can store, checked when the item is
built (by a producer, or by the worker for a raw message), before anything is written."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mmq.schemas import IngestItem


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param({"x": float("inf")}, id="inf"),
        pytest.param({"x": -float("inf")}, id="minus-inf"),
        pytest.param({"x": float("nan")}, id="nan"),
        pytest.param({"a": [1, {"b": float("nan")}]}, id="nested-nan"),
    ],
)
def test_non_finite_numbers_in_metadata_are_refused(metadata: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="metadata is not valid JSON") as info:
        IngestItem(text="x", metadata=metadata)
    assert [e["loc"] for e in info.value.errors()] == [("metadata",)]


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        pytest.param({"k\x00": "v"}, "NUL character", id="nul-in-a-key"),
        pytest.param({"k": "a\x00b"}, "NUL character", id="nul-in-a-value"),
        pytest.param({"k": "\udcff"}, "unpaired surrogate", id="invalid-utf8"),
    ],
)
def test_what_postgresql_cannot_store_is_refused(metadata: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        IngestItem(text="x", metadata=metadata)


def test_json_metadata_is_kept_as_given() -> None:
    metadata = {"a": [1, {"b": 2.5}], "q": "'); DROP TABLE items;--", "none": None}
    assert IngestItem(text="x", metadata=metadata).metadata == metadata

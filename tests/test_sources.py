"""Caption files and folders → ingest items (mmq/cli/sources.py): the extra columns of a
captions CSV and a metadata object for every item."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from mmq.cli.sources import Captions, file_items, read_captions
from mmq.errors import BadRequest


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def images(folder: Path, *names: str) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (200, 0, 0)).save(folder / name)
    return folder


def test_image_and_caption_alone_read_as_before(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "c.csv", "image,caption\na.jpg,a dog\na.jpg, a brown dog \nb.jpg,a cat\n"
    )
    captions = read_captions(csv)
    assert captions == {"a.jpg": ["a dog", "a brown dog"], "b.jpg": ["a cat"]}
    assert captions.metadata == {}


def test_extra_columns_become_metadata_one_value_or_the_distinct_values(tmp_path: Path) -> None:
    csv = write(
        tmp_path / "c.csv",
        "image,author,caption,split,lang,\n"
        "a.jpg,Ann,a dog,train,en,\n"
        "a.jpg,Ann,un chien,train,fr,\n"
        "a.jpg,Ann,a brown dog,train,en,\n"
        "b.jpg,,a cat,test,,\n"
        "c.jpg,,a bird,,,\n",
    )
    captions = read_captions(csv)
    assert captions["a.jpg"] == ["a dog", "un chien", "a brown dog"]
    assert captions.metadata == {
        # Rows that agree give the value; rows that differ, the distinct values in order.
        "a.jpg": {"author": "Ann", "split": "train", "lang": ["en", "fr"]},
        # Empty cells count for nothing; an image with none filled has no entry.
        "b.jpg": {"split": "test"},
    }


def test_a_captions_column_or_a_short_row_is_refused_with_a_reason(tmp_path: Path) -> None:
    clash = write(tmp_path / "clash.csv", "image,caption,captions\na.jpg,a dog,x\n")
    with pytest.raises(BadRequest, match="column captions"):
        read_captions(clash)
    short = write(tmp_path / "short.csv", "image,caption\na.jpg,a dog\nb.jpg\n")
    with pytest.raises(BadRequest, match="line 3: expected an image and a caption"):
        read_captions(short)


def test_file_items_merge_metadata_then_columns_then_captions(tmp_path: Path) -> None:
    folder = images(tmp_path / "photos", "a.jpg", "trip/b.jpg", "c.jpg")
    (folder / "clip.mp4").write_bytes(b"not decoded here")
    captions = Captions(
        {"a.jpg": ["a dog", "a brown dog"], "trip/b.jpg": ["a cat"]},
        {"a.jpg": {"author": "Ann", "source": "csv"}, "trip/b.jpg": {"split": "test"}},
    )
    items = file_items([str(folder)], captions, metadata={"source": "cli", "batch": 7})
    by_id = {str(item.external_id): item for item in items}
    assert sorted(by_id) == ["a.jpg", "c.jpg", "clip.mp4", "trip/b.jpg"]
    a = by_id["a.jpg"]
    assert (a.kind, a.text) == ("pair", "a dog")
    assert a.metadata == {
        "source": "csv",  # the image's own column overrides the common metadata
        "batch": 7,
        "author": "Ann",
        "captions": ["a dog", "a brown dog"],
    }
    # Matched by its path under the folder, as its captions are.
    assert by_id["trip/b.jpg"].metadata == {
        "source": "cli",
        "batch": 7,
        "split": "test",
        "captions": ["a cat"],
    }
    assert by_id["c.jpg"].kind == "image"
    assert by_id["c.jpg"].metadata == {"source": "cli", "batch": 7}
    assert by_id["clip.mp4"].metadata == {"source": "cli", "batch": 7}
    # The common metadata is copied, not shared.
    assert by_id["c.jpg"].metadata is not by_id["clip.mp4"].metadata


def test_file_items_without_metadata_or_with_a_plain_captions_dict(tmp_path: Path) -> None:
    folder = images(tmp_path, "a.jpg", "b.jpg")
    items = file_items([str(folder)], {"a.jpg": ["a dog"]})
    assert [(i.external_id, i.kind, i.metadata) for i in items] == [
        ("a.jpg", "pair", {"captions": ["a dog"]}),
        ("b.jpg", "image", {}),
    ]


def test_a_read_file_goes_all_the_way_to_the_items(tmp_path: Path) -> None:
    folder = images(tmp_path / "photos", "a.jpg")
    csv = write(tmp_path / "c.csv", "image,caption,license\na.jpg,a dog,CC-BY\n")
    (item,) = file_items([str(folder)], read_captions(csv), metadata={"shoot": "x"})
    assert item.metadata == {"shoot": "x", "license": "CC-BY", "captions": ["a dog"]}

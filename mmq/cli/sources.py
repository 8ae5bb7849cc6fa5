"""Turning command-line paths and caption files into ingest items."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmq.errors import BadRequest, NotFound
from mmq.schemas import IngestItem

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi"})


def collect_files(paths: list[str]) -> list[tuple[Path, str]]:
    """Image and video files under the given files/folders, each with an external id: its
    path relative to the folder it was found in (or its name, for a file given directly)."""
    found: list[tuple[Path, str]] = []
    wanted = IMAGE_SUFFIXES | VIDEO_SUFFIXES
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for file in sorted(path.rglob("*")):
                if file.is_file() and file.suffix.lower() in wanted:
                    found.append((file, file.relative_to(path).as_posix()))
        elif path.exists():
            found.append((path, path.name))  # given explicitly: let the worker judge it
        else:
            raise NotFound(f"no such file or folder: {path}")
    return found


class Captions(dict[str, list[str]]):
    """Image name → its captions, as `read_captions` reads them; `metadata` holds each
    image's other columns (image name → column → value)."""

    def __init__(
        self, texts: dict[str, list[str]], metadata: dict[str, dict[str, Any]] | None = None
    ) -> None:
        super().__init__(texts)
        self.metadata = metadata or {}


def read_captions(path: str | Path) -> Captions:
    """`image,caption` CSV (several rows per image) → image name → captions.

    Any other column becomes metadata of the image its row names (`Captions.metadata`),
    under the column's name, as text (CSV has no types). Where an image's rows agree on a
    column (the usual case: a license, an author, a split), the metadata holds that value,
    so `filter={"split": "train"}` finds it; where they differ, it holds the list of the
    distinct values in the order of the rows, so that none is dropped. Empty cells count
    for nothing; a column empty in every row of an image is left out of its metadata.
    The column `captions` cannot be given: it is where the captions themselves are kept."""
    captions: dict[str, list[str]] = defaultdict(list)
    columns: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    try:
        f = open(path, newline="", encoding="utf-8")  # closed by the `with` below
    except FileNotFoundError:
        raise NotFound(f"no such captions file: {path}") from None
    except OSError as exc:
        raise BadRequest(f"cannot read the captions file {path}: {exc.strerror}") from None
    with f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
            raise BadRequest(f"{path}: expected the columns image,caption")
        # Header cell → metadata key; a header cell left empty (a trailing comma) names none.
        extra = {c: c.strip() for c in reader.fieldnames if c not in ("image", "caption")}
        extra = {c: key for c, key in extra.items() if key}
        if "captions" in extra.values():
            raise BadRequest(f"{path}: the column captions would hide the captions: rename it")
        for row in reader:
            if row["image"] is None or row["caption"] is None:
                raise BadRequest(f"{path}, line {reader.line_num}: expected an image and a caption")
            image = row["image"].strip()
            captions[image].append(row["caption"].strip())
            for column, key in extra.items():
                value = (row.get(column) or "").strip()
                if value and value not in columns[image][key]:
                    columns[image][key].append(value)
    metadata = {
        image: {c: values[0] if len(values) == 1 else values for c, values in found.items()}
        for image, found in columns.items()
    }
    return Captions(dict(captions), {image: m for image, m in metadata.items() if m})


def file_items(
    paths: list[str],
    captions: Mapping[str, list[str]] | None,
    *,
    metadata: dict[str, Any] | None = None,
) -> list[IngestItem]:
    """Videos, images, or image+caption pairs (first caption; all of them kept in metadata).

    `metadata` goes into every item's metadata; an image's own columns of the captions file
    (`Captions.metadata`) override it key by key, and its `captions` come last."""
    items = []
    texts_of = captions or {}
    columns_of = captions.metadata if isinstance(captions, Captions) else {}
    for file, external_id in collect_files(paths):
        common = dict(metadata or {})
        if file.suffix.lower() in VIDEO_SUFFIXES:
            items.append(IngestItem(video_path=str(file), external_id=external_id, metadata=common))
            continue
        name = file.name if file.name in texts_of else external_id
        texts = texts_of.get(name)
        own = {**common, **columns_of.get(name, {})}
        items.append(
            IngestItem(
                image_path=str(file),
                text=texts[0] if texts else None,
                external_id=external_id,
                metadata={**own, "captions": texts} if texts else own,
            )
        )
    return items

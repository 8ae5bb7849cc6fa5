"""Turning command-line paths and caption files into ingest items."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

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


def read_captions(path: str | Path) -> dict[str, list[str]]:
    """`image,caption` CSV (several rows per image) → image name → captions."""
    captions: dict[str, list[str]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "caption"} <= set(reader.fieldnames):
            raise BadRequest(f"{path}: expected the columns image,caption")
        for row in reader:
            captions[row["image"].strip()].append(row["caption"].strip())
    return dict(captions)


def file_items(paths: list[str], captions: dict[str, list[str]] | None) -> list[IngestItem]:
    """Videos, images, or image+caption pairs (first caption; all of them kept in metadata)."""
    items = []
    for file, external_id in collect_files(paths):
        if file.suffix.lower() in VIDEO_SUFFIXES:
            items.append(IngestItem(video_path=str(file), external_id=external_id))
            continue
        texts = (captions or {}).get(file.name) or (captions or {}).get(external_id)
        items.append(
            IngestItem(
                image_path=str(file),
                text=texts[0] if texts else None,
                external_id=external_id,
                metadata={"captions": texts} if texts else {},
            )
        )
    return items

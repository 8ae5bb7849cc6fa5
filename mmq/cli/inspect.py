"""`mmq collections [--json]` and `mmq get --collection C (--id X | --item-id N) [--json]`.

Straight from PostgreSQL (embedded when no URL is configured) through the Client: no
queue, no worker, no model."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # building the parser loads no client
    from mmq.jobs.inventory import CollectionInfo, ItemInfo


def add_collections_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="a JSON list, one object per collection")


def add_get_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--id", dest="external_id", metavar="ID", help="the item's external id")
    which.add_argument("--item-id", type=int, metavar="N", help="the item's id")
    p.add_argument("--json", action="store_true")


def run_collections(args: argparse.Namespace) -> int:
    from mmq.client import Client

    client = Client()
    try:
        found = client.collections()
    finally:
        client.close()
    if args.json:
        print(json.dumps([c.as_json() for c in found], indent=2))
    elif not found:
        print("no collections: ingest into one with `mmq ingest --collection NAME ...`")
    else:
        for c in found:
            print(_collection_line(c))
    return 0


def run_get(args: argparse.Namespace) -> int:
    """The item, or NotFound (exit status 4) naming the collection or the id missing."""
    from mmq.client import Client

    client = Client()
    try:
        item = client.get(args.collection, external_id=args.external_id, item_id=args.item_id)
    finally:
        client.close()
    if args.json:
        print(json.dumps(item.as_json(), indent=2))
    else:
        _print_item(item)
    return 0


def _collection_line(c: CollectionInfo) -> str:
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(c.counts.items()))
    items = f"{c.items} items" + (f" ({kinds})" if kinds else "")
    return (
        f"{c.name}  {c.model} (version {c.model_version})  fusion {c.fusion}  dim {c.dim}  "
        f"{items}  {_size(c.size_bytes)}  created {_time(c.created_at)}  "
        f"updated {_time(c.updated_at)}"
    ) + _reindex_note(c)


def _reindex_note(c: CollectionInfo) -> str:
    if c.reindex is None:
        return ""
    r = c.reindex
    note = f"  reindex to {r['model']}: {r['state']} (job {r['job_id']})"
    return note + (f": {r['error']}" if r["error"] else "")


def _print_item(item: ItemInfo) -> None:
    print(f"item {item.item_id} of collection {item.collection!r}")
    fields = {
        "external_id": item.external_id,
        "kind": item.kind,
        "uri": item.uri,
        "text": item.text,
        "metadata": json.dumps(item.metadata, ensure_ascii=False),
        "created": _time(item.created_at),
        "updated": _time(item.updated_at),
    }
    if item.duration_s is not None:
        fields["duration_s"] = f"{item.duration_s:.2f}"
    for name, value in fields.items():
        if value is not None:
            print(f"  {name:12s} {value}")
    if item.segments is not None:
        print(f"  {'segments':12s} {len(item.segments)}")
        for s in item.segments:
            print(
                f"    {s.ordinal:3d}  {s.start_s:.1f}-{s.end_s:.1f}s  keyframe {s.keyframe_s:.1f}s"
            )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size, unit = n / 1024, "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    return f"{size:.1f} {unit}"


def _time(at: datetime | None) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}" if at else "-"

"""`mmq delete --collection C (--id X ... | --item-id N ... | --filter JSON | --all)`: a
delete job on the ingest queue, waited for unless --no-wait."""

from __future__ import annotations

import argparse
import sys


def add_delete_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--id", action="append", dest="ids", metavar="ID", help="an external id (repeat)"
    )
    what.add_argument(
        "--item-id",
        action="append",
        type=int,
        dest="item_ids",
        metavar="N",
        help="an item id (repeat)",
    )
    what.add_argument("--filter", metavar="JSON", help='items whose metadata contains it: {"a": 1}')
    what.add_argument("--all", action="store_true", help="the whole collection, items and all")
    p.add_argument("--no-wait", action="store_true", help="print the job's id and exit")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=float, default=600.0)


def run_delete(args: argparse.Namespace) -> int:
    """Delete and wait: "N deleted" on stdout, each id the collection does not hold on
    stderr (not a failure: the others are deleted)."""
    from mmq.broker import INGEST_QUEUE
    from mmq.cli.commands import _json_object, wait_watched
    from mmq.client import Client

    client = Client()
    job = client.delete(
        args.collection,
        external_ids=args.ids,
        item_ids=args.item_ids,
        filter=_json_object("--filter", args.filter),
        all=args.all,
    )
    if args.no_wait:
        print(job.id)
        return 0
    result = wait_watched(client, job.id, job.result, args, queue=INGEST_QUEUE)
    if args.json:
        print(result.model_dump_json())
    else:
        removed = f"; collection {args.collection!r} removed" if args.all else ""
        print(f"{result.deleted} deleted{removed}")
    for missing in result.missing:
        print(f"mmq delete: not in collection {args.collection!r}: {missing}", file=sys.stderr)
    return 0

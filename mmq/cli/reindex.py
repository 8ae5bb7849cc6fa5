"""`mmq reindex --collection C --model NAME [--wait] [--allow-missing]`: re-embed a
collection with another model in the background; searches keep the old one until the
switch. Without --wait, print the job's id (`mmq status` follows it)."""

from __future__ import annotations

import argparse
import sys


def add_reindex_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    p.add_argument("--model", required=True, help="lite, lite-conse, lite+head:<dir>, clip:<name>")
    p.add_argument("--wait", action="store_true", help="show progress and wait for the switch")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="switch even if items cannot be re-embedded (their original is gone): they are "
        "deleted at the switch",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeout", type=float, default=24 * 3600.0)


def run_reindex(args: argparse.Namespace) -> int:
    """Exit 0 once switched; 2 when items failed and the switch waits for a decision."""
    from mmq.broker import INGEST_QUEUE, model_queue
    from mmq.cli.commands import _watch, wait_watched, wait_with_progress
    from mmq.client import Client

    client = Client()
    job = client.reindex(args.collection, model=args.model, allow_missing=args.allow_missing)
    if not args.wait:
        print(job.id)
        return 0
    print(f"reindex job {job.id}", file=sys.stderr)
    queue = model_queue(INGEST_QUEUE, args.model)
    wait_with_progress(job, args.timeout, quiet=args.json, watch=_watch(client, queue, args))
    result = wait_watched(client, job.id, job.result, args, queue=queue)
    if args.json:
        print(result.model_dump_json())
    for failure in [] if args.json else result.failed:
        name = failure.external_id or f"item {failure.item_id}"
        print(f"failed: {name}: {failure.error}", file=sys.stderr)
    if not args.json:
        if result.switched:
            deleted = f", {result.deleted} deleted (no new vector)" if result.deleted else ""
            items = f"{result.items} items{deleted}"
            print(f"collection {args.collection!r} now uses {args.model}: {items}")
        else:
            print(
                f"collection {args.collection!r} still uses its old model: {len(result.failed)} "
                "items could not be re-embedded; delete them, or run again with --allow-missing"
            )
    return 0 if result.switched else 2

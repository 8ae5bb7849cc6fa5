"""`mmq events add | load` (record what users did) and `mmq recommend` (items for a user)."""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmq.errors import BadRequest, NotFound
from mmq.jobs.events import DEFAULT_WEIGHTS, new_event

if TYPE_CHECKING:  # building the parser loads no Celery
    from mmq.schemas import RecommendResult

CSV_COLUMNS = ("user", "item", "event")  # and `timestamp`, `weight` when given


def add_events_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    known = ", ".join(f"{e} {w:g}" for e, w in DEFAULT_WEIGHTS.items())
    a = actions.add_parser("add", help="record one event")
    a.add_argument("--collection", required=True)
    a.add_argument("--user", required=True)
    a.add_argument("--item", required=True, help="the item's external id")
    a.add_argument("--event", required=True, help=f"default weights: {known}")
    a.add_argument("--weight", type=float, help="this event's weight (negative: a dislike)")
    a.add_argument("--at", help="ISO 8601 time or Unix seconds (default: now)")
    a = actions.add_parser("load", help="record events from a CSV file, in one transaction")
    a.add_argument("--collection", required=True)
    a.add_argument("file", help="CSV with columns user,item,event,timestamp (weight optional)")


def add_recommend_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--collection", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("-k", type=int, default=10)
    p.add_argument(
        "--targets", default="image,text,pair,video", help="item kinds to return (comma-separated)"
    )
    p.add_argument("--filter", help='metadata containment as JSON, e.g. {"split": "dev"}')
    p.add_argument("--method", choices=["auto", "svm", "centroid"], default="auto")
    p.add_argument(
        "--include-seen", action="store_true", help="also return items the user has events on"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--timeout", type=float, default=60.0)


def run_events(args: argparse.Namespace) -> int:
    from mmq.client import Client

    client = Client()
    t0 = time.monotonic()
    if args.action == "add":
        client.record(
            args.user, args.collection, args.item, args.event, args.weight, _time(args.at)
        )
        print(f"recorded {args.event} of {args.item!r} by {args.user!r} in {args.collection!r}")
        return 0
    count = client.record_many(args.collection, read_events(Path(args.file)))
    print(
        f"recorded {count} events in collection {args.collection!r} in {time.monotonic() - t0:.1f}s"
    )
    return 0


def read_events(path: Path) -> Iterator[dict[str, Any]]:
    """The CSV's rows as events; a bad row is BadRequest naming its line."""
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    with f:
        rows = csv.DictReader(f)
        absent = [c for c in CSV_COLUMNS if c not in (rows.fieldnames or ())]
        if absent:
            raise BadRequest(f"{path}: no column {', '.join(absent)} (need user,item,event)")
        for row in rows:
            where = f"{path} line {rows.line_num}"
            try:
                weight = (row.get("weight") or "").strip()
                event: dict[str, Any] = dict(
                    user=row["user"],
                    external_id=row["item"],
                    event=row["event"],
                    weight=float(weight) if weight else None,
                    at=_time(row.get("timestamp")),
                )
                new_event(**event)  # checked here, to name the line
            except (BadRequest, ValueError) as exc:
                raise BadRequest(f"{where}: {exc}") from None
            yield event


def _time(raw: str | None) -> datetime | None:
    """ISO 8601 (a time without a zone is UTC) or Unix seconds; empty: now."""
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return datetime.fromtimestamp(float(raw), UTC)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"time {raw!r}: use ISO 8601 or Unix seconds") from None


def run_recommend(args: argparse.Namespace) -> int:
    from mmq.cli.commands import _parse_filter, _parse_targets, wait_watched
    from mmq.client import Client
    from mmq.schemas import hit_json

    client = Client()
    job = client.recommend(
        args.user,
        args.collection,
        args.k,
        targets=_parse_targets(args.targets),
        filter=_parse_filter(args.filter),
        exclude_seen=not args.include_seen,
        method=args.method,
    )
    result = wait_watched(client, job.id, job.result, args)
    hits = [hit_json(h) | {"because": h.because} for h in result.hits]
    if args.json:
        keys = ("user", "method", "cold_start", "history", "history_missing")
        print(json.dumps({k: getattr(result, k) for k in keys} | {"hits": hits}, indent=2))
    else:
        print(_heading(result))
        _print(hits)
    if result.cold_start:
        print(
            f"mmq recommend: user {args.user!r} has no history on items of collection "
            f"{args.collection!r}: these are its most interacted-with items",
            file=sys.stderr,
        )
    return 0


def _heading(result: RecommendResult) -> str:
    if result.cold_start:
        return f"most interacted-with items (no history for {result.user!r})"
    missing = f"; {result.history_missing} not in the collection" if result.history_missing else ""
    return f"for {result.user!r}: {result.method} over {result.history} history items{missing}"


def _print(hits: list[dict[str, Any]]) -> None:
    if not hits:
        print("  no hits")
    for rank, h in enumerate(hits, 1):
        name = h["external_id"] or h["source"]
        because = f"  because: {', '.join(h['because'])}" if h["because"] else ""
        print(f"  {rank:2d}. {h['score']:.3f}  {h['kind']:5s}  {name}{because}")

"""`mmq db | ingest | search | status`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar, cast

from mmq.broker import INGEST_QUEUE, SEARCH_QUEUE
from mmq.client import Client, IngestJob, ReindexJob
from mmq.config import get_settings
from mmq.errors import BadRequest, JobTimeout, NotFound, Unavailable
from mmq.jobs.overview import Overview
from mmq.schemas import ALL_KINDS, ItemKind, hit_json, item_json

# Most jobs have visibly started by then; only one that has not pays for asking the workers.
STALL_S = 2.0
R = TypeVar("R")


def db(args: argparse.Namespace) -> int:
    from mmq.embedded import resolve_urls
    from mmq.store.migrate import downgrade, upgrade

    url = resolve_urls(get_settings()).database_url
    revision = args.revision or ("head" if args.action == "upgrade" else "base")
    (upgrade if args.action == "upgrade" else downgrade)(url, revision)
    print(f"database {args.action}d to {revision}")
    return 0


def ingest(args: argparse.Namespace) -> int:
    from mmq.cli.sources import file_items, read_captions

    metadata = _json_object("--metadata", args.metadata)
    captions = read_captions(args.captions) if args.captions else None
    items = file_items(args.paths, captions, metadata=metadata)
    if not items:
        print("no images or videos found", file=sys.stderr)
        return 1
    client = Client()
    t0 = time.monotonic()
    job = client.ingest(items, collection=args.collection, fusion=args.fusion)
    if not args.wait:
        print(job.id)
        return 0
    print(f"ingest job {job.id}", file=sys.stderr)  # for `mmq status` later, or elsewhere
    wait_with_progress(job, args.timeout, quiet=args.json, watch=_watch(client, INGEST_QUEUE, args))
    result = job.result(timeout=max(0.0, args.timeout - (time.monotonic() - t0)))
    seconds = time.monotonic() - t0
    for item in result.items:
        if args.json:
            print(json.dumps(item_json(item)))
        elif item.status == "failed":
            print(f"failed: {item.source}: {item.error}", file=sys.stderr)
    if not args.json:
        replaced = f"{result.replaced} replaced, " if result.replaced else ""
        print(
            f"{result.stored} stored, {replaced}{result.failed} failed in collection "
            f"{args.collection!r} in {seconds:.1f}s"
        )
        if result.replaced:
            print(
                "replaced: items of the collection had the same ids (a file's id is its path "
                "relative to the folder given, or its name): --json lists them",
                file=sys.stderr,
            )
        video_s = sum(i.duration_s or 0.0 for i in result.items)
        if video_s:
            print(
                f"videos: {video_s:.1f}s of video indexed, {video_s / seconds:.1f}s of video "
                "per second of wall time"
            )
    return 0 if result.failed == 0 else 2


def wait_with_progress(
    job: IngestJob | ReindexJob,
    timeout: float,
    *,
    quiet: bool,
    watch: Callable[[str], None] | None = None,
) -> None:
    """A progress bar until every item ended. `watch(job_id)` is called once if nothing has
    ended after STALL_S: the moment to ask whether any worker consumes the queue at all."""
    from tqdm import tqdm

    t0 = time.monotonic()
    deadline = t0 + timeout
    done, total = job.progress()
    with tqdm(total=total, unit="item", disable=quiet, file=sys.stderr, desc="ingest") as bar:
        while time.monotonic() < deadline:
            done, total = job.progress()
            bar.update(done - bar.n)
            if done == total:
                return
            if watch is not None and done == 0 and time.monotonic() - t0 > STALL_S:
                watch(job.id)
                watch = None
            time.sleep(0.2)


def wait_watched(
    client: Client,
    job_id: str,
    result: Callable[[float], R],
    args: argparse.Namespace,
    *,
    queue: str = SEARCH_QUEUE,
) -> R:
    """`result(timeout)` of a job on `queue`; if it has not come after STALL_S, check for
    a worker (`_watch`) and wait out the rest of `--timeout`."""
    try:
        return result(min(STALL_S, args.timeout))
    except JobTimeout:
        if args.timeout <= STALL_S:
            raise
        _watch(client, queue, args)(job_id)
        return result(args.timeout - STALL_S)


def _watch(client: Client, queue: str, args: argparse.Namespace) -> Callable[[str], None]:
    """What to do when a job has waited STALL_S: if the database has no schema or no worker
    consumes the queue, say so, then exit or keep waiting as `--if-no-worker` asks."""

    def watch(job_id: str) -> None:
        client.require_schema()  # without it no worker starts: say what to do about that
        try:
            client.require_worker(queue)
        except Unavailable as exc:
            if args.if_no_worker == "exit":
                raise Unavailable(f"{exc} (job {job_id} stays queued)") from None
            print(f"mmq {args.command}: {exc}; waiting for one (job {job_id})", file=sys.stderr)

    return watch


def search(args: argparse.Namespace) -> int:
    weights = _parse_weights(args.weights)
    client = Client()
    job = client.search(
        collection=args.collection,
        text=args.text,
        image=args.image,
        weights=weights,
        targets=_parse_targets(args.targets),
        k=args.k,
        filter=_parse_filter(args.filter),
        segments=args.segments,
        min_score=args.min_score,
        positives=args.like,
        negatives=args.unlike,
        method=args.method,
    )
    result = wait_watched(client, job.id, job.result, args)
    hits = [hit_json(h) for h in result.hits]
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        print_hits(hits)
    if result.missing_examples:
        print(
            f"mmq search: not in collection {args.collection!r}, left out: "
            + ", ".join(result.missing_examples),
            file=sys.stderr,
        )
    if result.kinds_held is not None:
        _explain_no_hits(args, result.kinds_held)
    return 0


def _explain_no_hits(args: argparse.Namespace, held: list[ItemKind]) -> None:
    if not held:
        why = f"collection {args.collection!r} is empty"
    elif not set(held) & set(_parse_targets(args.targets)):
        why = (
            f"collection {args.collection!r} holds {', '.join(held)} items only; "
            f"--targets {args.targets} leaves them out"
        )
    else:
        return  # a real "no match" (or --filter / --min-score left nothing)
    print(f"mmq search: no hits: {why}", file=sys.stderr)


def print_hits(hits: list[dict[str, Any]]) -> None:
    if not hits:
        print("  no hits")
    for rank, h in enumerate(hits, 1):
        name = h["external_id"] or h["source"]
        moment = f"  {h['start_s']:.1f}-{h['end_s']:.1f}s" if h["kind"] == "video" else ""
        print(f"  {rank:2d}. {h['score']:.3f}  {h['kind']:5s}  {name}{moment}")
        for seg in h.get("segments") or []:
            print(f"          {seg['score']:.3f}  {seg['start_s']:.1f}-{seg['end_s']:.1f}s")


def _parse_weights(raw: str | None) -> dict[str, float] | None:
    if not raw:
        return None
    try:
        pairs = (part.split("=", 1) for part in raw.split(","))
        return {name.strip(): float(value) for name, value in pairs}
    except ValueError:
        raise BadRequest(
            f"--weights {raw!r}: expected NAME=NUMBER,... (image=0.3,text=0.7)"
        ) from None


def _parse_targets(raw: str) -> list[ItemKind]:
    kinds = [t.strip() for t in raw.split(",") if t.strip()]
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown or not kinds:
        raise BadRequest(f"--targets {raw!r}: use kinds from {', '.join(ALL_KINDS)}")
    return cast(list[ItemKind], kinds)


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    return _json_object("--filter", raw)


def _json_object(flag: str, raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"{flag} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest(f'{flag} must be a JSON object, e.g. {{"split": "dev"}}')
    return value


def status(args: argparse.Namespace) -> int:
    """The job's JobStatus as JSON. An id that is no job (never sent, pruned, or expired)
    prints state "unknown" too, then exits as a NotFound does (4), saying so on stderr.
    Without an id: the queues, their workers and the ingest jobs (`Client.overview`)."""
    if args.job_id is None:
        return _overview(Client().overview(), as_json=args.json)
    job = Client().job(args.job_id)
    status = job.status()
    print(status.model_dump_json())
    if status.state == "unknown":
        print(
            f"mmq status: {NotFound.kind}: no job {args.job_id}: never sent, pruned after "
            "MMQ_JOB_RETENTION_DAYS, or a search whose result expired",
            file=sys.stderr,
        )
        return NotFound.exit_code
    return 0


def _overview(found: Overview, *, as_json: bool) -> int:
    if as_json:
        print(json.dumps(found.as_json()))
        return 0
    for name, queue in found.queues.items():
        workers = ", ".join(queue.workers) if queue.workers else "no worker"
        print(f"queue {name}: {queue.depth} waiting; {workers}")
    jobs = ", ".join(f"{n} {state}" for state, n in found.jobs.items())
    print(f"ingest jobs: {jobs}")
    if found.oldest_unfinished_s is not None:
        print(f"oldest unfinished ingest job: created {found.oldest_unfinished_s:.0f}s ago")
    return 0

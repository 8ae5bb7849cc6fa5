"""`mmq db | ingest | search | status`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, cast

from mmq.client import Client, IngestJob
from mmq.config import get_settings
from mmq.errors import BadRequest
from mmq.schemas import ALL_KINDS, Hit, ItemKind


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

    captions = read_captions(args.captions) if args.captions else None
    items = file_items(args.paths, captions)
    if not items:
        print("no images or videos found", file=sys.stderr)
        return 1
    client = Client()
    t0 = time.monotonic()
    job = client.ingest(items, collection=args.collection, fusion=args.fusion)
    if not args.wait:
        print(job.id)
        return 0
    wait_with_progress(job, args.timeout, quiet=args.json)
    result = job.result(timeout=args.timeout)
    seconds = time.monotonic() - t0
    for item in result.items:
        if args.json:
            line = {k: getattr(item, k) for k in ("source", "external_id", "status", "error")}
            if item.duration_s is not None:
                line |= {"duration_s": item.duration_s, "segments": item.segments}
            print(json.dumps(line))
        elif item.status == "failed":
            print(f"failed: {item.source}: {item.error}", file=sys.stderr)
    if not args.json:
        print(
            f"{result.stored} stored, {result.failed} failed in collection {args.collection!r} "
            f"in {seconds:.1f}s"
        )
        video_s = sum(i.duration_s or 0.0 for i in result.items)
        if video_s:
            print(
                f"videos: {video_s:.1f}s of video indexed, {video_s / seconds:.1f}s of video "
                "per second of wall time"
            )
    return 0 if result.failed == 0 else 2


def wait_with_progress(job: IngestJob, timeout: float, *, quiet: bool) -> None:
    from tqdm import tqdm

    deadline = time.monotonic() + timeout
    done, total = job.progress()
    with tqdm(total=total, unit="item", disable=quiet, file=sys.stderr, desc="ingest") as bar:
        while time.monotonic() < deadline:
            done, total = job.progress()
            bar.update(done - bar.n)
            if done == total:
                return
            time.sleep(0.2)


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
    )
    result = job.result(timeout=args.timeout)
    hits = [hit_json(h) for h in result.hits]
    if args.json:
        print(json.dumps(hits, indent=2))
    else:
        print_hits(hits)
    return 0


def hit_json(hit: Hit) -> dict[str, Any]:
    out: dict[str, Any] = {
        "external_id": hit.external_id,
        "kind": hit.kind,
        "score": round(hit.score, 4),
        "source": hit.uri or hit.text,
        "metadata": hit.metadata,
    }
    if hit.kind == "video":
        out |= {
            "start_s": hit.start_s,
            "end_s": hit.end_s,
            "keyframe_s": hit.keyframe_s,
            "duration_s": hit.duration_s,
        }
        if hit.segments is not None:
            out["segments"] = [s.model_dump() | {"score": round(s.score, 4)} for s in hit.segments]
    return out


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
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"--filter is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise BadRequest('--filter must be a JSON object, e.g. {"split": "dev"}')
    return value


def status(args: argparse.Namespace) -> int:
    job = Client().job(args.job_id)
    print(job.status().model_dump_json())
    return 0

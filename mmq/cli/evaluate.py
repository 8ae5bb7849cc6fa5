"""`mmq eval`: text→image and image→text recall@1/5/10, every query through the queue."""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from contextlib import nullcontext
from pathlib import Path

from mmq.cli.sources import read_captions
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client, SearchJob
from mmq.config import get_settings
from mmq.errors import InvalidInput, NotFound
from mmq.schemas import Hit, IngestItem

KS = (1, 5, 10)


def run_eval(args: argparse.Namespace) -> int:
    settings = get_settings()
    urls = ready_servers(settings)
    captions = read_captions(args.captions)
    images = sorted(p for p in Path(args.images).iterdir() if p.name in captions)
    if args.only:
        keep = set(Path(args.only).read_text().split())
        images = [p for p in images if p.name in keep]
    images = images[: args.limit] if args.limit else images
    if not images:
        raise NotFound(f"no images under {args.images} have captions in {args.captions}")
    # Same image set → same collection, so a re-run updates in place instead of mixing sets.
    # The model is part of it too: a collection is bound to the model that filled it.
    names = "\n".join([settings.model, *(p.name for p in images)])
    digest = hashlib.sha256(names.encode()).hexdigest()[:8]
    collection = f"{args.collection}-{len(images)}-{digest}"
    client = Client(settings, urls)
    workers = (
        running_workers(client.app, log_dir=settings.state_dir / "logs", roots=[args.images])
        if args.spawn_workers
        else nullcontext()
    )
    with workers:
        scores = evaluate(client, collection, images, captions, quiet=args.json)
    if args.json:
        print(json.dumps(scores))
    else:
        for key, value in scores.items():
            print(f"{key:14s} {value:8.2f}")
    return 0


def evaluate(
    client: Client,
    collection: str,
    images: list[Path],
    captions: dict[str, list[str]],
    *,
    quiet: bool = False,
) -> dict[str, float]:
    def say(msg: str) -> None:
        if not quiet:
            print(msg, flush=True)

    image_items = [IngestItem(image_path=str(p), external_id=p.name) for p in images]
    client.ingest(image_items[:8], collection=collection).result(timeout=600)  # warm the model
    t0 = time.monotonic()
    stored = client.ingest(image_items, collection=collection).result(timeout=3600)
    images_per_s = len(images) / (time.monotonic() - t0)
    if stored.failed:
        first = next(i for i in stored.items if i.status == "failed")
        raise InvalidInput(
            f"{stored.failed} images failed to ingest; the first, {first.source}: {first.error}"
        )
    say(f"ingested {len(images)} images at {images_per_s:.1f} images/s")

    queries = [(p.name, c) for p in images for c in captions[p.name]]
    text_items = [
        IngestItem(text=c, external_id=f"caption:{i}", metadata={"image": name})
        for i, (name, c) in enumerate(queries)
    ]
    client.ingest(text_items, collection=collection).result(timeout=3600)
    say(f"ingested {len(text_items)} captions; running {len(queries) + len(images)} queries")

    t2i = [
        client.search(collection=collection, text=c, targets=["image"], k=10) for _, c in queries
    ]
    i2t = [client.search(collection=collection, image=p, targets=["text"], k=10) for p in images]
    t2i_ranks = [
        _rank([h.external_id for h in _hits(job)], {name})
        for job, (name, _) in zip(t2i, queries, strict=True)
    ]
    i2t_ranks = [
        _rank([h.metadata.get("image") for h in _hits(job)], {p.name})
        for job, p in zip(i2t, images, strict=True)
    ]
    scores = {f"t2i_r{k}": _recall(t2i_ranks, k) for k in KS}
    scores.update({f"i2t_r{k}": _recall(i2t_ranks, k) for k in KS})
    scores["images_per_s"] = round(images_per_s, 2)
    return scores


def _hits(job: SearchJob) -> list[Hit]:
    return job.result(timeout=600).hits


def _rank(found: list[object], relevant: set[str]) -> int | None:
    return next((i for i, x in enumerate(found) if x in relevant), None)


def _recall(ranks: list[int | None], k: int) -> float:
    return round(100.0 * sum(r is not None and r < k for r in ranks) / len(ranks), 2)

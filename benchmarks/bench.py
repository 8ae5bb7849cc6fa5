"""`make bench`: ingest, search and queue figures measured side by side in one run.

    python -m benchmarks.bench [--images 500] [--photos DIR] [--ingest-workers 1]
                               [--sizes 10000,100000] [--queries 200]

Prints a table and writes benchmarks/results.json. Workers run as `mmq worker` runs them
(the threads pool, encodes merged into model batches); the naive baseline runs one task
per image in a prefork worker, batch 1, decoding in the task.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from benchmarks import bench_ingest, bench_queue, bench_reindex, bench_search
from benchmarks.cpu_profile import profile_ingest
from mmq.cli.sources import read_captions
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import get_encoder
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.tables import Collection
from tests.support.data import FLICKR, FLICKR_IMAGES, photo_items

CAPTIONS = FLICKR / "captions.csv"
EF_SEARCH = (40, 100, 200, 400)
FALLBACK_QUERIES = ["a dog running on grass", "a child in a red shirt", "a man on a bike"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument(
        "--photos", type=Path, default=FLICKR_IMAGES, help="a folder of JPEGs to ingest"
    )
    parser.add_argument(
        "--ingest-workers", type=int, default=1, help="ingest worker processes (threads pool)"
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    t_start = time.monotonic()
    settings = get_settings()
    urls = ready_servers(settings)
    work = settings.state_dir / "bench"
    encoder = get_encoder(settings.model, settings.device, cache_dir=settings.state_dir / "cache")
    encoder.load()
    items, source = photo_items(args.images, work, args.photos)
    texts = queries(args.queries)
    out: dict[str, object] = {"machine": machine(), "model": encoder.name, "photos": source}
    out["ingest_workers"] = args.ingest_workers
    out["limit"] = bench_ingest.model_limit(encoder, items)
    out["text_limit"] = bench_search.text_limit(encoder, texts)
    client = Client(settings, urls)
    logs = settings.state_dir / "logs"
    roots = sorted({Path(it.image_path).parent for it in items if it.image_path})
    queues = ("ingest",) * args.ingest_workers + ("search",)
    with running_workers(client.app, queues=queues, log_dir=logs, roots=roots) as procs:
        bench_ingest.through_queue(client, items[:64], chunk_size=16)  # warm-up
        chunk = settings.ingest_chunk_size
        batch = bench_ingest.through_queue(client, items, chunk_size=chunk)
        single = bench_ingest.through_queue(client, items, chunk_size=1)
        out["ingest_batch"] = batch.images_per_s
        out["ingest_one_per_message"] = single.images_per_s
        ingest_pids = [p.pid for p in procs[: args.ingest_workers]]
        out["profile"] = {
            mode: profile_ingest(client, items, chunk_size=size, workers=ingest_pids)
            for mode, size in (("batch", chunk), ("one_per_message", 1))
        }
        out["queue"] = {
            "celery_round_trips_per_s": bench_queue.celery_round_trips(client, 300),
            "redis_round_trips_per_s": bench_queue.redis_round_trips(urls.broker_url, 300),
        }
        sessions = make_sessionmaker(make_engine(urls.database_url))
        with sessions() as session:
            real = bench_search.real_vectors(session, latest_ingest_collection(session))
        query_vectors = encoder.encode_texts(texts)
        out["search"] = {}
        for size in (int(s) for s in args.sizes.split(",")):
            vectors = np.concatenate([real, bench_search.synthetic(real, size - len(real))])
            t0 = time.monotonic()
            name = bench_search.build(sessions, encoder, settings, vectors)
            row: dict[str, object] = {"build_s": time.monotonic() - t0}
            for ef in EF_SEARCH:
                r, ms = bench_search.recall(sessions, name, vectors, query_vectors, ef)
                row[f"recall@10_ef{ef}"], row[f"ann_ms_ef{ef}"] = r, ms
            row.update(bench_search.latency(client, name, texts))
            row["qps_8_producers"] = bench_search.qps(client, name, texts * 2)
            ann = bench_search.ann_limit(sessions, name, query_vectors, settings.ef_search)
            encode = out["text_limit"]["texts_per_s"]  # type: ignore[index]
            # Encoding and the ANN query share the cores: each query costs both.
            row["ann_alone_qps"], row["limit_qps"] = ann, 1 / (1 / encode + 1 / ann)
            out["search"][str(size)] = row  # type: ignore[index]
        out["reindex"] = bench_reindex.measure(
            client, items=items, served_model=encoder.name, texts=texts, log_dir=logs, roots=roots
        )
    naive_env = {**os.environ, "MMQ_WORKER_POOL": "prefork"}
    with running_workers(client.app, queues=("ingest",), log_dir=logs, env=naive_env, roots=roots):
        bench_ingest.through_queue(client, items[:64], chunk_size=1)  # warm-up
        naive = bench_ingest.through_queue(client, items, chunk_size=1)
        out["ingest_naive"] = naive.images_per_s
    best = out["limit"]
    limit = best["images_per_s"]  # type: ignore[index]
    forward_ms = bench_ingest.forward_cost_ms(best)  # type: ignore[arg-type]
    decode_ms = bench_ingest.decode_cost_ms(encoder, items)
    out["cpu_ms_per_image"] = {
        "batch": batch.cpu_ms_per_image,
        "one_per_message": single.cpu_ms_per_image,
        "naive": naive.cpu_ms_per_image,
        "limit_forward_pass": forward_ms,
        "decode_and_prepare": decode_ms,
    }
    out["overhead_cpu_ms_per_image"] = {
        "batch": batch.cpu_ms_per_image - forward_ms - decode_ms,
        "one_per_message": single.cpu_ms_per_image - forward_ms - decode_ms,
    }
    out["ingest_ratio_to_limit"] = batch.images_per_s / limit
    out["ingest_one_per_message_ratio_to_limit"] = single.images_per_s / limit
    out["speedup_vs_naive"] = batch.images_per_s / naive.images_per_s
    out["one_per_message_speedup_vs_naive"] = single.images_per_s / naive.images_per_s
    search: dict[str, dict[str, float]] = out["search"]  # type: ignore[assignment]
    largest = search[max(search, key=int)]
    out["search_ratio_to_limit"] = largest["qps_8_producers"] / largest["limit_qps"]
    q = out["queue"]
    q["ratio"] = q["celery_round_trips_per_s"] / q["redis_round_trips_per_s"]  # type: ignore[index]
    out["ef_search_default"] = settings.ef_search
    out["seconds"] = time.monotonic() - t_start
    Path(__file__).with_name("results.json").write_text(json.dumps(out, indent=2) + "\n")
    print_table(out)
    return 0


def latest_ingest_collection(session: Session) -> str:
    """The newest ingest collection of this run (one item per message): its real vectors."""
    names = session.scalars(
        select(Collection.name)
        .where(Collection.name.like("bench-%"))
        .where(Collection.name.not_like("bench-search-%"))
        .order_by(Collection.id.desc())
    )
    return next(iter(names))


def queries(n: int) -> list[str]:
    if CAPTIONS.is_file():
        captions = read_captions(CAPTIONS)
        return [c for name in sorted(captions) for c in captions[name][:1]][:n]
    return [FALLBACK_QUERIES[i % len(FALLBACK_QUERIES)] + f" {i}" for i in range(n)]


def machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def print_table(out: dict[str, Any]) -> None:
    limit = out["limit"]
    print(
        f"machine: {out['machine']}; model {out['model']}; photos: {out['photos']};"
        f" {out.get('ingest_workers', 1)} ingest worker process(es)"
    )
    print(f"{'ingest (images/s)':44s} {'value':>10s}")
    print(
        f"{'  limit: forward pass alone':44s} {limit['images_per_s']:10.1f}"
        f"  (batch {limit['batch']}, {limit['streams']}x{limit['threads']} threads)"
    )
    curve = ", ".join(f"{k} {v:.0f}" for k, v in limit["curve"].items())
    print(f"  (forward pass alone: {curve})")
    for key in ("ingest_batch", "ingest_one_per_message", "ingest_naive"):
        print(f"  {key:42s} {out[key]:10.1f}")
    for key in (
        "ingest_ratio_to_limit",
        "ingest_one_per_message_ratio_to_limit",
        "speedup_vs_naive",
        "one_per_message_speedup_vs_naive",
    ):
        print(f"  {key:42s} {out[key]:10.2f}")
    cpu = ", ".join(f"{k.replace('_', ' ')} {v:.1f}" for k, v in out["cpu_ms_per_image"].items())
    print(f"  CPU ms per image, whole machine: {cpu}")
    over = out["overhead_cpu_ms_per_image"]
    print(
        f"  overhead beyond forward pass and decoding (CPU ms per image): batch"
        f" {over['batch']:.1f}, one per message {over['one_per_message']:.1f}"
    )
    for mode, prof in out["profile"].items():
        procs = ", ".join(f"{k} {v:.1f}" for k, v in prof["processes"].items())
        stages = ", ".join(f"{k} {v:.1f}" for k, v in prof["worker_stages"].items())
        print(f"  profile, {mode.replace('_', ' ')} (CPU ms per image): {procs}")
        print(f"    in the worker: {stages}")
    q = out["queue"]
    print(
        f"queue: celery no-op round trips {q['celery_round_trips_per_s']:.0f}/s, redis-py "
        f"LPUSH/BRPOP {q['redis_round_trips_per_s']:.0f}/s, ratio {q['ratio']:.2f}"
    )
    for size, row in out["search"].items():
        recalls = ", ".join(
            f"ef {ef}: {row[f'recall@10_ef{ef}']:.3f} / {row[f'ann_ms_ef{ef}']:.1f} ms"
            for ef in EF_SEARCH
        )
        print(f"search {size} vectors (index built in {row['build_s']:.0f} s)")
        print(f"  recall@10 / ANN time: {recalls}")
        print(
            f"  text query enqueue→result p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms"
            f" (encode {row['encode_p50_ms']:.1f}, ANN {row['ann_p50_ms']:.1f}, queue"
            f" {row['queue_p50_ms']:.1f}); p50 beyond encode {row['p50_beyond_encode_ms']:.1f} ms;"
            f" {row['qps_8_producers']:.1f} QPS with 8 producers; limit {row['limit_qps']:.1f}"
            f" (ANN alone {row['ann_alone_qps']:.0f}/s)"
        )
    t = out["text_limit"]
    print(
        f"search limit: texts encoded alone {t['texts_per_s']:.0f}/s (batch {t['batch']},"
        f" {t['streams']} streams); search_ratio_to_limit {out['search_ratio_to_limit']:.2f}"
    )
    bench_reindex.print_table(out["reindex"])
    print(f"default ef_search {out['ef_search_default']}; {out['seconds']:.0f} s in all")


if __name__ == "__main__":
    raise SystemExit(main())

"""`make bench-1m`: a million vectors in HNSW, stored as `vector` against `halfvec`.

    python -m benchmarks.bench_1m [--size 1000000] [--queries 200]

The vectors: the photos' own (flickr8k-dev, encoded here with the served model) plus
synthetic ones with their mean and covariance (benchmarks/bench_search.py). Each storage
gets a table of its own, loaded with binary COPY, then one HNSW build with the settings a
collection gets (m, ef_construction) and every core. Reported for each: the build's time,
the table's and the index's size on disk, and for the caption queries recall@10 against
exact search over the float32 vectors, with the median and p95 latency of one query at a
time, at ef_search 100, 200 and 400. Writes benchmarks/results-1m.json. Not in CI: over
half an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector import HalfVector
from pgvector.psycopg import register_vector

from benchmarks.bench import machine, queries
from benchmarks.bench_search import exact_top10, photo_vectors, synthetic
from mmq.cli.spawn import ready_servers
from mmq.config import get_settings
from mmq.encoders import get_encoder
from mmq.jobs.records import psycopg_url
from tests.support.data import FLICKR_IMAGES, photo_items

EF_SEARCH = (100, 200, 400)
STORAGES = {"vector": "vector_cosine_ops", "halfvec": "halfvec_cosine_ops"}
ROWS_PER_COPY = 50_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    settings = get_settings()
    urls = ready_servers(settings)
    encoder = get_encoder(settings.model, settings.device, cache_dir=settings.state_dir / "cache")
    encoder.load()
    items, source = photo_items(500, settings.state_dir / "bench", FLICKR_IMAGES)
    real = photo_vectors(encoder, items)
    vectors = np.concatenate([real, synthetic(real, args.size - len(real))]).astype(np.float32)
    query_vectors = encoder.encode_texts(queries(args.queries)).astype(np.float32)
    truth = exact_top10(vectors, query_vectors)
    out: dict[str, Any] = {"machine": machine(), "model": encoder.name, "photos": source}
    out |= {"vectors": len(vectors), "dim": int(vectors.shape[1]), "queries": len(query_vectors)}
    out |= {"hnsw_m": settings.hnsw_m, "hnsw_ef_construction": settings.hnsw_ef_construction}
    with psycopg.connect(psycopg_url(urls.database_url), autocommit=True) as conn:
        register_vector(conn)
        for storage, ops in STORAGES.items():
            out[storage] = measure(conn, storage, ops, vectors, query_vectors, truth, settings)
            print_row(storage, out[storage])
    Path(__file__).with_name("results-1m.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


def measure(
    conn: psycopg.Connection[Any],
    storage: str,
    ops: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    truth: np.ndarray,
    settings: Any,
) -> dict[str, float]:
    dim, table = vectors.shape[1], f"bench_1m_{storage}"
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(f"CREATE TABLE {table} (id integer PRIMARY KEY, v {storage}({dim}))")
    t0 = time.monotonic()
    with conn.cursor() as cur:
        for start in range(0, len(vectors), ROWS_PER_COPY):
            stop = min(start + ROWS_PER_COPY, len(vectors))
            with cur.copy(f"COPY {table} (id, v) FROM STDIN WITH (FORMAT BINARY)") as copy:
                copy.set_types(["int4", storage])
                for i in range(start, stop):
                    v = vectors[i] if storage == "vector" else HalfVector(vectors[i])
                    copy.write_row((i, v))
    row: dict[str, float] = {"load_s": time.monotonic() - t0}
    # In memory, on every core: a build that spills out of maintenance_work_mem is many
    # times slower.
    conn.execute("SET maintenance_work_mem = '8GB'")
    conn.execute("SET max_parallel_maintenance_workers = 2")
    t0 = time.monotonic()
    conn.execute(
        f"CREATE INDEX {table}_hnsw ON {table} USING hnsw (v {ops})"
        f" WITH (m = {settings.hnsw_m}, ef_construction = {settings.hnsw_ef_construction})"
    )
    row["build_s"] = time.monotonic() - t0
    conn.execute(f"ANALYZE {table}")
    sizes = conn.execute(
        f"SELECT pg_relation_size('{table}'), pg_relation_size('{table}_hnsw')"
    ).fetchone()
    assert sizes is not None
    row["table_mb"], row["index_mb"] = sizes[0] / 2**20, sizes[1] / 2**20
    for ef in EF_SEARCH:
        conn.execute(f"SET hnsw.ef_search = {ef}")
        found, took = 0, []
        for q, ids in zip(queries, truth, strict=True):
            param = q if storage == "vector" else HalfVector(q)
            t0 = time.perf_counter()
            hits = conn.execute(
                f"SELECT id FROM {table} ORDER BY v <=> %s LIMIT 10", (param,)
            ).fetchall()
            took.append(1e3 * (time.perf_counter() - t0))
            found += len({h[0] for h in hits} & set(ids.tolist()))
        row[f"recall@10_ef{ef}"] = found / (10 * len(queries))
        row[f"p50_ms_ef{ef}"] = float(np.percentile(took, 50))
        row[f"p95_ms_ef{ef}"] = float(np.percentile(took, 95))
    conn.execute(f"DROP TABLE {table}")
    return row


def print_row(storage: str, row: dict[str, float]) -> None:
    per_ef = ", ".join(
        f"ef {ef}: recall {row[f'recall@10_ef{ef}']:.3f}, p50 {row[f'p50_ms_ef{ef}']:.1f} ms,"
        f" p95 {row[f'p95_ms_ef{ef}']:.1f} ms"
        for ef in EF_SEARCH
    )
    print(
        f"{storage}: loaded in {row['load_s']:.0f} s, index built in {row['build_s']:.0f} s;"
        f" table {row['table_mb']:.0f} MB, index {row['index_mb']:.0f} MB; {per_ef}",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())

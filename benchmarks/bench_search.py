"""Search: latency through the queue, HNSW recall against exact search, QPS under load.

Used by benchmarks/bench.py (`make bench`). Collections hold the real image vectors of the
ingest run plus synthetic ones drawn from the same distribution (a Gaussian with the real
vectors' mean and covariance, normalised), to reach 10k and 100k.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from PIL import Image
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from mmq.client import Client
from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import cpu_count
from mmq.schemas import IngestItem, SearchResult
from mmq.store import repository
from mmq.store.tables import Collection, Item

ROWS_PER_CALL = 2000  # rows built and sent per upsert call while loading


def real_vectors(session: Session, collection: str) -> np.ndarray:
    cid = repository.get_collection(session=session, name=collection).id
    rows = session.scalars(select(Item.vector).where(Item.collection_id == cid))
    return np.array([np.asarray(v, dtype=np.float32) for v in rows])


def photo_vectors(encoder: Encoder, items: list[IngestItem]) -> np.ndarray:
    """The photos' image vectors, encoded here, 16 at a time."""
    photos = [Image.open(it.image_path or "").convert("RGB") for it in items]
    return np.concatenate(
        [encoder.encode_images(photos[i : i + 16]) for i in range(0, len(photos), 16)]
    )


def exact_top10(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The ids (row numbers) of each query's 10 nearest vectors by cosine, exactly; one
    query at a time, so that a million vectors need no query × vector matrix."""
    out = []
    for q in queries:
        scores = vectors @ q
        top = np.argpartition(-scores, 10)[:10]
        out.append(top[np.argsort(-scores[top])])
    return np.array(out)


def synthetic(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Unit vectors from a Gaussian with the real vectors' mean and covariance. Their
    nearest-neighbour cosines resemble the real ones (0.62 against 0.66 for the Flickr
    photos with `lite`); mixing pairs of real vectors instead leaves near-copies of each
    real vector, an easier index."""
    rng = np.random.default_rng(seed)
    centred = real - real.mean(0)
    z = rng.normal(size=(n, len(real))).astype(np.float32) / np.sqrt(len(real) - 1)
    out = real.mean(0) + z @ centred
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def build(
    sessions: sessionmaker[Session], encoder: Encoder, settings: Settings, vectors: np.ndarray
) -> str:
    """A collection of these image vectors: rows in bulk, then one HNSW build."""
    name = f"bench-search-{len(vectors)}-{uuid.uuid4().hex[:6]}"
    with sessions() as session:
        collection = repository.ensure_collection(
            session=session,
            name=name,
            model=encoder.name,
            model_version=encoder.version,
            dim=encoder.dim,
            fusion="sum",
            hnsw_m=settings.hnsw_m,
            hnsw_ef_construction=settings.hnsw_ef_construction,
        )
        repository.drop_item_index(session=session, collection=collection)
        for start in range(0, len(vectors), ROWS_PER_CALL):
            rows = [
                repository.ItemRow(f"ext:{i}", str(i), "image", None, None, {}, str(i), vectors[i])
                for i in range(start, min(start + ROWS_PER_CALL, len(vectors)))
            ]
            repository.upsert_items(session=session, collection=collection, rows=rows)
        session.commit()
        session.execute(text("SET maintenance_work_mem = '1GB'"))
        repository.create_indexes(
            session=session,
            collection=collection,
            m=settings.hnsw_m,
            ef_construction=settings.hnsw_ef_construction,
        )
        session.execute(text("ANALYZE items"))
        session.commit()
    return name


def recall(
    sessions: sessionmaker[Session], name: str, vectors: np.ndarray, queries: np.ndarray, ef: int
) -> tuple[float, float]:
    """(recall@10 of the index against exact search, mean ANN milliseconds) at `ef`."""
    exact = exact_top10(vectors, queries)
    found, took = 0, 0.0
    with sessions() as session:
        collection = session.scalar(select(Collection).where(Collection.name == name))
        assert collection is not None
        for q, truth in zip(queries, exact, strict=True):
            t0 = time.perf_counter()
            hits = repository.search_items(
                session=session, collection=collection, query=q, kinds=["image"], k=10, ef_search=ef
            )
            session.commit()
            took += time.perf_counter() - t0
            found += len({int(h.external_id or -1) for h in hits} & set(truth.tolist()))
    return found / (10 * len(queries)), 1e3 * took / len(queries)


def text_limit(encoder: Encoder, texts: list[str]) -> dict[str, Any]:
    """Query texts encoded alone, at the best batch size and thread layout (as
    bench_ingest.model_limit does for images): what the encoding could at most reach."""
    import torch

    cores = cpu_count()
    best: dict[str, Any] = {"texts_per_s": 0.0}
    threads_before = torch.get_num_threads()
    encoder.encode_texts(texts[:8])  # warm-up
    for streams, threads in sorted({(1, cores), (cores, 1)}):
        torch.set_num_threads(threads)
        for batch in (1, 2, 4, 8, 16):
            rate = _rate(lambda part: encoder.encode_texts(part), texts, batch, streams)
            if rate > best["texts_per_s"]:
                best = {"texts_per_s": rate, "batch": batch, "streams": streams}
    torch.set_num_threads(threads_before)
    return best


def ann_limit(sessions: sessionmaker[Session], name: str, queries: np.ndarray, ef: int) -> float:
    """ANN queries per second alone: as many connections as cores, each querying in turn."""
    with sessions() as session:
        collection = repository.get_collection(session=session, name=name)

    def run(part: list[np.ndarray]) -> None:
        with sessions() as session:
            for q in part:
                repository.search_items(
                    session=session, collection=collection, query=q, kinds=["image"], k=10,
                    ef_search=ef,
                )  # fmt: skip
                session.commit()

    return _rate(run, list(queries), len(queries), cpu_count())


def _rate(run: Any, inputs: list[Any], batch: int, streams: int) -> float:
    """Inputs per second through `streams` threads, each running its share `batch` at a
    time."""
    share = -(-len(inputs) // streams)
    parts = [inputs[i : i + share] for i in range(0, len(inputs), share)]

    def stream(part: list[Any]) -> None:
        for start in range(0, len(part), batch):
            run(part[start : start + batch])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        list(pool.map(stream, parts))
    return len(inputs) / (time.perf_counter() - t0)


def latency(client: Client, name: str, texts: list[str]) -> dict[str, float]:
    """p50/p95 of enqueue → result for text queries, and the encode / ANN / queue parts."""
    total, encode, ann = [], [], []
    for t in texts:
        t0 = time.perf_counter()
        result = client.search(collection=name, text=t, targets=["image"], k=10).result(60)
        total.append(1e3 * (time.perf_counter() - t0))
        assert isinstance(result, SearchResult)
        encode.append(result.timings_ms["encode"])
        ann.append(result.timings_ms["ann"])
    queue = np.array(total) - np.array(encode) - np.array(ann)
    return {
        "p50_ms": float(np.percentile(total, 50)),
        "p95_ms": float(np.percentile(total, 95)),
        "encode_p50_ms": float(np.percentile(encode, 50)),
        "ann_p50_ms": float(np.percentile(ann, 50)),
        "queue_p50_ms": float(np.percentile(queue, 50)),
        "p50_beyond_encode_ms": float(np.percentile(np.array(total) - np.array(encode), 50)),
    }


def qps(client: Client, name: str, texts: list[str], producers: int = 8) -> float:
    """Queries per second with `producers` threads each waiting for its own results."""

    def run(chunk: list[str]) -> None:
        for t in chunk:
            client.search(collection=name, text=t, targets=["image"], k=10).result(60)

    chunks = [texts[i::producers] for i in range(producers)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(producers) as pool:
        list(pool.map(run, chunks))
    return len(texts) / (time.perf_counter() - t0)

"""The latency part of benchmarks/more_like_these.py (`--latency`): searches by example
through the queue at 10k and 100k vectors, and the index's recall of the margin ranking."""

from __future__ import annotations

import itertools
import time

import numpy as np
import torch
from sqlalchemy.orm import Session, sessionmaker
from torch.nn import functional as F

from benchmarks import bench_search
from mmq.cli.sources import read_captions
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import get_encoder
from mmq.encoders.alignment_head import load_head
from mmq.encoders.lite import SHIPPED_HEAD
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.relevance import direction
from mmq.services.examples import BACKGROUND_SIZE
from mmq.store import repository
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.examples import sample_vectors
from mmq.training.features import image_features
from tests.support.data import FLICKR

NS = (1, 3, 10)
K = 20


def run_latency(sizes: list[int], queries: int) -> None:
    settings = get_settings()
    urls = ready_servers(settings)
    encoder = get_encoder("lite", "cpu", cache_dir=settings.state_dir / "cache").load()
    real = _shipped_vectors()
    client = Client(settings, urls)
    sessions = make_sessionmaker(make_engine(urls.database_url))
    rng = np.random.default_rng(0)
    print(f"\nsearch by examples through the queue ({queries} searches per cell), ms")
    print("| vectors | method | positives | p50 | p95 | p50 beyond encoding | rank p50 |")
    print("|---|---|---|---|---|---|---|")
    recalls: dict[tuple[int, str, int], list[tuple[float, float]]] = {}
    firsts: dict[int, tuple[float, float]] = {}
    with running_workers(client.app, queues=("search",), log_dir=settings.state_dir / "logs"):
        for size in sizes:
            vectors = np.concatenate([real, bench_search.synthetic(real, size - len(real))])
            name = bench_search.build(sessions, encoder, settings, vectors)
            t0 = time.perf_counter()  # the first search samples the collection
            client.search(collection=name, positives=["0"], k=K).result(120)
            firsts[size] = (1e3 * (time.perf_counter() - t0), _sample_ms(sessions, name))
            for method in ("svm", "centroid"):
                for n in NS:
                    total, encode, rank = [], [], []
                    for _ in range(queries):
                        ids = [str(i) for i in rng.choice(size, n, replace=False)]
                        t0 = time.perf_counter()
                        result = client.search(
                            collection=name, positives=ids, method=method, k=K, targets=["image"]
                        ).result(60)
                        total.append(1e3 * (time.perf_counter() - t0))
                        encode.append(result.timings_ms["encode"])
                        rank.append(result.timings_ms["rank"])
                    beyond = np.array(total) - np.array(encode)
                    print(
                        f"| {size} | {method} | {n} | {np.percentile(total, 50):.1f} | "
                        f"{np.percentile(total, 95):.1f} | {np.percentile(beyond, 50):.1f} | "
                        f"{np.percentile(rank, 50):.1f} |",
                        flush=True,
                    )
            for (method, ef), found in _recall(sessions, name, vectors, 3, rng, 30).items():
                recalls[(size, method, ef)] = found
    print("\nthe first search of a collection samples it; drawing the sample alone (median):")
    for size, (first, sample) in firsts.items():
        print(f"  {size} vectors: first search {first:.0f} ms, sample {sample:.0f} ms")
    print(f"\nrecall@{K} of the index against the exact ranking of the whole collection, 3")
    print("positives, and the ANN query's ms (p50)")
    print("| vectors | method | ef_search | recall | ANN ms |\n|---|---|---|---|---|")
    for (size, method, ef), rows in recalls.items():
        r, ms = np.mean([a for a, _ in rows]), np.median([b for _, b in rows])
        print(f"| {size} | {method} | {ef} | {r:.3f} | {ms:.1f} |")
    client.close()


def _recall(
    sessions: sessionmaker[Session],
    name: str,
    vectors: np.ndarray,
    n: int,
    rng: np.random.Generator,
    runs: int,
) -> dict[tuple[str, int], list[tuple[float, float]]]:
    """{(method, ef_search): [(recall@K of the index against the exact ranking, ANN ms)]},
    the directions fitted as the worker fits them."""
    out: dict[tuple[str, int], list[tuple[float, float]]] = {}
    ef = get_settings().ef_search
    with sessions() as session:
        collection = repository.get_collection(session=session, name=name)
        background, _ = sample_vectors(
            session=session, collection=collection, kinds=["image"], n=BACKGROUND_SIZE
        )
        for _, method, ef_search in itertools.product(
            range(runs), ("svm", "centroid"), (ef, 2 * ef, 4 * ef)
        ):
            positives = rng.choice(len(vectors), n, replace=False)
            d = direction(method, vectors[positives], None, background)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            hits = repository.search_items(
                session=session,
                collection=collection,
                query=d.vector,
                kinds=["image"],
                k=K + n,
                ef_search=ef_search,
            )
            session.commit()
            ms = 1e3 * (time.perf_counter() - t0)
            scores = d.scores(vectors)
            scores[positives] = -np.inf
            exact = set(np.argsort(-scores)[:K].tolist())
            given = set(positives.tolist())
            found = [int(h.external_id) for h in hits if h.external_id is not None]
            got = [i for i in found if i not in given][:K]
            out.setdefault((method, ef_search), []).append((len(exact & set(got)) / K, ms))
    return out


def _sample_ms(sessions: sessionmaker[Session], name: str, runs: int = 5) -> float:
    """The median time to draw the SVM's collection sample (what a cache miss costs)."""
    times = []
    with sessions() as session:
        collection = repository.get_collection(session=session, name=name)
        for _ in range(runs):
            t0 = time.perf_counter()
            sample_vectors(
                session=session, collection=collection, kinds=["image"], n=BACKGROUND_SIZE
            )
            session.commit()
            times.append(1e3 * (time.perf_counter() - t0))
    return float(np.median(times))


def _shipped_vectors() -> np.ndarray:
    """The 500 dev photos as `lite` stores them: the shipped head over cached features."""
    cache = get_settings().state_dir / "cache"
    encoder = LiteConseEncoder(device="cpu", cache_dir=cache)
    names = sorted(read_captions(FLICKR / "captions.csv"))
    features = image_features(encoder, [FLICKR / "images" / n for n in names], cache)
    head, _ = load_head(SHIPPED_HEAD)
    with torch.no_grad():
        out = head.eval()(torch.from_numpy(features).float())
    return F.normalize(out, dim=-1).numpy()

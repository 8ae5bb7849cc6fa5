"""Recommendations from history: simulated users' HitRate@10 and NDCG@10, and latency.

    python -m benchmarks.recommend [--splits 2] [--draws 10] [--sizes 10000,100000]

Quality, on flickr8k-dev. Each split trains the shipped head's recipe on one half of the
photos and stores the other half (vectors of photos the head never saw) as a collection,
and then the other way round (two folds). A photo belongs to a concept (dog, water, beach,
...) when at least two of its five captions name it (benchmarks/concepts.py, shared with
the "more like these" benchmark). A simulated user likes one concept:
n of its photos in the collection get an event each (view, like, cart or purchase at
random, aged 0 to 90 days) and the concept's other photos are held out, the items the
user would want; a "+ noise" user also viewed n photos of anything. Every user of a fold
is recorded (that population makes the most-popular list), then each is recommended 10
items (their own items left out, as by default) by:

- recommender: `mmq.services.recommend` as a worker runs it (centroid below 10 history
  items, SVM from 10);
- centroid / svm: the same with the method forced;
- most popular: the collection's items with the most decayed event weight, less the
  user's own (what a user without history gets);
- random: 10 of the user's unseen photos, how easy a hit is by chance alone.

HitRate@10: the share of users with a held-out photo in their 10; NDCG@10 with the held-out
photos as relevant. Nothing here is tuned: the event weights, the half-life and the
switch to the SVM at 10 items are the shipped defaults (docs/examples.md).

Latency: collections of 10k and 100k vectors (the real ones plus synthetic ones drawn
from their distribution, as benchmarks/bench_search.py does) with 20 events for each of
2,000 users; recommend's p50 and p95 for a user with 3 items (centroid), 20 (svm) and none
(popular), in the process and through the queue (a search worker, `Client.recommend`).
Needs ../shared/data/flickr8k-dev; says so and exits 0 without it.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.bench_search import synthetic
from benchmarks.concepts import concept_photos
from benchmarks.kind_bias import _imagenet, _recipe
from mmq.cli.sources import read_captions
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import Settings, get_settings
from mmq.encoders.lite_conse import LiteConseEncoder
from mmq.jobs import events
from mmq.jobs.claims import session_conn
from mmq.jobs.records import psycopg_url
from mmq.schemas import RecommendRequest
from mmq.services.recommend import recommend
from mmq.store import repository
from mmq.store.db import make_engine, make_sessionmaker
from mmq.training.features import image_features, text_features
from mmq.training.fit import Pairs, split_by_image
from tests.support.data import FLICKR

HISTORIES = ((1, False), (3, False), (10, False), (3, True), (10, True))  # (n, + noise)
METHODS = ("recommender", "centroid", "svm", "most popular", "random")
K = 10
EVENTS = tuple(events.DEFAULT_WEIGHTS)


@dataclass(frozen=True)
class User:
    name: str
    history: list[str]
    held_out: set[str]
    row: str  # the table row it counts in


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=2)
    parser.add_argument("--draws", type=int, default=10, help="users per concept and history")
    parser.add_argument("--sizes", default="10000,100000", help="latency: collection sizes")
    parser.add_argument("--calls", type=int, default=30, help="latency: calls per case")
    parser.add_argument("--no-queue", action="store_true", help="latency in the process only")
    args = parser.parse_args()
    if not FLICKR.is_dir():
        print(f"{FLICKR} is absent: nothing to measure")
        return 0
    settings = get_settings()
    urls = ready_servers(settings)
    sessions = make_sessionmaker(make_engine(urls.database_url))
    names, photos, concepts = _photos(settings)
    scores: dict[tuple[str, str], list[tuple[float, float]]] = {}
    real = []
    held_sizes: list[int] = []
    shown: list[tuple[float, float]] = []
    for seed in range(args.splits):
        train, held = split_by_image(len(names), 0.5, seed)
        for fold, (fit_on, stored) in enumerate(((train, held), (held, train))):
            vectors = photos(fit_on, seed)[stored]
            real.append(vectors)
            stored_names = [names[i] for i in stored]
            rng = np.random.default_rng(1000 * seed + fold)
            name = _collection(sessions, stored_names, vectors, f"split{seed}-fold{fold}")
            users = _users(stored_names, concepts, args.draws, rng)
            _record(urls.database_url, name, users, rng)
            held_sizes += [len(u.held_out) for u in users]
            shown += _concepts_shown(users, stored_names, concepts)
            for user in users:
                ranked = _recommend_all(sessions, settings, name, user, stored_names, rng)
                for method, hits in ranked.items():
                    scores.setdefault((user.row, method), []).append(_metrics(hits, user))
            print(f"split {seed} fold {fold}: {len(users)} users", flush=True)
    _print_quality(scores, args.splits)
    print(
        f"held-out photos per user: median {np.median(held_sizes):.0f}, "
        f"from {min(held_sizes)} to {max(held_sizes)} (of 250), over 20 for "
        f"{100 * np.mean(np.array(held_sizes) > 20):.0f}%"
    )
    top, other = np.mean(shown, axis=0)
    print(
        f"concepts a photo shows: {top:.1f} for the 10 photos most users have events on, "
        f"{other:.1f} for a stored photo that shows any (mean of the folds)"
    )
    sizes = [int(s) for s in args.sizes.split(",") if s]
    if sizes:
        _latency(sessions, settings, np.concatenate(real), sizes, args.calls, not args.no_queue)
    return 0


def _photos(
    settings: Settings,
) -> tuple[list[str], Callable[[np.ndarray, int], np.ndarray], dict[str, set[str]]]:
    """Photo names, unit vectors of every photo from the recipe's head trained on some of
    them, and each concept's photos."""
    cache = settings.state_dir / "cache"
    encoder = LiteConseEncoder(device="cpu", cache_dir=cache)
    captions = read_captions(FLICKR / "captions.csv")
    names = sorted(captions)
    data = Pairs(
        image_features(encoder, [FLICKR / "images" / n for n in names], cache),
        text_features(encoder, [c for n in names for c in captions[n]], cache),
        np.array([i for i, n in enumerate(names) for _ in captions[n]]),
    )
    extra = _imagenet(encoder, cache)
    concepts = {
        c: {names[i] for i in found} for c, found in concept_photos(captions, names).items()
    }

    def photos(fit_on: np.ndarray, seed: int) -> np.ndarray:
        return _recipe(data, extra, fit_on, seed)

    return names, photos, concepts


def _concepts_shown(
    users: list[User], stored: Sequence[str], concepts: dict[str, set[str]]
) -> list[tuple[float, float]]:
    """How many concepts the 10 photos most users have events on show, and how many a stored
    photo that shows any does: why the most-popular list hits so often."""
    count = Counter(n for members in concepts.values() for n in members)
    users_of = Counter(item for u in users for item in set(u.history))
    top = [n for n, _ in users_of.most_common(K)]
    return [
        (
            float(np.mean([count[n] for n in top])),
            float(np.mean([count[n] for n in stored if count[n]])),
        )
    ]


def _collection(
    sessions: sessionmaker[Session], names: Sequence[str], vectors: np.ndarray, tag: str
) -> str:
    """A collection of these image vectors (external id: the photo's name), built in bulk."""
    name = f"bench-rec-{tag}-{uuid.uuid4().hex[:6]}"
    settings = get_settings()
    with sessions() as session:
        collection = repository.ensure_collection(
            session=session,
            name=name,
            model="bench",
            model_version=tag,
            dim=vectors.shape[1],
            fusion="sum",
        )
        repository.drop_item_index(session=session, collection=collection)
        for start in range(0, len(names), 2000):
            rows = [
                repository.ItemRow(f"ext:{n}", n, "image", None, None, {}, n, vectors[i])
                for i, n in enumerate(names[start : start + 2000], start)
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


def _users(
    stored: Sequence[str], concepts: dict[str, set[str]], draws: int, rng: np.random.Generator
) -> list[User]:
    """Users liking each concept that has more stored photos than their history."""
    here = set(stored)
    users = []
    for concept, members in concepts.items():
        liked = sorted(members & here)
        others = sorted(here - members)
        for n, noisy in HISTORIES:
            if len(liked) <= n:
                continue
            for d in range(draws):
                history = list(rng.choice(liked, n, replace=False))
                noise = list(rng.choice(others, n, replace=False)) if noisy else []
                users.append(
                    User(
                        f"{concept}-{n}{'n' if noisy else ''}-{d}",
                        history + noise,
                        set(liked) - set(history),
                        f"{n}{' + noise' if noisy else ''}",
                    )
                )
    return users


def _record(
    database_url: str, collection: str, users: list[User], rng: np.random.Generator
) -> None:
    """Every user's events, in one COPY as `mmq events load` writes them. A user's concept
    items get a random event each; their noise items a view."""
    now = datetime.now(UTC)
    rows = []
    for user in users:
        n_liked = len(user.history) // 2 if user.row.endswith("noise") else len(user.history)
        for i, item in enumerate(user.history):
            event = str(rng.choice(EVENTS)) if i < n_liked else "view"
            at = now - timedelta(days=float(rng.uniform(0, 90)))
            rows.append(events.new_event(user=user.name, external_id=item, event=event, at=at))
    with psycopg.connect(psycopg_url(database_url), autocommit=True) as conn:
        with conn.transaction():
            events.record(conn, collection=collection, events=rows)


def _recommend_all(
    sessions: sessionmaker[Session],
    settings: Settings,
    collection: str,
    user: User,
    stored: Sequence[str],
    rng: np.random.Generator,
) -> dict[str, list[str]]:
    """The user's 10 by each method (external ids); "random": 10 of their unseen items."""
    out = {}
    with sessions() as session:
        for label, method in (("recommender", "auto"), ("centroid", "centroid"), ("svm", "svm")):
            request = RecommendRequest(
                collection=collection,
                user=user.name,
                k=K,
                method=method,  # type: ignore[arg-type]
            )
            result = recommend(session=session, request=request, settings=settings)
            out[label] = [str(h.external_id) for h in result.hits]
        out["most popular"] = _popular(session, settings, collection, user)
    unseen = sorted(set(stored) - set(user.history))
    out["random"] = [str(n) for n in rng.choice(unseen, K, replace=False)]
    return out


def _popular(session: Session, settings: Settings, collection: str, user: User) -> list[str]:
    found = repository.get_collection(session=session, name=collection)
    seen = session.execute(
        text("SELECT id FROM items WHERE collection_id = :c AND external_id = ANY(:e)"),
        {"c": found.id, "e": user.history},
    )
    rows = events.popular(
        session_conn(session),
        collection=collection,
        collection_id=found.id,
        half_life_s=settings.recommend_half_life_days * 86400,
        kinds=["image"],
        filter=None,
        exclude_item_ids=[i for (i,) in seen],
        k=K,
    )
    session.commit()
    return [r.external_id for r in rows]


def _metrics(hits: list[str], user: User) -> tuple[float, float]:
    """(hit: any held-out photo in the 10, NDCG@10 with the held-out photos relevant)."""
    gains = [1.0 if h in user.held_out else 0.0 for h in hits[:K]]
    dcg = sum(g / np.log2(rank + 2) for rank, g in enumerate(gains))
    ideal = sum(1 / np.log2(rank + 2) for rank in range(min(K, len(user.held_out))))
    return float(any(gains)), float(dcg / ideal)


def _print_quality(scores: dict[tuple[str, str], list[tuple[float, float]]], splits: int) -> None:
    print(
        f"\nflickr8k-dev, {splits} splits x 2 folds (250 photos stored each, the head trained "
        "on the other 250); users like one concept"
    )
    print("| history | method | users | HitRate@10 | NDCG@10 | HitRate vs most popular |")
    print("|---|---|---|---|---|---|")
    for row in dict.fromkeys(r for r, _ in scores):
        popular = np.mean([h for h, _ in scores[(row, "most popular")]])
        for method in METHODS:
            found = np.array(scores[(row, method)])
            hit, ndcg = found.mean(0)
            ratio = f"{hit / popular:.2f}x" if popular > 0 else "—"
            print(f"| {row} | {method} | {len(found)} | {hit:.3f} | {ndcg:.3f} | {ratio} |")


def _latency(
    sessions: sessionmaker[Session],
    settings: Settings,
    real: np.ndarray,
    sizes: list[int],
    calls: int,
    queue: bool,
) -> None:
    urls = ready_servers(settings)
    client = Client(settings, urls)
    with ExitStack() as stack:
        if queue:
            logs = settings.state_dir / "logs"
            stack.enter_context(running_workers(client.app, queues=("search",), log_dir=logs))
        _latency_table(sessions, settings, client, queue, real, sizes, calls)
    client.close()


def _latency_table(
    sessions: sessionmaker[Session],
    settings: Settings,
    client: Client,
    queue: bool,
    real: np.ndarray,
    sizes: list[int],
    calls: int,
) -> None:
    print("\n| vectors | user | method | p50 ms (process) | p95 ms (process) | p50 ms (queue) |")
    print("|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for size in sizes:
        vectors = np.concatenate([real, synthetic(real, size - len(real))])
        ids = [f"v{i}" for i in range(size)]
        name = _collection(sessions, ids, vectors, f"latency{size}")
        crowd = [
            events.new_event(user=f"crowd-{u}", external_id=str(e), event="view")
            for u in range(2000)
            for e in rng.choice(ids, 20, replace=False)
        ]
        cases = {"3 items": 3, "20 items": 20, "no history": 0}
        for label, n in cases.items():
            crowd += [
                events.new_event(user=f"{label}-{c}", external_id=str(e), event="like")
                for c in range(calls)
                for e in rng.choice(ids, n, replace=False)
            ]
        with psycopg.connect(psycopg_url(client.urls.database_url), autocommit=True) as conn:
            with conn.transaction():
                events.record(conn, collection=name, events=crowd)
        for label in cases:
            users = [f"{label}-{c}" for c in range(calls)]
            method, process = _timed_in_process(sessions, settings, name, users)
            through = _timed_queue(client, name, users) if queue else []
            q50 = f"{np.percentile(through, 50):.1f}" if through else "—"
            print(
                f"| {size:,} | {label} | {method} | {np.percentile(process, 50):.1f} | "
                f"{np.percentile(process, 95):.1f} | {q50} |",
                flush=True,
            )


def _timed_in_process(
    sessions: sessionmaker[Session], settings: Settings, collection: str, users: list[str]
) -> tuple[str, list[float]]:
    times, method = [], ""
    with sessions() as session:
        for i, user in enumerate(users):
            request = RecommendRequest(collection=collection, user=user, k=K)
            t0 = time.perf_counter()
            result = recommend(session=session, request=request, settings=settings)
            if i:  # the first call samples the SVM's background, kept for later calls
                times.append((time.perf_counter() - t0) * 1e3)
            method = result.method
    return method, times


def _timed_queue(client: Client, collection: str, users: list[str]) -> list[float]:
    times = []
    client.recommend(users[0], collection, K).result(timeout=300)  # the worker's first
    for user in users:
        t0 = time.perf_counter()
        client.recommend(user, collection, K).result(timeout=120)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


if __name__ == "__main__":
    raise SystemExit(main())

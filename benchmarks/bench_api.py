"""HTTP API against the Client: search latency and queries/s, and upload ingest against
path ingest, measured side by side in one run.

    python -m benchmarks.bench_api [--vectors 10000] [--queries 200] [--clients 8]
                                   [--images 48] [--query text|vector] [--keep]
    (or: make bench-api; --help lists the rest)

Everything runs in a temporary state folder: its own embedded servers, an ingest worker and
a search worker, and `mmq serve` as a separate process on 127.0.0.1, as in production.

1. Ingest: the same `--images` copies of the bundled photos (one pixel changed in each, so
   that none is a duplicate) go into fresh collections through `Client.ingest` with paths,
   and as multipart uploads (`--per-request` files a request, `--uploads` requests at a
   time). Images/s from the first request to the end of the last job.
2. Search: a collection of `--vectors` vectors (the ingested photos' vectors plus synthetic
   ones, as `make bench` builds it) bound to the served model, so text queries work.
   `--clients` threads, each with its own Client call or HTTP connection, search through
   `client.search(...).result()` and through `POST /v1/collections/{c}/search`.

Both parts alternate the two paths in `--rounds` rounds (A B A B) to spread the machine's
noise over both. Goals (issue 15): HTTP adds at most 5 ms at p50, keeps at least 0.8 of the
Client's queries/s, and upload ingest keeps at least 0.8 of path ingest's images/s.
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from benchmarks import bench_search
from benchmarks.bench import machine, queries
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import get_encoder
from mmq.samples import write_photos
from mmq.schemas import IngestItem
from mmq.store.db import make_engine, make_sessionmaker
from tests.support.api import free_port, new_key

P50_GOAL_MS, QPS_GOAL, INGEST_GOAL = 5.0, 0.8, 0.8
K = 10
QUERY_KINDS = {
    "text": "text queries (the search worker encodes them)",
    "vector": "vector queries (encoded beforehand: neither path encodes)",
}


@dataclass
class Searches:
    """Per-query milliseconds and wall seconds, over every round of one path."""

    ms: list[float]
    wall_s: float = 0.0

    @property
    def qps(self) -> float:
        return len(self.ms) / self.wall_s

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.ms, q))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=10_000, help="search collection size")
    parser.add_argument("--queries", type=int, default=200, help="timed searches per path")
    parser.add_argument("--clients", type=int, default=8, help="concurrent searching threads")
    parser.add_argument("--images", type=int, default=48, help="images ingested per path")
    parser.add_argument("--query", choices=("text", "vector"), default="text")
    parser.add_argument("--rounds", type=int, default=2, help="A B rounds of each part")
    parser.add_argument("--per-request", type=int, default=8, help="files per upload request")
    parser.add_argument("--uploads", type=int, default=2, help="upload requests at a time")
    parser.add_argument("--api-workers", type=int, default=1, help="`mmq serve --workers`")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (logs)")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="mmq-bench-api-"))
    if args.keep:
        print(f"state folder (kept): {state}", flush=True)
    else:
        # Registered before the embedded servers start, so it runs after they stop (atexit
        # runs the last registered first).
        atexit.register(shutil.rmtree, state, ignore_errors=True)
    os.environ["MMQ_STATE_DIR"] = str(state)
    return run(args, state)


def run(args: argparse.Namespace, state: Path) -> int:
    settings = get_settings()
    urls = ready_servers(settings)
    # Loaded here first: the label vectors it caches under the state folder are the
    # workers' too, and vector queries are encoded with it.
    encoder = get_encoder(settings.model, settings.device, cache_dir=state / "cache").load()
    photos = photo_copies(state / "photos", args.images)
    wanted = args.queries + 2 * args.clients  # the warm-up's too
    captions = queries(wanted)
    texts = [captions[i % len(captions)] for i in range(wanted)]
    client = Client(settings, urls)
    logs = state / "logs"
    with running_workers(client.app, log_dir=logs, roots=[state / "photos"]):
        with serving(logs / "api.log", args.api_workers) as base_url:
            print(f"machine: {machine()}; model {encoder.name}; API {base_url}", flush=True)
            names = [f"bench-api-{uuid.uuid4().hex[:8]}" for _ in range(2 * args.rounds + 2)]
            key = new_key(urls, names, "write")
            path_rate, upload_rate = ingest_part(client, base_url, key, photos, names, args)
            sessions = make_sessionmaker(make_engine(urls.database_url))
            with sessions() as session:
                real = bench_search.real_vectors(session, names[2])
            extra = bench_search.synthetic(real, max(args.vectors - len(real), 0))
            t0 = time.monotonic()
            name = bench_search.build(sessions, encoder, settings, np.concatenate([real, extra]))
            print(f"search collection: {args.vectors:,} vectors in {time.monotonic() - t0:.0f} s")
            key = new_key(urls, [name], "read")
            bodies: list[dict[str, Any]] = (
                [{"text": t} for t in texts]
                if args.query == "text"
                else [{"vector": v.tolist()} for v in encoder.encode_texts(texts)]
            )
            via_client, via_http = search_part(client, base_url, key, name, bodies, args)
    client.close()
    print_table(args, via_client, via_http, path_rate, upload_rate)
    return 0


def photo_copies(folder: Path, n: int) -> list[Path]:
    """`n` PNG copies of the bundled photos, each with one pixel changed: distinct files
    (and distinct uploads, which the media store keeps by content)."""
    originals = sorted(write_photos(folder / "originals").values())
    copies = []
    for i in range(n):
        with Image.open(originals[i % len(originals)]) as original:
            image = original.convert("RGB")
        image.putpixel((0, 0), (i % 256, (i // 256) % 256, 255))
        path = folder / f"{i:05d}-{originals[i % len(originals)].name}"
        image.save(path)
        copies.append(path)
    return copies


@contextmanager
def serving(log: Path, workers: int) -> Iterator[str]:
    """`mmq serve` in a process of its own, over this process's servers (exported URLs)."""
    port = free_port()
    # One key makes every request here: the per-key rate must not turn them into 429s.
    env = {**os.environ, "MMQ_API_RATE_PER_MINUTE": str(10**9)}
    command = [sys.executable, "-m", "mmq.cli", "serve", "--port", str(port)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [*command, "--workers", str(workers)], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"mmq serve exited with {proc.returncode}: see its log")
        try:
            if httpx.get(f"{url}/healthz", timeout=10).json().get("status") == "ok":
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)
    raise SystemExit(f"mmq serve did not report healthy within {timeout:.0f}s")


def ingest_part(
    client: Client,
    url: str,
    key: str,
    photos: list[Path],
    names: list[str],
    args: argparse.Namespace,
) -> tuple[float, float]:
    """Images/s of path ingest and of upload ingest, each round into fresh collections."""
    warm = photos[: min(8, len(photos))]
    ingest_paths(client, warm, names[0])
    ingest_uploads(url, key, warm, names[1], args.per_request, args.uploads)
    walls: dict[str, float] = {"paths": 0.0, "uploads": 0.0}
    for r in range(args.rounds):
        a, b = names[2 + 2 * r], names[3 + 2 * r]
        walls["paths"] += ingest_paths(client, photos, a)
        walls["uploads"] += ingest_uploads(url, key, photos, b, args.per_request, args.uploads)
        print(f"ingest round {r + 1}: paths, then uploads", flush=True)
    n = len(photos) * args.rounds
    return n / walls["paths"], n / walls["uploads"]


def ingest_paths(client: Client, photos: list[Path], collection: str) -> float:
    t0 = time.perf_counter()
    result = client.ingest(
        [IngestItem(image_path=str(p)) for p in photos], collection=collection
    ).result(timeout=3600)
    wall = time.perf_counter() - t0
    if result.failed or result.stored != len(photos):
        raise SystemExit(f"path ingest: {result.stored} stored, {result.failed} failed")
    return wall


def ingest_uploads(
    url: str, key: str, photos: list[Path], collection: str, per_request: int, at_once: int
) -> float:
    """Seconds from the first upload to the end of the last job, polled as `Job.result`
    polls (every 0.1 s)."""
    chunks = [photos[i : i + per_request] for i in range(0, len(photos), per_request)]
    headers = {"Authorization": f"Bearer {key}"}

    def upload(http: httpx.Client, chunk: list[Path]) -> str:
        files = [("file", (p.name, p.read_bytes(), "image/png")) for p in chunk]
        r = http.post(f"/v1/collections/{collection}/items", files=files)
        if r.status_code != 202:
            raise SystemExit(f"upload answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["status_url"])

    with httpx.Client(base_url=url, headers=headers, timeout=600) as http:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(at_once) as pool:
            status_urls = list(pool.map(lambda chunk: upload(http, chunk), chunks))
        stored = failed = 0
        for status_url in status_urls:
            while (job := http.get(status_url).json())["state"] != "done":
                time.sleep(0.1)
            stored, failed = stored + job["stored"], failed + job["failed"]
        wall = time.perf_counter() - t0
    if failed or stored != len(photos):
        raise SystemExit(f"upload ingest: {stored} stored, {failed} failed")
    return wall


def search_part(
    client: Client,
    url: str,
    key: str,
    name: str,
    bodies: list[dict[str, Any]],
    args: argparse.Namespace,
) -> tuple[Searches, Searches]:
    """Latencies and queries/s of the same searches through the Client and through HTTP."""
    headers = {"Authorization": f"Bearer {key}"}
    # One connection per thread, kept across rounds as a web backend keeps its pool.
    https = [httpx.Client(base_url=url, headers=headers, timeout=60) for _ in range(args.clients)]

    def via_client(thread: int, body: dict[str, Any]) -> None:
        client.search(collection=name, targets=["image"], k=K, **body).result(60)

    def via_http(thread: int, body: dict[str, Any]) -> None:
        r = https[thread].post(
            f"/v1/collections/{name}/search", json={**body, "targets": ["image"], "k": K}
        )
        if r.status_code != 200 or not r.json()["hits"]:
            raise SystemExit(f"HTTP search answered {r.status_code}: {r.text[:300]}")

    warm, timed = bodies[: 2 * args.clients], bodies[2 * args.clients :]
    out = {"client": Searches([]), "http": Searches([])}
    calls = {"client": via_client, "http": via_http}
    for call in calls.values():
        concurrently(call, warm, args.clients, Searches([]))  # warm-up, not counted
    for r in range(args.rounds):
        for path, call in calls.items():
            concurrently(call, timed[r :: args.rounds], args.clients, out[path])
        print(f"search round {r + 1}: Client, then HTTP", flush=True)
    for http in https:
        http.close()
    return out["client"], out["http"]


def concurrently(
    call: Callable[[int, dict[str, Any]], None],
    bodies: list[dict[str, Any]],
    threads: int,
    into: Searches,
) -> None:
    """`threads` threads, each making its share of the searches one after another; adds
    each search's milliseconds and the wall time to `into`."""

    def share(thread: int) -> list[float]:
        ms = []
        for body in bodies[thread::threads]:
            t0 = time.perf_counter()
            call(thread, body)
            ms.append(1e3 * (time.perf_counter() - t0))
        return ms

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        for ms in pool.map(share, range(threads)):
            into.ms.extend(ms)
    into.wall_s += time.perf_counter() - t0


def print_table(
    args: argparse.Namespace, client: Searches, http: Searches, path_rate: float, upload_rate: float
) -> None:
    dp50 = http.percentile(50) - client.percentile(50)
    ratio, ingest_ratio = http.qps / client.qps, upload_rate / path_rate
    met = {True: "met", False: "missed"}
    print(
        f"\n{args.vectors:,} vectors, {QUERY_KINDS[args.query]}, "
        f"{len(client.ms)} searches a path by {args.clients} concurrent clients, k={K}; "
        f"{args.images} PNG images a path and round, uploads {args.per_request} files a request, "
        f"{args.uploads} at a time; {args.rounds} alternating rounds; "
        f"mmq serve --workers {args.api_workers}\n"
    )
    print("| measure | Client | HTTP | HTTP against Client | goal |")
    print("|---|---|---|---|---|")
    print(
        f"| search p50 (ms) | {client.percentile(50):.1f} | {http.percentile(50):.1f} "
        f"| {dp50:+.1f} ms | ≤ +{P50_GOAL_MS:.0f} ms ({met[dp50 <= P50_GOAL_MS]}) |"
    )
    print(
        f"| search p95 (ms) | {client.percentile(95):.1f} | {http.percentile(95):.1f} "
        f"| {http.percentile(95) - client.percentile(95):+.1f} ms | — |"
    )
    print(
        f"| search queries/s | {client.qps:.1f} | {http.qps:.1f} | {ratio:.2f}× "
        f"| ≥ {QPS_GOAL}× ({met[ratio >= QPS_GOAL]}) |"
    )
    print(
        f"| ingest images/s (paths / uploads) | {path_rate:.1f} | {upload_rate:.1f} "
        f"| {ingest_ratio:.2f}× | ≥ {INGEST_GOAL}× ({met[ingest_ratio >= INGEST_GOAL]}) |"
    )


if __name__ == "__main__":
    raise SystemExit(main())

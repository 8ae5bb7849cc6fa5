"""A change to the ingest path, measured against the code it changes: alternating rounds.

    python -m benchmarks.overhead_ab --base COMMIT [--rounds 3] [--images 500]

Each round starts an ingest worker from one tree (A: `--base` checked out in a temporary
git worktree, B: this tree), ingests the photos in chunks of MMQ_INGEST_CHUNK_SIZE and one
per message, and reads the whole machine's CPU time per image; A and B alternate (A B A B
...) so that the machine's drift falls on both. The producer is this tree's in both.
Prints each round and the medians, with the overhead beyond the model's forward pass and
decoding (measured once, here, as `make bench` does).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from pathlib import Path

from benchmarks import bench_ingest
from mmq.cli.spawn import ready_servers, running_workers
from mmq.client import Client
from mmq.config import get_settings
from mmq.encoders import get_encoder
from tests.support.data import FLICKR_IMAGES, photo_items

REPO = Path(__file__).resolve().parent.parent
MODES = {"batch": None, "one_per_message": 1}  # chunk size; None: the setting's


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", required=True, help="the commit to compare with (A)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    settings = get_settings()
    urls = ready_servers(settings)
    encoder = get_encoder(settings.model, settings.device, cache_dir=settings.state_dir / "cache")
    encoder.load()
    items, _ = photo_items(args.images, settings.state_dir / "bench", FLICKR_IMAGES)
    limit = bench_ingest.model_limit(encoder, items)
    beside_model = 1000 * limit["streams"] * limit["threads"] / limit["images_per_s"]
    beside_model += bench_ingest.decode_cost_ms(encoder, items)
    client = Client(settings, urls)
    roots = sorted({Path(it.image_path or "").parent for it in items})
    figures: dict[str, dict[str, list[tuple[float, float]]]] = {"A": {}, "B": {}}
    with tempfile.TemporaryDirectory(prefix="mmq-ab-") as tmp:
        base = Path(tmp) / "base"
        subprocess.run(
            ["git", "-C", str(REPO), "worktree", "add", "--detach", str(base), args.base],
            check=True,
            capture_output=True,
        )
        try:
            for _ in range(args.rounds):
                for name, tree in (("A", base), ("B", REPO)):
                    env = {**os.environ, "PYTHONPATH": str(tree)}
                    logs = settings.state_dir / "logs" / f"ab-{name}"
                    with running_workers(
                        client.app, queues=("ingest",), log_dir=logs, env=env, roots=roots
                    ):
                        bench_ingest.through_queue(client, items[:64], chunk_size=16)  # warm-up
                        for mode, chunk in MODES.items():
                            size = chunk or settings.ingest_chunk_size
                            t = bench_ingest.through_queue(client, items, chunk_size=size)
                            figures[name].setdefault(mode, []).append(t)
                            print(
                                f"{name} {mode:16s} {t.images_per_s:6.1f} images/s"
                                f" {t.cpu_ms_per_image:6.1f} CPU ms/image",
                                flush=True,
                            )
        finally:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(base)], check=False
            )
    print(f"A = {args.base}, B = this tree; forward pass and decoding alone: {beside_model:.1f}")
    print(f"{'median of ' + str(args.rounds):24s} {'images/s':>18s} {'overhead ms/image':>20s}")
    for mode in MODES:
        a, b = figures["A"][mode], figures["B"][mode]
        rate = [statistics.median(r for r, _ in f) for f in (a, b)]
        over = [statistics.median(c for _, c in f) - beside_model for f in (a, b)]
        print(f"{mode:24s} {rate[0]:8.1f} → {rate[1]:6.1f}   {over[0]:8.1f} → {over[1]:6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

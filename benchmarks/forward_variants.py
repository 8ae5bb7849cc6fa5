"""The image tower's forward pass: eager against frozen TorchScript, one pass on every
core against one single-threaded pass per core, alone and beside threads that decode.

    python -m benchmarks.forward_variants [--images 240] [--rounds 3]

Why the lite encoder scripts its image tower on CPU and why a threads-pool worker runs
one encode stream per core (mmq/encoders/lite_conse.py, mmq/encoders/batching.py). "beside
decoding": other threads of the same process decode and prepare real photos (as a
worker's tasks do) and feed the passes through a queue. Images per second; each figure
is the best of `--rounds`, the variants interleaved round by round.
"""

from __future__ import annotations

import argparse
import queue
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from mmq.encoders.base import cpu_count
from mmq.encoders.lite_conse import LiteConseEncoder, image_tower, load_image_model
from mmq.media import decode_image
from tests.support.data import photo_items

BATCH = 2
DECODERS = 4


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    encoder = LiteConseEncoder("cpu")  # for its preprocessing
    net = load_image_model()
    towers = {
        "eager": image_tower(net, script=False),
        "frozen TorchScript": image_tower(net, script=True),
    }
    with tempfile.TemporaryDirectory() as work:
        items, source = photo_items(args.images, Path(work))
        photos = [Path(item.image_path or "").read_bytes() for item in items]
    cores = cpu_count()
    layouts = [(1, cores), (cores, 1)]  # (passes side by side, torch threads each)
    best: dict[tuple[str, str, str], float] = {}
    for _ in range(args.rounds):
        for tower_name, tower in towers.items():
            for streams, threads in layouts:
                torch.set_num_threads(threads)
                layout = f"{streams}x{threads} threads"
                for setting, run in (("alone", alone), ("beside decoding", beside_decoding)):
                    rate = run(tower, encoder, photos, streams)
                    key = (tower_name, layout, setting)
                    best[key] = max(best.get(key, 0.0), rate)
    print(f"{source}; batch {BATCH}; {cores} CPUs; {DECODERS} decoding threads; images/s")
    print(f"{'tower':20s} {'layout':16s} {'alone':>8s} {'beside decoding':>16s}")
    for tower_name in towers:
        for streams, threads in layouts:
            layout = f"{streams}x{threads} threads"
            a, b = (
                best[(tower_name, layout, "alone")],
                best[(tower_name, layout, "beside decoding")],
            )
            print(f"{tower_name:20s} {layout:16s} {a:8.1f} {b:16.1f}")
    return 0


def _passes(tower: Any, streams: int, batches: Callable[[], Any | None]) -> int:
    """Run `streams` threads of forward passes over `batches` until it returns None
    (one pass runs in this thread: a process's first thread is where torch's intra-op
    threads work best); returns the images encoded."""
    done = [0] * streams

    def work(i: int) -> None:
        with torch.inference_mode():
            while (batch := batches()) is not None:
                tower(batch)
                done[i] += len(batch)

    others = [threading.Thread(target=work, args=(i,)) for i in range(1, streams)]
    for t in others:
        t.start()
    work(0)
    for t in others:
        t.join()
    return sum(done)


def alone(tower: Any, encoder: LiteConseEncoder, photos: list[bytes], streams: int) -> float:
    prepared = encoder.prepare_images([_decode(p) for p in photos[:BATCH]])
    left = [len(photos) // BATCH]
    lock = threading.Lock()

    def batches() -> Any | None:
        with lock:
            left[0] -= 1
            return prepared if left[0] >= 0 else None

    t0 = time.perf_counter()
    n = _passes(tower, streams, batches)
    return n / (time.perf_counter() - t0)


def beside_decoding(
    tower: Any, encoder: LiteConseEncoder, photos: list[bytes], streams: int
) -> float:
    ready: queue.Queue[Any] = queue.Queue(maxsize=2 * streams)

    def decode(part: list[bytes]) -> None:
        for start in range(0, len(part), BATCH):
            ready.put(encoder.prepare_images([_decode(p) for p in part[start : start + BATCH]]))

    def close() -> None:
        for t in decoders:
            t.join()
        for _ in range(streams):
            ready.put(None)  # one end mark per stream

    decoders = [
        threading.Thread(target=decode, args=(photos[i::DECODERS],)) for i in range(DECODERS)
    ]
    t0 = time.perf_counter()
    for t in [*decoders, closer := threading.Thread(target=close)]:
        t.start()
    n = _passes(tower, streams, ready.get)
    closer.join()
    return n / (time.perf_counter() - t0)


def _decode(data: bytes) -> Any:
    return decode_image(data, max_bytes=1 << 26, max_pixels=1 << 28)


if __name__ == "__main__":
    raise SystemExit(main())

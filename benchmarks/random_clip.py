"""Save a randomly initialised CLIP checkpoint (tests/support/clip.py builds it), for
throughput where no real checkpoint can be had:

    python -m benchmarks.random_clip --shape vit-b-32 --out .mmq/clip-vit-b-32

A random ViT-B/32 computes exactly what the real one does per image (same layers, same
sizes), so its images per second are the real model's; its vectors mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.support.clip import SHAPES, build_random_clip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="vit-b-32")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(build_random_clip(args.out, shape=args.shape))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

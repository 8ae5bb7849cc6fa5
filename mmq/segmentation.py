"""Video segments from sampled frame vectors: cut where the content changes.

A cut goes between two consecutive samples whose vectors are far apart (cosine distance
above a threshold), at the midpoint of the two sample times, so a cut lands within half a
sampling interval of the true change. Cuts closer than `min_s` to a stronger cut (or to
either end) are dropped; segments longer than `max_s` are split evenly. Vectors in, plain
data out: no model, no database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmq.encoders.base import l2_normalize
from mmq.errors import InvalidInput


@dataclass(frozen=True)
class VideoSegment:
    start_s: float
    end_s: float
    keyframe_s: float  # the sample closest to the segment's mean: its most typical moment
    vector: np.ndarray  # L2-normalised mean of the segment's frame vectors


@dataclass(frozen=True)
class SegmentRules:
    cut_distance: float  # cosine distance between consecutive samples that makes a cut
    min_s: float
    max_s: float


def frame_distances(vectors: np.ndarray) -> np.ndarray:
    """Cosine distance between each sample and the one before it (len n - 1)."""
    unit = l2_normalize(np.asarray(vectors, dtype=np.float32))
    return 1.0 - np.einsum("ij,ij->i", unit[1:], unit[:-1])


def segment(
    times: np.ndarray, vectors: np.ndarray, *, duration_s: float, rules: SegmentRules
) -> list[VideoSegment]:
    """Split sampled frames (times ascending, one vector each) into segments covering
    [0, duration_s]."""
    times = np.asarray(times, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float32)
    if len(times) == 0 or len(times) != len(vectors):
        raise InvalidInput("segmentation needs one vector per sample time, and at least one")
    end = max(float(duration_s), float(times[-1]))
    starts = _cut_indices(times, frame_distances(vectors), end=end, rules=rules)
    bounds = [0, *starts, len(times)]
    pieces: list[tuple[int, int]] = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        pieces.extend(_split_long(times, a, b, end=end, max_s=rules.max_s))
    edges = [0.0] + [_cut_time(times, a) for a, _ in pieces[1:]] + [end]
    return [
        _make_segment(times[a:b], vectors[a:b], edges[i], edges[i + 1])
        for i, (a, b) in enumerate(pieces)
    ]


def _cut_time(times: np.ndarray, index: int) -> float:
    """Where the cut before sample `index` goes: halfway from the previous sample."""
    return float(times[index - 1] + times[index]) / 2.0


def _cut_indices(
    times: np.ndarray, distances: np.ndarray, *, end: float, rules: SegmentRules
) -> list[int]:
    """Sample indices that start a new segment, strongest cuts first, `min_s` apart."""
    candidates = np.flatnonzero(distances > rules.cut_distance) + 1
    order = sorted(candidates.tolist(), key=lambda i: -float(distances[i - 1]))
    chosen: list[int] = []
    for i in order:
        t = _cut_time(times, i)
        if t < rules.min_s or end - t < rules.min_s:
            continue
        if all(abs(t - _cut_time(times, j)) >= rules.min_s for j in chosen):
            chosen.append(i)
    return sorted(chosen)


def _split_long(
    times: np.ndarray, a: int, b: int, *, end: float, max_s: float
) -> list[tuple[int, int]]:
    """Split samples [a, b) into the fewest even runs whose spans stay within `max_s`."""
    start = 0.0 if a == 0 else _cut_time(times, a)
    stop = end if b == len(times) else _cut_time(times, b)
    parts = min(b - a, max(1, int(np.ceil((stop - start) / max_s - 1e-9))))
    splits = np.linspace(a, b, parts + 1).round().astype(int)
    return [(int(x), int(y)) for x, y in zip(splits[:-1], splits[1:], strict=True) if y > x]


def _make_segment(
    times: np.ndarray, vectors: np.ndarray, start_s: float, end_s: float
) -> VideoSegment:
    mean = l2_normalize(vectors.mean(axis=0))
    typical = int(np.argmax(l2_normalize(vectors) @ mean))
    return VideoSegment(
        start_s=round(start_s, 3),
        end_s=round(end_s, 3),
        keyframe_s=round(float(times[typical]), 3),
        vector=mean,
    )


def video_vector(vectors: np.ndarray) -> np.ndarray:
    """One vector for the whole video: the mean of every sampled frame, so each moment
    counts by its length."""
    return l2_normalize(np.asarray(vectors, dtype=np.float32).mean(axis=0))

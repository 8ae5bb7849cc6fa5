"""Segments from frame vectors: where cuts go, minimum and maximum lengths, keyframes."""

from __future__ import annotations

import numpy as np
import pytest

from mmq.segmentation import SegmentRules, frame_distances, segment, video_vector

RULES = SegmentRules(cut_distance=0.3, min_s=2.0, max_s=30.0)


def scenes(*lengths: int, dim: int = 8) -> np.ndarray:
    """One sample per second; scene i is basis vector i plus a little noise."""
    rng = np.random.default_rng(0)
    rows = [
        np.eye(dim)[i] + 0.05 * rng.standard_normal(dim)
        for i, n in enumerate(lengths)
        for _ in range(n)
    ]
    return np.asarray(rows, dtype=np.float32)


def test_cuts_land_halfway_between_the_samples_around_a_change() -> None:
    vectors = scenes(4, 6, 3)
    times = np.arange(len(vectors), dtype=float)
    segs = segment(times, vectors, duration_s=13.0, rules=RULES)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 3.5), (3.5, 9.5), (9.5, 13.0)]
    # Each segment's vector is its scene's direction; the keyframe lies inside it.
    for i, s in enumerate(segs):
        assert int(np.argmax(s.vector)) == i
        assert np.linalg.norm(s.vector) == pytest.approx(1.0, abs=1e-5)
        assert s.start_s <= s.keyframe_s <= s.end_s


def test_a_cut_closer_than_min_length_yields_to_the_stronger_one() -> None:
    # A one-second flash (scene 1) between two long scenes: too short to be a segment.
    vectors = np.concatenate([scenes(5, 1, 0)[:6], scenes(0, 0, 5)[-5:]])
    times = np.arange(len(vectors), dtype=float)
    segs = segment(times, vectors, duration_s=11.0, rules=RULES)
    assert len(segs) == 2
    assert segs[0].start_s == 0.0 and segs[-1].end_s == 11.0
    assert all(s.end_s - s.start_s >= RULES.min_s for s in segs)


def test_no_cut_within_min_length_of_either_end() -> None:
    vectors = scenes(1, 9)
    segs = segment(np.arange(10, dtype=float), vectors, duration_s=10.0, rules=RULES)
    assert [(s.start_s, s.end_s) for s in segs] == [(0.0, 10.0)]


def test_long_scenes_are_split_evenly_within_max_length() -> None:
    vectors = scenes(100)
    rules = SegmentRules(cut_distance=0.3, min_s=2.0, max_s=30.0)
    segs = segment(np.arange(100, dtype=float), vectors, duration_s=100.0, rules=rules)
    # 100 s within 30 s: the fewest pieces is 4, split at every 25th sample (cuts halfway
    # between samples), so the pieces differ by at most one sample interval.
    assert [(s.start_s, s.end_s) for s in segs] == [
        (0.0, 24.5),
        (24.5, 49.5),
        (49.5, 74.5),
        (74.5, 100.0),
    ]
    lengths = [s.end_s - s.start_s for s in segs]
    assert max(lengths) <= 30.0 and max(lengths) - min(lengths) <= 1.0


def test_a_single_frame_is_one_segment_over_the_whole_duration() -> None:
    segs = segment(np.array([0.0]), scenes(1), duration_s=0.4, rules=RULES)
    assert [(s.start_s, s.end_s, s.keyframe_s) for s in segs] == [(0.0, 0.4, 0.0)]


def test_distances_and_the_video_vector() -> None:
    vectors = scenes(2, 2)
    d = frame_distances(vectors)
    assert d.shape == (3,) and d[1] > 0.5 and d[0] < 0.1 and d[2] < 0.1
    v = video_vector(vectors)
    assert np.linalg.norm(v) == pytest.approx(1.0, abs=1e-5)
    assert v[0] == pytest.approx(v[1], abs=0.1)  # two scenes of equal length weigh equally


def test_mismatched_input_is_refused() -> None:
    with pytest.raises(ValueError, match="one vector per sample time"):
        segment(np.array([0.0, 1.0]), scenes(1), duration_s=2.0, rules=RULES)
    with pytest.raises(ValueError, match="at least one"):
        segment(np.array([]), np.zeros((0, 8)), duration_s=2.0, rules=RULES)

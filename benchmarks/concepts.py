"""Concepts of the flickr8k-dev photos, read from their captions: which photos show a dog,
a beach, snow, ... (for benchmarks that need sets of photos that belong together).

A photo shows a concept when at least MIN_MENTIONS of its captions (five each) use one of
the concept's words: one mention alone is often a detail ("a man in front of a lake").
The words were written down before any figure was measured.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

CONCEPTS: dict[str, tuple[str, ...]] = {
    "dog": ("dog", "dogs", "puppy", "puppies"),
    "beach": ("beach", "shore"),
    "snow": ("snow", "snowy", "skier", "skiing", "snowboarder"),
    "bicycle": ("bicycle", "bicycles", "bike", "bikes", "biker", "bikers", "cyclist", "bmx"),
    "ball": ("ball", "balls"),
    "water": ("water", "lake", "river", "ocean", "sea"),
    "grass": ("grass", "grassy", "lawn"),
    "climbing": ("climb", "climbs", "climbing", "climber", "climbers"),
    "street": ("street", "streets", "sidewalk", "city"),
    "swimming": ("swim", "swims", "swimming", "swimmer", "pool"),
    "mountain": ("mountain", "mountains"),
}
MIN_MENTIONS = 2


def concept_photos(
    captions: Mapping[str, Sequence[str]], names: Sequence[str], min_mentions: int = MIN_MENTIONS
) -> dict[str, np.ndarray]:
    """{concept: indices into `names` of the photos that show it}."""
    out: dict[str, np.ndarray] = {}
    for concept, words in CONCEPTS.items():
        pattern = re.compile(r"\b(" + "|".join(words) + r")\b", re.IGNORECASE)
        out[concept] = np.array(
            [
                i
                for i, name in enumerate(names)
                if sum(bool(pattern.search(c)) for c in captions[name]) >= min_mentions
            ],
            dtype=int,
        )
    return out

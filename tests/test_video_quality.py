"""Real clips (../shared/data/videos, skipped when absent): each clip's name, as a text query,
ranks its clip among the 4, at the rank docs/models.md ("Caveats") gives for the model the
session's workers serve.

The names describe what happens, not always what is on screen: `dog_barking.mp4` shows a man
at a sliding door, and the dog is in a few frames only, hence its rank 3 with `lite`.
`MMQ_MODEL=lite-conse pytest -s tests/test_video_quality.py` checks the `lite-conse` row.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmq.client import Client
from mmq.config import Settings
from mmq.schemas import IngestItem
from tests.support.data import VIDEO_CLIPS as CLIPS
from tests.support.names import fresh
from tests.support.procs import Procs

pytestmark = pytest.mark.slow

EXPECTED_RANKS = {  # docs/models.md "Caveats"
    "lite": {"Iron Man": 2, "dog barking": 3, "silence girl": 1, "skateboarding dog": 1},
    "lite-conse": {"Iron Man": 2, "dog barking": 2, "silence girl": 1, "skateboarding dog": 1},
}


def query_for(path: Path) -> str:
    """`skateboarding_dog.mp4` → "skateboarding dog"; `IronMan.mp4` → "Iron Man"."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", path.stem).replace("_", " ")


@pytest.mark.skipif(not CLIPS.is_dir(), reason=f"{CLIPS} is absent")
def test_each_clip_name_finds_its_clip(client: Client, workers: Procs, settings: Settings) -> None:
    if settings.model not in EXPECTED_RANKS:
        pytest.skip(f"no measured ranks for model {settings.model}")
    clips = sorted(CLIPS.glob("*.mp4"))
    assert len(clips) == 4
    items = [IngestItem(video_path=str(p), external_id=p.name) for p in clips]
    result = client.ingest(items, collection=fresh("clips")).result(timeout=600)
    assert result.failed == 0, [i.error for i in result.items if i.error]
    ranks: dict[str, int] = {}
    for clip in clips:
        found = client.search(
            collection=result.collection, text=query_for(clip), targets=["video"], k=4
        ).result(timeout=60)
        names = [str(h.external_id) for h in found.hits]
        assert sorted(names) == sorted(p.name for p in clips), names  # each video once
        ranks[query_for(clip)] = names.index(clip.name) + 1
    print(f"\nrank of each clip for its own name ({settings.model}): {ranks}")
    assert ranks == EXPECTED_RANKS[settings.model], ranks

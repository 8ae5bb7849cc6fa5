"""The chaos run (tests/support/chaos.py) at small scale; `make chaos` runs it on 500 items:
pool processes, the main worker process and the broker are killed mid-ingest; every item
still ends stored, once, and nothing is left unfinished (docs/reliability.md "Evidence")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmq.embedded import Urls

pytestmark = pytest.mark.slow


def test_nothing_is_lost_or_duplicated_when_workers_and_broker_are_killed(
    urls: Urls, tmp_path: Path
) -> None:
    from tests.support.chaos import run

    result = run(48, child_kills=2, work=tmp_path, database_url=urls.database_url)
    print(json.dumps(result))
    # docs/reliability.md: 48 items; 2 pool-process kills, 1 main, 1 broker → stored 48,
    # failed 0, duplicates 0, stuck 0.
    events = result["events"]
    assert (events["pool_process_kills"], events["main_process_kills"]) == (2, 1)
    assert events["broker_restarts"] == 1
    assert result["stored"] == result["submitted"] == result["item_rows"] == 48
    assert result["failed"] == result["duplicates"] == result["stuck"] == 0

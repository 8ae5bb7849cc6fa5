"""The chaos run (tests/support/chaos.py) at small scale; `make chaos` runs it on 2,000
items: pool processes, the main worker process and the broker are killed mid-ingest, the
broker's data is wiped, PostgreSQL is killed twice, and a producer searches throughout;
every item still ends stored, once, nothing is left unfinished, and no search hangs
(docs/reliability.md "Evidence")."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_nothing_is_lost_or_duplicated_when_workers_broker_and_database_are_killed(
    tmp_path: Path,
) -> None:
    from tests.support.chaos import run

    result = run(48, child_kills=2, work=tmp_path)
    print(json.dumps(result))
    events = result["events"]
    assert (events["pool_process_kills"], events["main_process_kills"]) == (2, 1)
    assert (events["broker_restarts"], events["broker_wipes"], events["postgres_kills"]) == (
        1,
        1,
        2,
    )
    assert result["stored"] == result["submitted"] == result["item_rows"] == 48
    assert result["failed"] == result["duplicates"] == result["stuck"] == 0
    searches = result["searches"]
    assert searches["hung"] == 0 and searches["answered"] > 0

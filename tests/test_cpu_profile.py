"""The bench's profile by stage (benchmarks/cpu_profile.py): a sample belongs to the stage of
its innermost frame that names one."""

from __future__ import annotations

from benchmarks.cpu_profile import OTHER, stage_of

TASK = [
    "_worker (concurrent/futures/thread.py:81)",
    "trace_task (celery/app/trace.py:453)",
    "ingest (workers/tasks.py:90)",
    "IngestTasks._ingest (mmq/services/ingest_tasks.py:221)",
    "ingest (mmq/services/ingest.py:67)",
]


def test_the_innermost_named_frame_decides() -> None:
    upsert = [*TASK, "upsert_items (mmq/store/repository.py:230)", "execute (psycopg/cursor.py:97)"]
    assert stage_of(upsert) == "collection and upsert"
    commit = [*TASK, "Session.commit (sqlalchemy/orm/session.py:2030)"]
    assert stage_of(commit) == "commit and job records"
    decode = [*TASK, "encode_items (x.py:1)", "decode_item (mmq/services/encode_items.py:123)"]
    assert stage_of(decode) == "decode and prepare"


def test_celery_around_a_task_is_receive_and_ack_when_nothing_inside_names_a_stage() -> None:
    assert stage_of(TASK[:2]) == "receive and ack"
    assert stage_of(["BatchingEncoder._serve (mmq/encoders/batching.py:94)"]) == "forward pass"
    assert stage_of(["main (somewhere.py:1)"]) == OTHER

"""Only JSON messages run: a pickle message on the queue is refused, never executed, and the
worker goes on serving the next job."""

from __future__ import annotations

import pickle
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from mmq.broker import INGEST_QUEUE, INGEST_TASK
from mmq.client import Client
from tests.support.names import fresh
from tests.support.procs import Procs, all_alive

pytestmark = pytest.mark.slow


class Canary:
    """Unpickling this would create the file: proof that pickle content was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (open, (self.path, "w"))


def test_a_pickle_message_is_refused_and_the_worker_lives_on(
    client: Client, workers: Procs, photos: dict[str, Path], state_dir: Path, tmp_path: Path
) -> None:
    canary = tmp_path / "executed"
    control = tmp_path / "control"  # the canary works: unpickling it creates its file
    pickle.loads(pickle.dumps(Canary(str(control)))).close()
    assert control.exists()
    with client.app.producer_or_acquire() as producer:
        producer.publish(
            pickle.dumps(((Canary(str(canary)),), {}, {})),
            routing_key=INGEST_QUEUE,
            exchange="",
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={"task": INGEST_TASK, "id": str(uuid.uuid4()), "lang": "py"},
        )
    # A valid job sent after it is served: the worker lived through the refused message.
    result = client.ingest(
        [{"image_path": str(photos["chelsea"])}], collection=fresh("wire")
    ).result(timeout=120)
    assert result.stored == 1
    assert not canary.exists()
    assert all_alive(workers)
    log = (state_dir / "logs" / "worker-ingest.log").read_text(errors="replace")
    assert "Refusing to deserialize untrusted content of type pickle" in log

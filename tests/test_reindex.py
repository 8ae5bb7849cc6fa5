"""Re-embedding a collection through real workers: `lite` → `lite-conse` → `lite`.

The session's workers serve `lite`; this module adds one serving `lite-conse` on its
model's queues only. Searches are answered before, during (by the old model) and after
(by the new one, the lite worker sending them on); items ingested during the reindex are
caught up; an item whose original is gone holds the switch until --allow-missing; and
running the command again goes on from the vectors already written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from mmq.broker import INGEST_TASK
from mmq.cli.spawn import running_workers, wait_for_consumer
from mmq.cli.worker import with_model_queues
from mmq.client import Client, ReindexJob
from mmq.embedded import Urls
from mmq.errors import BadRequest
from mmq.jobs import reindex_jobs
from mmq.jobs.reconcile import reconcile
from mmq.schemas import IngestItem, SearchResult
from tests.support.cli import mmq
from tests.support.db import connect
from tests.support.names import fresh
from tests.support.procs import Procs

TIMEOUT = 300
PHOTOS = ("chelsea", "coffee", "rocket", "horse")


def test_a_worker_also_consumes_its_models_queues() -> None:
    assert with_model_queues(["ingest", "search"], "lite") == [
        "ingest",
        "search",
        "ingest.lite",
        "search.lite",
    ]
    assert with_model_queues(["search.lite-conse"], "lite-conse") == ["search.lite-conse"]


def start_conse_worker(
    client: Client, state_dir: Path
) -> AbstractContextManager[list[subprocess.Popen[bytes]]]:
    """A worker of `lite-conse` on its model's queues only (the session's workers keep the
    plain ones): it runs the reindex to lite-conse and the searches sent on to it."""
    env = {**os.environ, "MMQ_MODEL": "lite-conse"}
    return running_workers(
        client.app,
        queues=("ingest.lite-conse,search.lite-conse",),
        log_dir=state_dir / "logs",
        env=env,
        timeout=TIMEOUT,
    )


def search(client: Client, name: str, text: str = "a tabby cat") -> SearchResult:
    return client.search(collection=name, text=text, k=20).result(timeout=TIMEOUT)


def ranked(result: SearchResult) -> list[tuple[str, float]]:
    return [(h.external_id or "", h.score) for h in result.hits]


def assert_same_ranking(got: list[tuple[str, float]], want: list[tuple[str, float]]) -> None:
    assert [i for i, _ in got] == [i for i, _ in want]
    assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-3)


def fill(client: Client, photos: dict[str, Path]) -> str:
    """Photos by path, one as bytes (its original kept in the media store), a caption and
    a pair: every kind a reindex re-reads."""
    name = fresh("reidx")
    items = [IngestItem(image_path=str(photos[p]), external_id=p) for p in PHOTOS[:3]]
    items.append(IngestItem(image_bytes=photos["horse"].read_bytes(), external_id="horse"))
    items.append(IngestItem(text="a bowl of soup", external_id="soup"))
    items.append(
        IngestItem(image_path=str(photos["astronaut"]), text="a man in space", external_id="pair")
    )
    result = client.ingest(items, collection=name).result(timeout=TIMEOUT)
    assert result.failed == 0, result.items
    return name


@pytest.mark.slow
def test_lite_to_lite_conse_and_back(
    client: Client, workers: Procs, photos: dict[str, Path], state_dir: Path
) -> None:
    name = fill(client, photos)
    before = search(client, name)
    lite_version = before.model_version
    assert before.hits[0].external_id == "chelsea"

    job = client.reindex(name, model="lite-conse")
    assert isinstance(client.job(job.id), ReindexJob)
    # No lite-conse worker yet: its tasks wait, and the old model answers every search.
    assert job.progress() == (0, 6)
    (info,) = [c for c in client.collections() if c.name == name]
    assert info.model == "lite" and info.reindex is not None
    assert (info.reindex["model"], info.reindex["state"]) == ("lite-conse", "running")
    during = search(client, name)
    assert during.model_version == lite_version
    assert_same_ranking(ranked(during), ranked(before))
    # Ingested during the reindex, by the old model: caught up before the switch.
    late = client.ingest([IngestItem(text="a rocket launch", external_id="late")], collection=name)
    assert late.result(timeout=TIMEOUT).failed == 0

    with start_conse_worker(client, state_dir):
        wait_for_consumer(client.app, "ingest.lite-conse", timeout=TIMEOUT)
        result = job.result(timeout=TIMEOUT)
        assert (result.switched, result.items, result.failed) == (True, 7, [])
        assert job.status().state == "done"
        (info,) = [c for c in client.collections() if c.name == name]
        assert info.model == "lite-conse" and info.reindex is None
        # The lite worker takes the search from the queue and sends it on to lite-conse.
        after = search(client, name)
        assert after.model == "lite-conse" and after.model_version != lite_version
        assert {h.external_id for h in after.hits} == {*PHOTOS, "soup", "pair", "late"}
        assert after.hits[0].external_id == "chelsea"
        assert ranked(after) != ranked(before)  # new vectors, new scores
        # The old model's workers refuse to add old-model vectors to it now.
        refused = client.ingest([IngestItem(text="a dog", external_id="dog")], collection=name)
        (item,) = refused.result(timeout=TIMEOUT).items
        assert item.status == "failed" and "bound to model lite-conse" in (item.error or "")

        # And back, from the command line: the lite workers re-embed it as it was.
        out = mmq("reindex", "--collection", name, "--model", "lite", "--wait", "--json")
        assert json.loads(out.stdout)["switched"] is True, out.stderr
        back = search(client, name)
        assert back.model_version == lite_version
        # The same vectors as before the first reindex: the same ranking, the same scores.
        assert_same_ranking([h for h in ranked(back) if h[0] != "late"], ranked(before))


@pytest.mark.slow
def test_a_gone_original_holds_the_switch_until_allowed(
    client: Client, workers: Procs, photos: dict[str, Path], state_dir: Path, tmp_path: Path
) -> None:
    name = fresh("reidx-gone")
    copy = tmp_path / "rocket-copy.png"
    shutil.copy(photos["rocket"], copy)
    items = [IngestItem(image_path=str(copy), external_id="gone")]
    items += [IngestItem(image_path=str(photos[p]), external_id=p) for p in PHOTOS[:2]]
    assert client.ingest(items, collection=name).result(timeout=TIMEOUT).failed == 0
    copy.unlink()

    with start_conse_worker(client, state_dir):
        wait_for_consumer(client.app, "ingest.lite-conse", timeout=TIMEOUT)
        first_job = client.reindex(name, model="lite-conse")
        first = first_job.result(timeout=TIMEOUT)
        assert (first.switched, first.items) == (False, 2)
        (failure,) = first.failed
        assert failure.external_id == "gone" and "original is gone" in failure.error
        # Still the old model's: its searches go on, and `mmq collections` says why.
        assert search(client, name).model == "lite"
        shown = mmq("collections").stdout
        assert f"reindex to lite-conse: waiting (job {first_job.id})" in shown

        # Again: only the item without a new vector is sent, and it is deleted at the switch.
        again = client.reindex(name, model="lite-conse", allow_missing=True)
        assert again.progress()[1] == 1
        second = again.result(timeout=TIMEOUT)
        assert (second.switched, second.deleted, second.items) == (True, 1, 2)
        assert {h.external_id for h in search(client, name).hits} == {"chelsea", "coffee"}


@pytest.mark.slow
def test_reindexing_to_the_model_in_use_is_refused(client: Client, workers: Procs) -> None:
    name = fresh("reidx-same")
    client.ingest([IngestItem(text="a cat")], collection=name).result(timeout=TIMEOUT)
    with pytest.raises(BadRequest, match="already uses model lite"):
        client.reindex(name, model="lite")


@pytest.mark.slow
def test_the_reconciler_sends_a_lost_reindex_task_to_its_models_queue(
    client: Client, workers: Procs, urls: Urls
) -> None:
    name = fresh("reidx-lost")
    client.ingest([IngestItem(text="a cat")], collection=name).result(timeout=TIMEOUT)
    with connect(urls.database_url) as conn:
        # A producer wrote the reindex, and its messages never reached the broker.
        with conn.transaction():
            started = reindex_jobs.start(
                conn, collection=name, model="lite-conse", allow_missing=False, chunk_size=16
            )
        sent: dict[str, str] = {}

        def send(task_id: str, queue: str) -> None:
            sent[task_id] = queue
            if task_id not in started.tasks:  # another test's, really sent
                client.app.send_task(
                    INGEST_TASK, args=[{"task_id": task_id}], queue=queue, task_id=task_id
                )

        reconcile(conn, send, after_s=0)
    assert [sent[t] for t in started.tasks] == ["ingest.lite-conse"]
    client.delete(name, all=True).result(timeout=TIMEOUT)

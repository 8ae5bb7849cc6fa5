"""The producer API. Enqueues by task name: importing it loads no model, torch or ORM."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, NoReturn

import psycopg
import redis
from celery import Celery
from celery import states as celery_states
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError as KombuOperationalError
from pydantic import BaseModel, ValidationError

from mmq.broker import (
    DELETE_TASK,
    INGEST_QUEUE,
    INGEST_TASK,
    RECOMMEND_TASK,
    REINDEX_FINISH_TASK,
    SEARCH_QUEUE,
    SEARCH_TASK,
    consumers,
    make_celery,
    model_queue,
    queue_consumers,
)
from mmq.config import Settings, get_settings
from mmq.embedded import Urls, resolve_urls
from mmq.errors import BadRequest, JobTimeout, MmqError, NotFound, Unavailable, describe
from mmq.jobs import events, inventory, overview, records, reindex_jobs, sent_jobs
from mmq.jobs.sent_jobs import SentJob
from mmq.schemas import (
    ALL_KINDS,
    DeleteRequest,
    DeleteResult,
    Example,
    ExampleMethod,
    FusionName,
    IngestItem,
    IngestRequest,
    IngestResult,
    ItemKind,
    JobState,
    JobStatus,
    RecommendMethod,
    RecommendRequest,
    RecommendResult,
    ReindexFinish,
    ReindexResult,
    SearchRequest,
    SearchResult,
    describe_errors,
)

# An example of a search by examples: an external id, an item id, or an Example (as a dict).
ExampleLike = Example | Mapping[str, Any] | str | int

# A search waited for this long without an answer is checked for loss (SearchJob.wait).
LOST_CHECK_S = 2.0

# Anything past "received" means a worker has taken the task.
_TAKEN = {celery_states.STARTED, celery_states.RETRY, *celery_states.READY_STATES}


class _JobTables:
    """The producer's connection to the job tables in PostgreSQL, opened on first use."""

    def __init__(self, database_url: str) -> None:
        self.url = records.psycopg_url(database_url)
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        with self._lock:
            try:
                if self._conn is None or self._conn.closed or self._conn.broken:
                    self._conn = psycopg.connect(self.url, autocommit=True)
                yield self._conn
            except psycopg.errors.UndefinedTable:
                raise Unavailable("the database has no mmq schema: run `mmq db upgrade`") from None
            except psycopg.OperationalError as exc:
                reason = str(exc).strip().splitlines()[0]
                raise Unavailable(f"cannot reach PostgreSQL: {reason}") from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


@dataclass
class IngestJob:
    """An ingest job: its state and every item's end live in PostgreSQL, readable from any
    process for as long as its rows exist."""

    id: str
    tables: _JobTables

    def status(self) -> JobStatus:
        """queued / running / done, with the first item error if any."""
        with self.tables.conn() as conn:
            return records.job_status(conn, self.id)

    def progress(self) -> tuple[int, int]:
        """(items that ended, all items)."""
        with self.tables.conn() as conn:
            return records.job_progress(conn, self.id)

    def result(self, timeout: float | None = None) -> IngestResult:
        """Wait for every item to end, stored or failed with its reason; a stored item
        says whether it `replaced` one with its key (docs/wire-format.md). Past `timeout`,
        JobTimeout (the job goes on)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.status().state != "done":
            if deadline is not None and time.monotonic() > deadline:
                raise JobTimeout(f"ingest {self.id} did not end in {timeout}s")
            time.sleep(0.1)
        with self.tables.conn() as conn:
            return records.job_result(conn, self.id)


@dataclass
class SearchJob:
    """A search: its result (or its error) comes back through the result backend.
    `recorded`: the Client recorded it there when it sent it (mmq/jobs/sent_jobs.py), so
    a record that is gone means it was lost."""

    id: str
    app: Celery
    recorded: bool = False

    def status(self) -> JobStatus:
        """queued / running / done / failed; a failed search has its error and error kind."""
        r = AsyncResult(self.id, app=self.app)
        with _redis_reached():
            celery_state = r.state
        state: JobState = (
            "failed" if celery_state in celery_states.PROPAGATE_STATES
            else "done" if celery_state in celery_states.READY_STATES
            else "running" if celery_state in _TAKEN
            else "queued"
        )  # fmt: skip
        error = _as_mmq_error(r.result) if state == "failed" else None
        return JobStatus(
            id=self.id,
            state=state,
            error=None if error is None else str(error),
            error_kind=None if error is None else error.kind,
            done_tasks=int(state in ("done", "failed")),
            total_tasks=1,
        )

    def result(self, timeout: float | None = None) -> SearchResult:
        """Wait for the hits. A failed search raises its error, of its kind (mmq.errors:
        NotFound for an unknown collection, Conflict for one bound to another model, ...).
        Past `timeout`, JobTimeout (the search may still run)."""
        return SearchResult.model_validate(self.wait(timeout))

    def wait(self, timeout: float | None = None, *, what: str = "search") -> Any:
        """The task's result as JSON (`result` reads it as a SearchResult); `what` names
        the job in a JobTimeout."""
        r = AsyncResult(self.id, app=self.app)
        deadline = None if timeout is None else time.monotonic() + timeout
        recorded: bool | None = self.recorded or None  # None: not known yet whether recorded
        try:
            with _redis_reached():
                while True:
                    left = LOST_CHECK_S if deadline is None else deadline - time.monotonic()
                    try:
                        return r.get(timeout=max(0.0, min(LOST_CHECK_S, left)))
                    except CeleryTimeout:
                        if left <= LOST_CHECK_S:
                            raise
                    recorded = self._check_not_lost(r, recorded, what)
        except CeleryTimeout:
            # Stop listening for it now: left pending, Celery unsubscribes at interpreter
            # exit, and retries for 20 s if the embedded servers are gone by then.
            r.backend.remove_pending_result(r)
            raise JobTimeout(f"{what} {self.id} did not end in {timeout}s") from None
        except Exception as exc:
            if r.state == celery_states.FAILURE:
                raise _as_mmq_error(exc) from None
            raise

    def _check_not_lost(self, r: AsyncResult, recorded: bool | None, what: str) -> bool:
        """Whether the job's record is there; Unavailable if it was and is gone with no
        result: the broker's data was lost (wiped, a failover to an empty replica), and
        the message with it, so waiting longer would only run into the timeout."""
        now = sent_jobs.recall(self.app.backend.client, self.id) is not None
        if recorded and not now and r.state == celery_states.PENDING:
            r.backend.remove_pending_result(r)  # as on a timeout: stop listening for it
            raise Unavailable(
                f"{what} {self.id} was lost with the broker's data (its record and its message "
                "are gone): send it again"
            )
        return now if recorded is None else recorded


@dataclass
class RecommendJob:
    """Recommendations, computed on the search queue: a search whose result is a
    RecommendResult."""

    id: str
    app: Celery
    recorded: bool = False

    def status(self) -> JobStatus:
        return SearchJob(self.id, self.app, self.recorded).status()

    def result(self, timeout: float | None = None) -> RecommendResult:
        """Wait for the hits; errors and JobTimeout as for a search."""
        return RecommendResult.model_validate(
            SearchJob(self.id, self.app, self.recorded).wait(timeout)
        )


@dataclass
class DeleteJob:
    """A delete, run by an ingest worker: its result comes back through the result backend,
    as a search's does."""

    id: str
    app: Celery
    recorded: bool = False

    def status(self) -> JobStatus:
        return SearchJob(self.id, self.app, self.recorded).status()

    def result(self, timeout: float | None = None) -> DeleteResult:
        """Wait for the count deleted and the ids missing. An unknown collection raises
        NotFound; past `timeout`, JobTimeout (the delete may still run)."""
        job = SearchJob(self.id, self.app, self.recorded)
        return DeleteResult.model_validate(job.wait(timeout, what="delete"))


@dataclass
class ReindexJob:
    """A reindex: its chunks' progress in PostgreSQL (as an ingest job's), its end (switched
    or not, and why) through the result backend, from the task that switches."""

    id: str
    tables: _JobTables
    app: Celery

    def status(self) -> JobStatus:
        """queued / running / done (switched, or waiting for a decision on the items that
        failed: see `result`) / failed."""
        status = SearchJob(self.id, self.app).status()
        done, total = self.progress()
        return status.model_copy(update={"done_tasks": done, "total_tasks": total})

    def progress(self) -> tuple[int, int]:
        """(items that ended, all items to re-embed)."""
        with self.tables.conn() as conn:
            return records.job_progress(conn, self.id)

    def result(self, timeout: float | None = None) -> ReindexResult:
        """Wait for the switch, or for the items that kept it from happening (`switched`
        False, `failed` with their reasons). Past `timeout`, JobTimeout (it goes on)."""
        job = SearchJob(self.id, self.app)
        return ReindexResult.model_validate(job.wait(timeout, what="reindex"))


@dataclass
class UnknownJob:
    """An id that is no job (`Client.job`): never sent, an ingest whose rows were pruned
    (`MMQ_JOB_RETENTION_DAYS`), or a search whose result expired (`MMQ_RESULT_EXPIRES_S`)."""

    id: str

    def status(self) -> JobStatus:
        """State "unknown", never "queued": nothing will ever run under this id."""
        return JobStatus(id=self.id, state="unknown", done_tasks=0, total_tasks=0)

    def result(self, timeout: float | None = None) -> NoReturn:
        """NotFound: there is nothing to wait for."""
        raise NotFound(f"no job {self.id}: never sent, or pruned, or its result expired")


# What comes back through the result backend, by the kind `Client._send_recorded` records.
_BACKEND_JOBS: dict[str, type[SearchJob] | type[RecommendJob] | type[DeleteJob]] = {
    "search": SearchJob,
    "recommend": RecommendJob,
    "delete": DeleteJob,
}

Job = IngestJob | SearchJob | RecommendJob | DeleteJob | ReindexJob | UnknownJob


@contextmanager
def _redis_reached(then: str = "") -> Iterator[None]:
    """Celery's, kombu's and redis-py's ways of saying the broker or the result backend
    cannot be reached, as one Unavailable (`then`: what became of the work meanwhile)."""
    try:
        yield
    except (KombuOperationalError, redis.RedisError) as exc:
        if "maxmemory" in str(exc):  # a Redis at its maxmemory, with noeviction as it must
            full = "the broker is out of memory (its maxmemory) and refused the message"
            raise Unavailable(full + (f"; {then}" if then else "")) from exc
        if not isinstance(exc, KombuOperationalError | redis.ConnectionError | redis.TimeoutError):
            raise
        raise Unavailable(_unreachable(exc, then)) from exc
    except RuntimeError as exc:  # Celery's result backend, once its reconnects ran out
        if "reconnect" not in str(exc):
            raise
        raise Unavailable(_unreachable("no answer after every reconnect", then)) from exc


def _unreachable(reason: object, then: str) -> str:
    reason = " ".join(str(reason).split())
    return f"cannot reach the broker or result backend: {reason}" + (f"; {then}" if then else "")


def _as_mmq_error(exc: object) -> MmqError:
    """A worker's error as the producer sees it: mmq's own errors come back as their kind
    (Celery rebuilds them from their module and name); anything else as an MmqError."""
    if isinstance(exc, MmqError):
        return exc
    return MmqError(describe(exc) if isinstance(exc, BaseException) else str(exc))


class Client:
    """Enqueue ingest and search jobs; poll their status and results.

    With no broker/database URL configured, it starts (or reuses) the embedded servers of
    `settings.state_dir`, like every other mmq process.
    """

    def __init__(self, settings: Settings | None = None, urls: Urls | None = None) -> None:
        self.settings = settings or get_settings()
        self.urls = urls or resolve_urls(self.settings)
        self.app = make_celery(self.urls, self.settings)
        self.tables = _JobTables(self.urls.database_url)
        self._broker: redis.Redis | None = None  # for queue depths

    def ingest(
        self,
        items: Iterable[IngestItem | Mapping[str, Any]],
        *,
        collection: str,
        fusion: FusionName | None = None,
        weights: Mapping[str, float] | None = None,
        chunk_size: int | None = None,
    ) -> IngestJob:
        """Enqueue items in chunk tasks of up to `chunk_size` (default: settings). Each
        video gets a task of its own: it is minutes of work, and idle workers take the
        next video meanwhile. An item that is not valid raises BadRequest: nothing is sent."""
        parsed = [_as_item(index, it) for index, it in enumerate(items)]
        chunks = _chunks(parsed, chunk_size or self.settings.ingest_chunk_size)
        if not chunks:
            raise BadRequest("nothing to ingest")
        try:
            requests = [
                IngestRequest(
                    collection=collection,
                    items=chunk,
                    fusion=fusion,
                    weights=dict(weights) if weights else None,
                )
                for chunk in chunks
            ]
        except ValidationError as exc:
            raise BadRequest(f"invalid ingest: {describe_errors(exc)}") from None
        self._wait_for_room(INGEST_QUEUE)
        tasks = [
            records.NewTask(
                id=str(uuid.uuid4()),
                request=request.model_dump(mode="json"),
                items=[(it.source, it.external_id) for it in request.items],
            )
            for request in requests
        ]
        job_id = str(uuid.uuid4())
        # The job is in PostgreSQL before any message: a message lost on its way (a broker
        # down now, or losing it later) is sent again by the reconciler.
        with self.tables.conn() as conn, conn.transaction():
            records.create_job(conn, job_id=job_id, collection=collection, tasks=tasks)
        recorded = f"ingest job {job_id} is recorded; workers send its tasks again once it is back"
        with _redis_reached(recorded):
            for task in tasks:
                # The job's state and results live in PostgreSQL (IngestJob reads them there):
                # a Celery result per message would be a Redis write per task nobody reads.
                self.app.send_task(
                    INGEST_TASK,
                    args=[{"task_id": task.id}],
                    queue=INGEST_QUEUE,
                    task_id=task.id,
                    ignore_result=True,
                )
        return IngestJob(job_id, self.tables)

    def search(
        self,
        *,
        collection: str,
        text: str | None = None,
        image: str | Path | bytes | None = None,
        vector: Sequence[float] | None = None,
        weights: Mapping[str, float] | None = None,
        fusion: FusionName | None = None,
        targets: Sequence[ItemKind] | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        segments: Literal["best", "all"] = "best",
        min_score: float | None = None,
        positives: Sequence[ExampleLike] | None = None,
        negatives: Sequence[ExampleLike] | None = None,
        method: ExampleMethod = "svm",
    ) -> SearchJob:
        """Enqueue a search. An image path is read here: the search worker may be elsewhere.

        Video hits carry their best segment's `start_s`/`end_s`; `segments="all"` also lists
        every segment of each video scoring at least `min_score` (which drops weaker hits).

        Or search by examples, instead of a query: more like the `positives`, unlike the
        `negatives`, ranked by `method` ("svm" or "centroid"; docs/examples.md). An example
        is an item of the collection by external id (a str) or item id (an int), or an
        `Example` (or its dict) with an image, a text, both, or a vector. The examples
        stored in the collection are not among the hits."""
        image_bytes = _read_image(image) if isinstance(image, str | Path) else image
        try:
            request = SearchRequest(
                collection=collection,
                text=text,
                image_bytes=image_bytes,
                vector=list(vector) if vector is not None else None,
                weights=dict(weights) if weights else None,
                fusion=fusion,
                targets=list(targets) if targets else list(ALL_KINDS),
                k=k,
                filter=dict(filter) if filter is not None else None,
                segments=segments,
                min_score=min_score,
                positives=_as_examples("positives", positives),
                negatives=_as_examples("negatives", negatives),
                method=method,
            )
        except ValidationError as exc:
            raise BadRequest(f"invalid search: {describe_errors(exc)}") from None
        job_id = self._send_recorded("search", collection, SEARCH_TASK, request, SEARCH_QUEUE)
        return SearchJob(job_id, self.app, recorded=True)

    def record(
        self,
        user: str,
        collection: str,
        external_id: str,
        event: str,
        weight: float | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record that `user` did `event` (view, like, cart, purchase, or any name with a
        `weight`) with the item `external_id` of `collection`, at `at` (default: now; a
        naive time is UTC). Written to PostgreSQL here: no model, no queue. The weight
        defaults to the event's (mmq/jobs/events.py DEFAULT_WEIGHTS); a negative one is a
        dislike. The item need not be ingested yet."""
        self.record_many(
            collection,
            [dict(user=user, external_id=external_id, event=event, weight=weight, at=at)],
        )

    def record_many(self, collection: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Record events in bulk (one COPY, one transaction): each row has `user`,
        `external_id`, `event`, and optionally `weight` and `at`. A bad row raises
        BadRequest naming it, and nothing is recorded. Returns how many were."""

        def checked() -> Iterator[events.NewEvent]:
            for index, row in enumerate(rows):
                try:
                    yield events.new_event(**row)
                except BadRequest as exc:
                    raise BadRequest(f"event {index}: {exc}") from None
                except TypeError:
                    raise BadRequest(
                        f"event {index}: needs user, external_id and event (weight, at optional)"
                    ) from None

        with self.tables.conn() as conn, conn.transaction():
            return events.record(conn, collection=collection, events=checked())

    def recommend(
        self,
        user: str,
        collection: str,
        k: int = 10,
        *,
        targets: Sequence[ItemKind] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude_seen: bool = True,
        method: RecommendMethod = "auto",
    ) -> RecommendJob:
        """Enqueue recommendations for `user` from the events recorded in `collection`
        (docs/examples.md, "Recommendations"). Each hit says `because` of which of the
        user's items; a user with no history gets the most interacted-with items, and
        the result says `cold_start`."""
        try:
            request = RecommendRequest(
                collection=collection,
                user=user,
                k=k,
                targets=list(targets) if targets else list(ALL_KINDS),
                filter=dict(filter) if filter is not None else None,
                exclude_seen=exclude_seen,
                method=method,
            )
        except ValidationError as exc:
            raise BadRequest(f"invalid recommend: {describe_errors(exc)}") from None
        job_id = self._send_recorded("recommend", collection, RECOMMEND_TASK, request, SEARCH_QUEUE)
        return RecommendJob(job_id, self.app, recorded=True)

    def _wait_for_room(self, queue: str) -> None:
        """Back-pressure: wait while `queue` holds over MMQ_MAX_QUEUED_TASKS messages, up
        to MMQ_QUEUE_FULL_WAIT_S, then refuse: nothing is recorded or sent."""
        limit = self.settings.max_queued_tasks
        if not limit:
            return
        deadline = time.monotonic() + self.settings.queue_full_wait_s
        while (depth := self._queue_depth(queue)) > limit:
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"the {queue!r} queue holds {depth} tasks, over MMQ_MAX_QUEUED_TASKS="
                    f"{limit}, and has for {self.settings.queue_full_wait_s:.0f}s: nothing "
                    "was sent; try again later, or add workers"
                )
            time.sleep(0.5)

    def _queue_depth(self, queue: str) -> int:
        """Messages waiting in `queue`; 0 when the broker cannot be reached: then there is
        no flood to hold back, and a job is recorded and sent once the broker is back."""
        # A client of its own, kept: one round trip on a pooled connection per call.
        if self._broker is None:
            self._broker = redis.Redis.from_url(self.urls.broker_url)
        try:
            return int(self._broker.llen(queue))
        except (redis.ConnectionError, redis.TimeoutError):
            return 0

    def _send_recorded(
        self, kind: str, collection: str, task: str, request: BaseModel, queue: str
    ) -> str:
        """Send a task whose result comes back through the result backend, recorded there
        first (mmq/jobs/sent_jobs.py) for as long as its result lives, so that `job(id)`
        tells it from an unknown id. Returns the job's id."""
        job_id = str(uuid.uuid4())
        with _redis_reached():
            sent_jobs.remember(
                self.app.backend.client,
                SentJob(job_id, kind, collection),
                ttl_s=self.settings.result_expires_s,
            )
            self.app.send_task(
                task, args=[request.model_dump(mode="json")], queue=queue, task_id=job_id
            )
        return job_id

    def delete(
        self,
        collection: str,
        *,
        external_ids: Sequence[str] | None = None,
        item_ids: Sequence[int] | None = None,
        filter: Mapping[str, Any] | None = None,
        all: bool = False,
    ) -> DeleteJob:
        """Enqueue a delete of the collection's items with these external ids, or these
        item ids, or whose metadata contains `filter`, or (`all=True`) of the collection
        itself, items and all: exactly one of them. A video's segments go with it, and so
        do media-store files no item references any more. A search that starts once the
        job is done finds none of it. Ids the collection does not hold come back in the
        result's `missing`; an unknown collection fails the job with NotFound."""
        for name, ids in (("external_ids", external_ids), ("item_ids", item_ids)):
            if isinstance(ids, str | bytes | int):  # one id, not a list of characters
                raise BadRequest(f"{name} is a list of ids, e.g. [{ids!r}]")
        try:
            request = DeleteRequest(
                collection=collection,
                external_ids=list(external_ids or ()),
                item_ids=list(item_ids or ()),
                filter=dict(filter) if filter is not None else None,
                all=all,
            )
        except ValidationError as exc:
            raise BadRequest(f"invalid delete: {describe_errors(exc)}") from None
        job_id = self._send_recorded("delete", collection, DELETE_TASK, request, INGEST_QUEUE)
        return DeleteJob(job_id, self.app, recorded=True)

    def reindex(
        self,
        collection: str,
        *,
        model: str,
        allow_missing: bool = False,
        chunk_size: int | None = None,
    ) -> ReindexJob:
        """Re-embed every item of the collection with `model`, in the background, on the
        workers serving it (`MMQ_MODEL=model`, consuming `ingest.<model>`). Searches use
        the old vectors until every item has its new one; then the collection switches
        in one transaction, and its searches go to `model`'s workers. Items whose
        original is gone hold the switch (the result lists them) unless `allow_missing`,
        which deletes them at the switch. Called again, it goes on where it stopped."""
        size = chunk_size or self.settings.ingest_chunk_size
        self._wait_for_room(model_queue(INGEST_QUEUE, model))
        with self.tables.conn() as conn, conn.transaction():
            started = reindex_jobs.start(
                conn,
                collection=collection,
                model=model,
                allow_missing=allow_missing,
                chunk_size=size,
            )
        queue = model_queue(INGEST_QUEUE, model)
        finish = ReindexFinish(collection=collection, model=model, job_id=started.job_id)
        recorded = f"reindex job {started.job_id} is recorded; run `mmq reindex` again to send it"
        with _redis_reached(recorded):
            for task_id in started.tasks:
                self.app.send_task(
                    INGEST_TASK,
                    args=[{"task_id": task_id}],
                    queue=queue,
                    task_id=task_id,
                    ignore_result=True,
                )
            self.app.send_task(
                REINDEX_FINISH_TASK,
                args=[finish.model_dump(mode="json")],
                queue=queue,
                task_id=started.job_id,
            )
        return ReindexJob(started.job_id, self.tables, self.app)

    def collections(self) -> list[inventory.CollectionInfo]:
        """Every collection: model, fusion, items per kind, storage size, created and last
        updated (mmq/jobs/inventory.py). Read from PostgreSQL here: no worker needed."""
        with self.tables.conn() as conn:
            return inventory.collections(conn)

    def get(
        self, collection: str, *, external_id: str | None = None, item_id: int | None = None
    ) -> inventory.ItemInfo:
        """One item of the collection, by its external id or its item id: its kind, uri,
        text, metadata, times and, for a video, its segments. NotFound when absent."""
        with self.tables.conn() as conn:
            return inventory.item(
                conn, collection=collection, external_id=external_id, item_id=item_id
            )

    def sent_job(self, job_id: str) -> SentJob | None:
        """What a Client sent under `job_id` through the result backend (its kind and
        collection), while its result lives; None for anything else."""
        with _redis_reached():
            return sent_jobs.recall(self.app.backend.client, job_id)

    def job(self, job_id: str) -> Job:
        """A handle on an existing job by id (from `IngestJob.id`, `SearchJob.id`, ...).
        An id that is no job gives an UnknownJob, whose status is "unknown": never sent,
        an ingest pruned after `MMQ_JOB_RETENTION_DAYS`, a search whose result expired."""
        with self.tables.conn() as conn:
            if records.job_collection(conn, job_id) is not None:
                if reindex_jobs.is_reindex(conn, job_id):
                    return ReindexJob(job_id, self.tables, self.app)
                return IngestJob(job_id, self.tables)
        found = self.sent_job(job_id)
        if found is not None:
            return _BACKEND_JOBS.get(found.kind, SearchJob)(job_id, self.app, recorded=True)
        # A search another producer sent straight on the wire (docs/wire-format.md) has no
        # record; Celery knows it once a worker took it (PENDING is its word for "never
        # heard of it" as well as for "queued").
        with _redis_reached():
            taken = AsyncResult(job_id, app=self.app).state != celery_states.PENDING
        return SearchJob(job_id, self.app) if taken else UnknownJob(job_id)

    def overview(self, *, timeout: float = 1.0) -> overview.Overview:
        """Each queue's depth and the workers consuming it (those that answer within
        `timeout`), ingest jobs by state, and how long the oldest unfinished one has
        waited: what an operator looks at first."""
        with _redis_reached():
            found = queue_consumers(self.app, timeout=timeout)
            names = sorted({INGEST_QUEUE, SEARCH_QUEUE, *found})
            queues = {q: overview.QueueState(self._queue_depth(q), found.get(q, [])) for q in names}
        with self.tables.conn() as conn:
            jobs = overview.jobs_by_state(conn)
            oldest = overview.oldest_unfinished_s(conn)
        return overview.Overview(queues, jobs, oldest)

    def require_schema(self) -> None:
        """Unavailable, naming `mmq db upgrade`, when the database has no mmq schema. (Ingest
        and status find out on their own; a search never reads the database here, and no
        worker starts on such a database, so it would only wait.)"""
        with self.tables.conn() as conn:
            conn.execute("SELECT FROM ingest_jobs LIMIT 0")

    def workers(self, queue: str, *, timeout: float = 1.0) -> list[str]:
        """The workers consuming `queue` ("ingest" or "search") now. None means that the
        jobs sent there wait until one starts."""
        with _redis_reached():
            return consumers(self.app, queue, timeout=timeout)

    def require_worker(self, queue: str) -> None:
        """Unavailable, with the fix in its message, when no worker consumes `queue`."""
        if not self.workers(queue):
            raise Unavailable(
                f"no worker is consuming the {queue!r} queue: start one with `mmq worker`"
            )

    def close(self) -> None:
        if self._broker is not None:
            self._broker.close()
        self.tables.close()
        self.app.close()


def _as_examples(name: str, examples: Sequence[ExampleLike] | None) -> list[Example]:
    if isinstance(examples, str | bytes):  # one id, not a list of one-character ids
        raise BadRequest(f"{name} is a list of examples, e.g. [{examples!r}]")
    return [_as_example(e) for e in examples or ()]


def _as_example(example: ExampleLike) -> Example:
    if isinstance(example, Example):
        return example
    if isinstance(example, str):
        return Example(external_id=example)
    if isinstance(example, int) and not isinstance(example, bool):
        return Example(item_id=example)
    if isinstance(example, Mapping):
        return Example.model_validate(dict(example))
    raise BadRequest(f"an example is an external id, an item id or an Example, not {example!r}")


def _read_image(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise NotFound(f"no such image file: {path}") from None
    except OSError as exc:
        raise BadRequest(f"cannot read the query image {path}: {exc.strerror}") from None


def _as_item(index: int, item: IngestItem | Mapping[str, Any]) -> IngestItem:
    if isinstance(item, IngestItem):
        parsed = item
    else:
        try:
            parsed = IngestItem.model_validate(dict(item))
        except ValidationError as exc:
            raise BadRequest(f"item {index}: {describe_errors(exc)}") from None
    # Workers read files: give them absolute paths.
    for field_name in ("image_path", "video_path"):
        path = getattr(parsed, field_name)
        if path is not None:
            parsed = parsed.model_copy(update={field_name: str(Path(path).resolve())})
    return parsed


def _chunks(items: list[IngestItem], size: int) -> list[list[IngestItem]]:
    """Consecutive items in chunks of up to `size`; a video always alone in its chunk."""
    chunks: list[list[IngestItem]] = []
    current: list[IngestItem] = []
    for item in items:
        if item.is_video or len(current) >= size:
            if current:
                chunks.append(current)
            current = []
        if item.is_video:
            chunks.append([item])
        else:
            current.append(item)
    if current:
        chunks.append(current)
    return chunks

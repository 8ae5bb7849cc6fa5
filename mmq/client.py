"""The producer API. Enqueues by task name: importing it loads no model, torch or ORM."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from celery import Celery
from celery import states as celery_states
from celery.result import AsyncResult, GroupResult

from mmq.broker import INGEST_QUEUE, INGEST_TASK, SEARCH_QUEUE, SEARCH_TASK, make_celery
from mmq.config import Settings, get_settings
from mmq.embedded import Urls, resolve_urls
from mmq.schemas import (
    ALL_KINDS,
    FusionName,
    IngestItem,
    IngestRequest,
    IngestResult,
    ItemKind,
    ItemResult,
    JobState,
    JobStatus,
    SearchRequest,
    SearchResult,
)


class JobFailed(RuntimeError):
    """The job ended in failure; the message is the worker's error."""


# Anything past "received" means a worker has taken the task.
_TAKEN = {celery_states.STARTED, celery_states.RETRY, *celery_states.READY_STATES}


@dataclass
class Job:
    """A handle on enqueued work: one search task, or the chunk tasks of one ingest."""

    app: Celery
    id: str
    kind: str  # "ingest" or "search"
    task_ids: list[str]
    # Per chunk: (source, external_id) of its items, known to the producer that enqueued.
    chunks: list[list[tuple[str, str | None]]] = field(default_factory=list)
    collection: str = ""

    def _results(self) -> list[AsyncResult]:
        return [AsyncResult(tid, app=self.app) for tid in self.task_ids]

    def status(self) -> JobStatus:
        """queued / running / done / failed, with the first error if any."""
        results = self._results()
        states = [r.state for r in results]
        done = sum(s in celery_states.READY_STATES for s in states)
        error = next(
            (
                str(r.result)
                for r, s in zip(results, states, strict=True)
                if s in celery_states.PROPAGATE_STATES
            ),
            None,
        )
        state: JobState
        if done == len(states):
            state = "failed" if error else "done"
        elif any(s in _TAKEN for s in states):
            state = "running"
        else:
            state = "queued"
        return JobStatus(
            id=self.id, state=state, error=error, done_tasks=done, total_tasks=len(states)
        )

    def progress(self) -> tuple[int, int]:
        """(items in finished chunks, all items) of an ingest this producer enqueued."""
        sizes = [len(chunk) for chunk in self.chunks]
        done = sum(n for n, r in zip(sizes, self._results(), strict=False) if r.ready())
        return done, sum(sizes)

    def result(self, timeout: float | None = None) -> IngestResult | SearchResult:
        """Wait for the job. Search failures raise JobFailed; a failed ingest chunk marks its
        items failed with the chunk's error, so one bad chunk never hides the others."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.kind == "search":
            (r,) = self._results()
            try:
                return SearchResult.model_validate(r.get(timeout=_left(deadline)))
            except Exception as exc:
                if r.state == "FAILURE":
                    raise JobFailed(str(exc)) from None
                raise
        items: list[ItemResult] = []
        collection = self.collection
        offset = 0
        for i, r in enumerate(self._results()):
            payload = r.get(timeout=_left(deadline), propagate=False)
            chunk = self.chunks[i] if i < len(self.chunks) else []
            if r.state == "SUCCESS":
                part = IngestResult.model_validate(payload)
                collection = part.collection
                items.extend(
                    it.model_copy(update={"index": it.index + offset}) for it in part.items
                )
            else:
                items.extend(
                    ItemResult(
                        index=offset + j,
                        source=src,
                        external_id=ext,
                        status="failed",
                        error=str(payload),
                    )
                    for j, (src, ext) in enumerate(chunk)
                )
            offset = len(items)
        return IngestResult(collection=collection, items=items)


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.01, deadline - time.monotonic())


class Client:
    """Enqueue ingest and search jobs; poll their status and results.

    With no broker/database URL configured, it starts (or reuses) the embedded servers of
    `settings.state_dir`, like every other mmq process.
    """

    def __init__(self, settings: Settings | None = None, urls: Urls | None = None) -> None:
        self.settings = settings or get_settings()
        self.urls = urls or resolve_urls(self.settings)
        self.app = make_celery(self.urls, result_expires_s=self.settings.result_expires_s)

    def ingest(
        self,
        items: Iterable[IngestItem | Mapping[str, Any]],
        *,
        collection: str,
        fusion: FusionName | None = None,
        weights: Mapping[str, float] | None = None,
        chunk_size: int | None = None,
    ) -> Job:
        """Enqueue items in chunk tasks of up to `chunk_size` (default: settings). Each
        video gets a task of its own: it is minutes of work, and idle workers take the
        next video meanwhile."""
        parsed = [_as_item(it) for it in items]
        chunks = _chunks(parsed, chunk_size or self.settings.ingest_chunk_size)
        if not chunks:
            raise ValueError("nothing to ingest")
        task_ids = []
        for chunk in chunks:
            request = IngestRequest(
                collection=collection,
                items=chunk,
                fusion=fusion,
                weights=dict(weights) if weights else None,
            )
            task_ids.append(self._send(INGEST_TASK, INGEST_QUEUE, request.model_dump(mode="json")))
        job_id = str(uuid.uuid4())
        group = GroupResult(job_id, [AsyncResult(t, app=self.app) for t in task_ids], app=self.app)
        group.save()  # so `mmq status JOB_ID` can find the chunks from another process
        return Job(
            self.app,
            job_id,
            "ingest",
            task_ids,
            [[(it.source, it.external_id) for it in chunk] for chunk in chunks],
            collection,
        )

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
    ) -> Job:
        """Enqueue a search. An image path is read here: the search worker may be elsewhere.

        Video hits carry their best segment's `start_s`/`end_s`; `segments="all"` also lists
        every segment of each video scoring at least `min_score` (which drops weaker hits)."""
        image_bytes = Path(image).read_bytes() if isinstance(image, str | Path) else image
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
        )
        task_id = self._send(SEARCH_TASK, SEARCH_QUEUE, request.model_dump(mode="json"))
        return Job(self.app, task_id, "search", [task_id])

    def job(self, job_id: str) -> Job:
        """A handle on an existing job by id (from `Job.id`)."""
        group = GroupResult.restore(job_id, app=self.app)
        if group is not None:
            return Job(self.app, job_id, "ingest", [r.id for r in group.results])
        return Job(self.app, job_id, "search", [job_id])

    def _send(self, name: str, queue: str, payload: dict[str, Any]) -> str:
        return str(self.app.send_task(name, args=[payload], queue=queue).id)

    def close(self) -> None:
        self.app.close()


def _as_item(item: IngestItem | Mapping[str, Any]) -> IngestItem:
    if isinstance(item, IngestItem):
        parsed = item
    else:
        parsed = IngestItem.model_validate(dict(item))
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

"""Per-process worker state: the model, the database engine and the ingest task runner,
created after fork."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings, get_settings
from mmq.embedded import resolve_urls
from mmq.encoders import Encoder, get_encoder
from mmq.encoders.base import cpu_count, default_batch_size, resolve_device
from mmq.encoders.batching import BatchingEncoder
from mmq.services.ingest_tasks import RUN_ALONE, IngestTasks, TaskOutcome
from mmq.store.db import DATABASE_DOWN, make_engine, make_sessionmaker
from mmq.store.migrate import require_schema
from workers.coalesce import Coalescer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    engine: Engine
    sessions: sessionmaker[Session]
    ingest_tasks: IngestTasks
    # Fresh ingest tasks arriving together run as one (threads pool; None: each alone).
    together: Coalescer[str, TaskOutcome] | None = None
    schema_checked: bool = False

    def check_schema(self) -> None:
        # Once per process: migrations are a one-shot step, never run by a worker.
        if not self.schema_checked:
            require_schema(self.engine)
            self.schema_checked = True

    def run_ingest(self, task_id: str) -> TaskOutcome:
        """Run the task together with the fresh tasks other threads hold now, or alone."""
        outcome = self.together.submit(task_id) if self.together else RUN_ALONE
        return self.ingest_tasks.run_alone(task_id) if outcome is RUN_ALONE else outcome


_runtime: Runtime | None = None
_lock = threading.Lock()


@dataclass
class Database:
    """The database alone, for tasks that encode nothing (delete)."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]


_database: Database | None = None
_database_lock = threading.Lock()


def get_database() -> Database:
    """The runtime's engine once it is loaded, else one of the process's own: a task that
    needs no model never loads one, nor waits for one to load."""
    global _database
    loaded = _runtime
    if loaded is not None:
        loaded.check_schema()
        return Database(loaded.settings, loaded.engine, loaded.sessions)
    with _database_lock:
        if _database is None:
            settings = get_settings()
            engine = make_engine(resolve_urls(settings).database_url, pool_size=2)
            require_schema(engine)
            _database = Database(settings, engine, make_sessionmaker(engine))
        return _database


def get_runtime() -> Runtime:
    """Load once per process: from `worker_process_init`, or lazily on the first task."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = _load(get_settings())
        return _runtime


def _load(settings: Settings) -> Runtime:
    import torch

    device = resolve_device(settings.device)
    encoder: Encoder = get_encoder(settings.model, device, cache_dir=settings.state_dir / "cache")
    batch_size = settings.encode_batch_size or default_batch_size(device)
    threads_pool = settings.worker_pool == "threads"
    if threads_pool:
        # One single-threaded stream per core on a CPU, one stream on a GPU; torch's threads
        # are shared by the process, so each stream gets its share.
        streams = settings.encode_streams or (1 if device == "cuda" else cpu_count())
        torch.set_num_threads(max(1, cpu_count() // streams))
        encoder = BatchingEncoder(
            encoder,
            max_batch=batch_size,
            max_wait_s=settings.encode_wait_ms / 1000,
            streams=streams,
            text_batch=settings.encode_text_batch_size,
            text_wait_s=settings.encode_text_wait_ms / 1000,
        )
    encoder.load()
    log.info(
        "loaded %s (version %s) on %s, %d torch threads, batches of up to %d",
        encoder.name,
        encoder.version,
        encoder.device,
        torch.get_num_threads(),
        batch_size,
    )
    settings = settings.model_copy(update={"encode_batch_size": batch_size})
    # Each task thread holds two connections at once: its session's and its lock's.
    engine = make_engine(resolve_urls(settings).database_url, pool_size=2 * settings.worker_threads)
    sessions = make_sessionmaker(engine)
    ingest_tasks = IngestTasks(
        encoder, engine, sessions, settings, interrupts=(SoftTimeLimitExceeded, *DATABASE_DOWN)
    )
    together = None
    if threads_pool and settings.ingest_coalesce > 1:
        together = Coalescer(
            ingest_tasks.run_together,
            max_keys=settings.ingest_coalesce,
            max_wait_s=settings.ingest_coalesce_ms / 1000,
            fallback=RUN_ALONE,
        )
    return Runtime(settings, encoder, engine, sessions, ingest_tasks, together)

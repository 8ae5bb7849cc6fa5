"""Per-process worker state: the model and the database engine, created after fork."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import partial

from celery.exceptions import SoftTimeLimitExceeded
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings, get_settings
from mmq.embedded import resolve_urls
from mmq.encoders import Encoder, get_encoder
from mmq.encoders.base import cpu_count, default_batch_size, resolve_device
from mmq.encoders.batching import BatchingEncoder
from mmq.services.ingest_together import Outcome, run_ingest_tasks_together
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.migrate import require_schema
from workers.coalesce import Coalescer

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    engine: Engine
    sessions: sessionmaker[Session]
    # Fresh ingest tasks arriving together run as one (threads pool; None: each alone).
    together: Coalescer[str, Outcome] | None = None
    schema_checked: bool = False

    def check_schema(self) -> None:
        # Once per process: migrations are a one-shot step, never run by a worker.
        if not self.schema_checked:
            require_schema(self.engine)
            self.schema_checked = True


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """Load once per process: from `worker_process_init`, or lazily on the first task."""
    global _runtime
    with _lock:
        if _runtime is None:
            import torch

            settings = for_device(get_settings())
            urls = resolve_urls(settings)
            encoder: Encoder = get_encoder(
                settings.model, settings.device, cache_dir=settings.state_dir / "cache"
            )
            if settings.worker_pool == "threads":
                streams = settings.encode_streams or 1
                # torch's threads are shared by the process: each stream gets its share.
                torch.set_num_threads(max(1, cpu_count() // streams))
                encoder = BatchingEncoder(
                    encoder,
                    max_batch=settings.encode_batch_size or 1,
                    max_wait_s=settings.encode_wait_ms / 1000,
                    streams=streams,
                )
            encoder.load()
            log.info(
                "loaded %s (version %s) on %s, %d torch threads, %d encode streams",
                encoder.name,
                encoder.version,
                encoder.device,
                torch.get_num_threads(),
                getattr(encoder, "streams", 1),
            )
            # Each task thread holds two connections at once: its session's and its lock's.
            engine = make_engine(urls.database_url, pool_size=2 * settings.worker_threads)
            sessions = make_sessionmaker(engine)
            _runtime = Runtime(settings, encoder, engine, sessions)
            if settings.worker_pool == "threads" and settings.ingest_coalesce > 1:
                run = partial(
                    run_ingest_tasks_together,
                    encoder=encoder,
                    engine=engine,
                    sessions=sessions,
                    settings=settings,
                    interrupts=(SoftTimeLimitExceeded,),
                )
                _runtime.together = Coalescer(
                    run,
                    max_keys=settings.ingest_coalesce,
                    max_wait_s=settings.ingest_coalesce_ms / 1000,
                    fallback="alone",
                )
        return _runtime


def for_device(settings: Settings) -> Settings:
    """The settings with the encode sizes left unset filled in for the model's device: one
    single-threaded stream per core on a CPU, one stream on a GPU."""
    device = resolve_device(settings.device)
    return settings.model_copy(
        update={
            "encode_streams": settings.encode_streams or (1 if device == "cuda" else cpu_count()),
            "encode_batch_size": settings.encode_batch_size or default_batch_size(device),
        }
    )

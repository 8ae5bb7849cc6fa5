"""Per-process worker state: the model and the database engine, created after fork."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings, get_settings
from mmq.embedded import resolve_urls
from mmq.encoders import Encoder, get_encoder
from mmq.encoders.base import cpu_count, resolve_device
from mmq.encoders.batching import BatchingEncoder
from mmq.store.db import make_engine, make_sessionmaker
from mmq.store.migrate import require_schema

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    engine: Engine
    sessions: sessionmaker[Session]
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

            settings = get_settings()
            urls = resolve_urls(settings)
            encoder: Encoder = get_encoder(
                settings.model, settings.device, cache_dir=settings.state_dir / "cache"
            )
            if settings.worker_pool == "threads":
                streams = encode_streams(settings)
                # torch's threads are shared by the process: each stream gets its share.
                torch.set_num_threads(max(1, cpu_count() // streams))
                encoder = BatchingEncoder(
                    encoder,
                    max_batch=settings.encode_batch_size,
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
            _runtime = Runtime(settings, encoder, engine, make_sessionmaker(engine))
        return _runtime


def encode_streams(settings: Settings) -> int:
    """MMQ_ENCODE_STREAMS, or: one per CPU core on a CPU, one on a GPU."""
    if settings.encode_streams:
        return settings.encode_streams
    return 1 if resolve_device(settings.device) == "cuda" else cpu_count()

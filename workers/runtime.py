"""Per-process worker state: the model and the database engine, created after fork."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from mmq.config import Settings, get_settings
from mmq.embedded import resolve_urls
from mmq.encoders import Encoder, get_encoder
from mmq.store.db import make_engine, make_sessionmaker

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    encoder: Encoder
    sessions: sessionmaker[Session]


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    """Load once per process: from `worker_process_init`, or lazily on the first task."""
    global _runtime
    with _lock:
        if _runtime is None:
            settings = get_settings()
            urls = resolve_urls(settings)
            encoder = get_encoder(
                settings.model, settings.device, cache_dir=settings.state_dir / "cache"
            ).load()
            log.info("loaded %s (version %s) on %s", encoder.name, encoder.version, encoder.device)
            sessions = make_sessionmaker(make_engine(urls.database_url))
            _runtime = Runtime(settings, encoder, sessions)
        return _runtime

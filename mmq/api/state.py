"""What every request of one API process shares, made once at start-up (FastAPI's
lifespan): the Client, a database session factory, a Redis connection to the result
backend, the media store, the URL signer and the metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis as redis_py
from fastapi import Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mmq.api.metrics import Metrics
from mmq.api.tokens import Signer, api_secret
from mmq.client import Client
from mmq.config import Settings
from mmq.embedded import Urls
from mmq.media.store import MediaStore
from mmq.store.db import make_engine, make_sessionmaker


@dataclass
class ApiState:
    settings: Settings
    client: Client
    engine: Engine
    sessions: sessionmaker[Session]
    redis: redis_py.Redis  # the result backend's: rate counts
    broker: redis_py.Redis  # the broker's: queue depths
    media: MediaStore
    signer: Signer
    metrics: Metrics

    @classmethod
    def open(cls, settings: Settings, urls: Urls | None = None) -> ApiState:
        client = Client(settings, urls)
        # One connection per request thread at most: FastAPI runs sync routes in a pool of
        # 40 threads, most of them waiting on a search, not on the database.
        engine = make_engine(client.urls.database_url, pool_size=8)
        return cls(
            settings=settings,
            client=client,
            engine=engine,
            sessions=make_sessionmaker(engine),
            redis=redis_py.Redis.from_url(client.urls.result_backend),
            broker=redis_py.Redis.from_url(client.urls.broker_url),
            media=MediaStore(settings.resolved_media_dir),
            signer=Signer(api_secret(settings), settings.api_url_ttl_s),
            metrics=Metrics(),
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessions() as session:
            yield session

    def close(self) -> None:
        self.client.close()
        self.engine.dispose()
        self.redis.close()
        self.broker.close()


def state_of(request: Request) -> ApiState:
    state: ApiState = request.app.state.mmq
    return state

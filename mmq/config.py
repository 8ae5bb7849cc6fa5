"""One `Settings` for every mmq process, read from `MMQ_*` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from mmq.schemas import FusionName


class Settings(BaseSettings):
    """Everything configurable. Unset broker/database URLs mean: use embedded servers."""

    model_config = SettingsConfigDict(env_prefix="MMQ_", extra="ignore")

    # Connections. None -> embedded Valkey / PostgreSQL under `state_dir`.
    broker_url: str | None = None
    result_backend: str | None = None
    database_url: str | None = None

    # The model this process serves: "lite", "lite-conse", "lite+head:<dir>" or
    # "clip:<hf-name-or-path>" (mmq/encoders/__init__.py).
    model: str = "lite"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # Embedded servers' data, caches and logs: one per user (not per working directory), so
    # every mmq process of that user finds the same servers wherever it runs.
    state_dir: Path = Field(default_factory=lambda: default_state_dir())

    # Input limits: anything larger is refused with a clear error on its item.
    max_image_bytes: int = Field(default=50 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=64_000_000, gt=0)
    max_text_chars: int = Field(default=20_000, gt=0)
    max_metadata_bytes: int = Field(default=64 * 1024, gt=0)

    # Videos: each limit refuses a video with a clear error on its item.
    max_video_bytes: int = Field(default=1024 * 1024 * 1024, gt=0)
    max_video_duration_s: float = Field(default=2 * 3600.0, gt=0)
    max_video_decoded_frames: int = Field(default=500_000, gt=0)
    max_video_pixels: int = Field(default=7680 * 4320, gt=0)  # 8K UHD
    # Sampled frames are downscaled (never up) to this short side before encoding.
    video_frame_short_side: int = Field(default=256, ge=32, le=4096)
    video_sample_fps: float = Field(default=1.0, gt=0, le=30)
    # Cosine distance between consecutive sampled frames that starts a new segment; unset,
    # the model's own measured value (Encoder.cut_distance).
    video_cut_distance: float | None = Field(default=None, gt=0, lt=2)
    video_min_segment_s: float = Field(default=2.0, ge=0)
    video_max_segment_s: float = Field(default=30.0, gt=0)

    # Work shaping.
    ingest_chunk_size: int = Field(default=16, gt=0, le=1024)
    # Back-pressure: `Client.ingest` (and reindex) waits up to `queue_full_wait_s` while the
    # ingest queue holds over `max_queued_tasks` messages, then refuses (Unavailable): a
    # producer faster than the workers does not fill the broker's memory. 0: no limit.
    max_queued_tasks: int = Field(default=100_000, ge=0)
    queue_full_wait_s: float = Field(default=30.0, ge=0)
    # Images per model forward pass, and how long the model thread waits for more (threads
    # pool). Unset: 2 on a CPU, 64 on a GPU (default_batch_size).
    encode_batch_size: int | None = Field(default=None, gt=0)
    encode_wait_ms: float = Field(default=5.0, ge=0, le=1000)
    # The same for texts (search queries, captions). A pass of texts waits for the queries
    # other tasks are about to encode, up to `encode_text_wait_ms`; a lone query never waits.
    encode_text_batch_size: int = Field(default=16, gt=0)
    encode_text_wait_ms: float = Field(default=10.0, ge=0, le=1000)
    # Forward passes run side by side in a threads-pool worker, each on cpus/streams torch
    # threads. Unset: one single-threaded pass per CPU core, or one pass on a GPU.
    encode_streams: int | None = Field(default=None, gt=0, le=64)
    # "threads": one process and one model; tasks run in `worker_threads` threads whose
    # encodes are merged into model batches (mmq/encoders/batching.py). "prefork": one
    # model per process, each running one task at a time, no merging.
    worker_pool: Literal["threads", "prefork"] = "threads"
    worker_threads: int = Field(default=8, gt=0, le=512)
    # Threads-pool workers run up to this many fresh ingest tasks that arrive together as
    # one, sharing their bookkeeping (mmq/services/ingest_tasks.py; 1: each alone), and
    # wait up to `ingest_coalesce_ms` for company.
    ingest_coalesce: int = Field(default=4, gt=0, le=512)
    ingest_coalesce_ms: float = Field(default=20.0, ge=0, le=1000)
    default_fusion: FusionName = "sum"

    # Delivery (docs/reliability.md). Every task gets these time limits: the soft one
    # raises in the task (its pending items are tried again one at a time), the hard one
    # kills it. Redis hands an unacknowledged message to another worker after the
    # visibility timeout, so that must exceed the hard limit, or a slow task would run twice
    # at once. Prefork enforces the time limits with signals, the threads pool with a
    # watchdog (workers/time_limits.py).
    task_soft_time_limit_s: float = Field(default=1500.0, gt=0)
    task_time_limit_s: float = Field(default=1800.0, gt=0)
    visibility_timeout_s: float = Field(default=3600.0, gt=0)
    # An item whose attempts did not finish this many times is quarantined (failed with
    # its last error) instead of killing worker after worker.
    max_item_attempts: int = Field(default=3, ge=1, le=100)
    # Workers send again unfinished ingest tasks sent over `reconcile_after_s` ago that no
    # live worker holds (a message the broker lost); they check every `reconcile_every_s`.
    reconcile_after_s: float = Field(default=600.0, gt=0)
    reconcile_every_s: float = Field(default=60.0, gt=0)
    # Ingest jobs that ended (every task done) and were created over this many days ago
    # lose their rows (job, tasks, item results: mmq/jobs/retention.py); workers prune them
    # every `job_prune_every_s` from their reconciler, `mmq jobs prune` on demand.
    job_retention_days: float = Field(default=14.0, gt=0)
    job_prune_every_s: float = Field(default=3600.0, gt=0)
    # Workers read image and video paths only under these directories (symlinks resolved),
    # given as MMQ_INGEST_ROOTS=/data/photos:/data/videos. Unset: the working directory.
    ingest_roots: Annotated[list[Path], NoDecode] = Field(default_factory=list)
    # Uploads through the HTTP API and the originals workers keep, stored by content
    # (mmq/media/store.py): always an ingest root too. Unset: `state_dir / "media"`.
    media_dir: Path | None = None
    # Originals workers keep in the media directory (mmq/services/originals.py), so an
    # item can be re-embedded and shown later: "bytes" (what arrives as image or video
    # bytes), "all" (also copies of path ingests) or "none".
    keep_originals: Literal["bytes", "all", "none"] = "bytes"
    # How long a new prefork pool process may take to load its model.
    model_load_timeout_s: float = Field(default=300.0, gt=0)
    # Prefork pool: a process past this resident memory is replaced after its task.
    max_worker_memory_mb: int = Field(default=4096, gt=0)
    result_expires_s: int = Field(default=7 * 24 * 3600, gt=0)

    # ANN parameters, chosen with `make bench` (docs/performance.md has the recall curve).
    hnsw_m: int = Field(default=16, ge=4, le=64)
    hnsw_ef_construction: int = Field(default=64, ge=8)
    ef_search: int = Field(default=200, ge=1, le=1000)

    # Recommendations: an event's weight halves with every this many days of its age.
    recommend_half_life_days: float = Field(default=30.0, gt=0)

    # The HTTP API (`mmq serve`, docs/api.md). Requests per minute one key may make; past
    # it, 429 with Retry-After.
    api_rate_per_minute: int = Field(default=1200, gt=0)
    # Signs the media URLs the API hands out; unset, a random secret kept in `state_dir`
    # (every API process must share it: set it when they do not share a state folder).
    api_secret: SecretStr | None = None
    api_url_ttl_s: float = Field(default=3600.0, gt=0)  # how long a signed media URL works
    # Largest request body of an upload and of a JSON request: past it, 413.
    api_max_upload_bytes: int = Field(default=512 * 1024 * 1024, gt=0)
    api_max_json_bytes: int = Field(default=16 * 1024 * 1024, gt=0)
    # Origins allowed to call the API from a browser (CORS); empty: none but its own page.
    api_cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("broker_url", "result_backend", "database_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("state_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @field_validator("ingest_roots", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part]
        return value

    @field_validator("api_cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_media_dir(self) -> Path:
        """Where uploads and kept originals are stored: `media_dir`, else
        `state_dir / "media"`, absolute."""
        return (self.media_dir or self.state_dir / "media").expanduser().absolute()

    @property
    def resolved_ingest_roots(self) -> list[Path]:
        """The directories workers read paths from: the ingest roots (else the working
        directory), then the media directory, where the API's uploads are."""
        roots = [root.resolve() for root in self.ingest_roots or [Path.cwd()]]
        media = self.resolved_media_dir.resolve()
        return roots if media in roots else [*roots, media]

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql", "postgres")):
            raise ValueError("MMQ_DATABASE_URL must be a postgresql:// URL")
        return value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_only(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("broker and result backend must be redis:// or rediss:// URLs")
        return value

    @model_validator(mode="after")
    def _segment_lengths(self) -> Settings:
        if self.video_max_segment_s < self.video_min_segment_s:
            raise ValueError("MMQ_VIDEO_MAX_SEGMENT_S must be at least MMQ_VIDEO_MIN_SEGMENT_S")
        return self

    @model_validator(mode="after")
    def _time_limits(self) -> Settings:
        if not self.task_soft_time_limit_s < self.task_time_limit_s < self.visibility_timeout_s:
            raise ValueError(
                "need MMQ_TASK_SOFT_TIME_LIMIT_S < MMQ_TASK_TIME_LIMIT_S < "
                "MMQ_VISIBILITY_TIMEOUT_S: a message must not be handed to a second worker "
                "while the first may still run it"
            )
        return self

    @property
    def needs_embedded(self) -> bool:
        return self.broker_url is None or self.database_url is None


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/mmq, else ~/.local/state/mmq (the XDG base directory rule)."""
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "mmq"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

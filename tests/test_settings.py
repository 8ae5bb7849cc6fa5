"""`Settings`: MMQ_* environment variables in, validated values out, or a clear error."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from mmq.config import Settings

PG = "postgresql+psycopg://mmq:secret@127.0.0.1:5432/mmq"
REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session fixtures export MMQ_* URLs for workers; each test here starts from none.
    for name in list(os.environ):
        if name.upper().startswith("MMQ_"):
            monkeypatch.delenv(name)


def test_defaults_need_embedded_servers() -> None:
    s = Settings()
    assert s.broker_url is None and s.result_backend is None and s.database_url is None
    assert s.needs_embedded
    assert s.model == "lite"
    assert s.device == "auto"


def test_reads_mmq_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "MMQ_BROKER_URL": REDIS,
        "MMQ_RESULT_BACKEND": "redis://127.0.0.1:6379/1",
        "MMQ_DATABASE_URL": PG,
        "MMQ_MODEL": "clip:openai/clip-vit-base-patch32",
        "MMQ_DEVICE": "cpu",
        "MMQ_STATE_DIR": str(tmp_path),
        "MMQ_MAX_IMAGE_BYTES": "1234",
        "MMQ_MAX_IMAGE_PIXELS": "5678",
        "MMQ_MAX_TEXT_CHARS": "99",
        "MMQ_INGEST_CHUNK_SIZE": "8",
        "MMQ_EF_SEARCH": "40",
        "MMQ_DEFAULT_FUSION": "concat",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    assert s.broker_url == REDIS
    assert s.result_backend == "redis://127.0.0.1:6379/1"
    assert s.database_url == PG
    assert s.model == "clip:openai/clip-vit-base-patch32"
    assert s.device == "cpu"
    assert s.state_dir == tmp_path
    assert (s.max_image_bytes, s.max_image_pixels, s.max_text_chars) == (1234, 5678, 99)
    assert s.ingest_chunk_size == 8
    assert s.ef_search == 40
    assert s.default_fusion == "concat"
    assert not s.needs_embedded


def test_variables_without_the_prefix_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", PG)
    monkeypatch.setenv("BROKER_URL", REDIS)
    s = Settings()
    assert s.database_url is None and s.broker_url is None


@pytest.mark.parametrize(
    ("env", "needs_embedded"),
    [
        ({}, True),
        ({"MMQ_BROKER_URL": "", "MMQ_DATABASE_URL": ""}, True),
        ({"MMQ_BROKER_URL": REDIS, "MMQ_DATABASE_URL": ""}, True),
        ({"MMQ_BROKER_URL": "", "MMQ_DATABASE_URL": PG}, True),
        ({"MMQ_BROKER_URL": REDIS}, True),
        ({"MMQ_DATABASE_URL": PG}, True),
        ({"MMQ_BROKER_URL": REDIS, "MMQ_DATABASE_URL": PG}, False),
    ],
)
def test_blank_url_means_unset(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needs_embedded: bool
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    s = Settings()
    for name, value in env.items():
        assert getattr(s, name.removeprefix("MMQ_").lower()) == (value or None)
    assert s.needs_embedded is needs_embedded


def test_blank_result_backend_is_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMQ_RESULT_BACKEND", "")
    assert Settings().result_backend is None


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://u:p@127.0.0.1/db",
        "postgresql+psycopg://u:p@127.0.0.1:5432/db",
        "postgres://u:p@127.0.0.1/db",
    ],
)
def test_postgres_urls_accepted(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MMQ_DATABASE_URL", url)
    assert Settings().database_url == url


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///mmq.db",
        "mysql://u:p@127.0.0.1/db",
        "redis://127.0.0.1:6379/0",
        "127.0.0.1:5432",
    ],
)
def test_non_postgres_database_url_rejected(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("MMQ_DATABASE_URL", url)
    with pytest.raises(ValidationError, match="MMQ_DATABASE_URL must be a postgresql://") as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("database_url",)


@pytest.mark.parametrize(
    "url",
    ["redis://127.0.0.1:6379/0", "rediss://:secret@127.0.0.1:6380/0", "unix:///tmp/valkey.sock"],
)
@pytest.mark.parametrize("name", ["MMQ_BROKER_URL", "MMQ_RESULT_BACKEND"])
def test_redis_urls_accepted(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    monkeypatch.setenv(name, url)
    assert getattr(Settings(), name.removeprefix("MMQ_").lower()) == url


@pytest.mark.parametrize(
    "url",
    [
        "amqp://guest:guest@127.0.0.1:5672//",
        "sqs://",
        "memory://",
        "127.0.0.1:6379",
        PG,
    ],
)
@pytest.mark.parametrize("name", ["MMQ_BROKER_URL", "MMQ_RESULT_BACKEND"])
def test_non_redis_urls_rejected(monkeypatch: pytest.MonkeyPatch, name: str, url: str) -> None:
    monkeypatch.setenv(name, url)
    with pytest.raises(ValidationError, match="must be redis:// or rediss://") as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (name.removeprefix("MMQ_").lower(),)


@pytest.mark.parametrize(
    "name",
    [
        "MMQ_MAX_IMAGE_BYTES",
        "MMQ_MAX_IMAGE_PIXELS",
        "MMQ_MAX_TEXT_CHARS",
        "MMQ_MAX_METADATA_BYTES",
        "MMQ_INGEST_CHUNK_SIZE",
        "MMQ_ENCODE_BATCH_SIZE",
        "MMQ_RESULT_EXPIRES_S",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1"])
def test_limits_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match="greater than 0") as info:
        Settings()
    assert info.value.errors()[0]["loc"] == (name.removeprefix("MMQ_").lower(),)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MMQ_MAX_IMAGE_BYTES", "lots"),
        ("MMQ_INGEST_CHUNK_SIZE", "1025"),
        ("MMQ_HNSW_M", "2"),
        ("MMQ_EF_SEARCH", "0"),
        ("MMQ_DEFAULT_FUSION", "product"),
    ],
)
def test_other_bad_values_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as info:
        Settings()
    assert [e["loc"] for e in info.value.errors()] == [(name.removeprefix("MMQ_").lower(),)]


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_known_devices_accepted(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setenv("MMQ_DEVICE", device)
    assert Settings().device == device


@pytest.mark.parametrize("device", ["gpu", "mps", "cuda:0", "CPU", ""])
def test_unknown_device_rejected(monkeypatch: pytest.MonkeyPatch, device: str) -> None:
    monkeypatch.setenv("MMQ_DEVICE", device)
    with pytest.raises(ValidationError, match="auto.*cpu.*cuda") as info:
        Settings()
    assert info.value.errors()[0]["loc"] == ("device",)


@pytest.mark.parametrize(
    ("soft", "hard", "visibility"),
    [("60", "60", "120"), ("90", "60", "120"), ("30", "120", "120"), ("30", "200", "120")],
)
def test_a_message_is_never_redelivered_while_its_task_may_run(
    monkeypatch: pytest.MonkeyPatch, soft: str, hard: str, visibility: str
) -> None:
    monkeypatch.setenv("MMQ_TASK_SOFT_TIME_LIMIT_S", soft)
    monkeypatch.setenv("MMQ_TASK_TIME_LIMIT_S", hard)
    monkeypatch.setenv("MMQ_VISIBILITY_TIMEOUT_S", visibility)
    with pytest.raises(ValidationError, match="MMQ_TASK_TIME_LIMIT_S < MMQ_VISIBILITY_TIMEOUT_S"):
        Settings()


def test_ingest_roots_are_a_path_list(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MMQ_INGEST_ROOTS", f"{tmp_path}/a{os.pathsep}{tmp_path}/b")
    assert Settings().ingest_roots == [tmp_path / "a", tmp_path / "b"]
    monkeypatch.delenv("MMQ_INGEST_ROOTS")
    settings = Settings()
    assert settings.resolved_ingest_roots == [
        Path.cwd().resolve(),
        settings.resolved_media_dir.resolve(),
    ]


def test_every_task_is_time_limited_and_outlived_by_the_visibility_timeout() -> None:
    from mmq.broker import celery_config
    from mmq.embedded import Urls

    settings = Settings()
    config = celery_config(Urls(REDIS, REDIS, PG), settings)
    assert config["task_soft_time_limit"] < config["task_time_limit"]
    assert config["task_time_limit"] < config["broker_transport_options"]["visibility_timeout"]
    assert config["task_acks_late"] and config["task_reject_on_worker_lost"]
    assert config["worker_prefetch_multiplier"] == 1
    assert config["accept_content"] == ["json"]


def test_a_password_and_tls_options_in_the_urls_reach_celery(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import ssl

    from mmq.client import Client

    ca = tmp_path / "ca.pem"
    broker = f"rediss://:s3cret@127.0.0.1:6390/0?ssl_cert_reqs=required&ssl_ca_certs={ca}"
    backend = broker.replace("/0?", "/1?")
    monkeypatch.setenv("MMQ_BROKER_URL", broker)
    monkeypatch.setenv("MMQ_RESULT_BACKEND", backend)
    monkeypatch.setenv("MMQ_DATABASE_URL", PG)
    client = Client(Settings())  # connects to nothing until a job is sent
    try:
        # Configured URLs are used as given: no embedded server, nothing stripped.
        assert (client.urls.broker_url, client.urls.result_backend) == (broker, backend)
        assert client.app.conf.broker_url == broker
        assert client.app.conf.result_backend == backend
        # The broker connection Celery will open (kombu parses the URL; no connect yet).
        conn = client.app.connection_for_write()
        assert (conn.transport_cls, conn.hostname, conn.port) == ("rediss", "127.0.0.1", 6390)
        assert conn.password == "s3cret"
        assert conn.ssl == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": str(ca)}
        assert "s3cret" not in conn.as_uri()  # what Celery's banner and logs show
        # The result backend's connection parameters (built lazily, no connect).
        params = client.app.backend.connparams
        assert (params["password"], params["db"]) == ("s3cret", 1)
        assert params["ssl_cert_reqs"] == ssl.CERT_REQUIRED
        assert params["ssl_ca_certs"] == str(ca)
    finally:
        client.close()

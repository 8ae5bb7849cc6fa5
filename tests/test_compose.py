"""The production compose file and Dockerfile, checked by parsing (no Docker engine needed)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from mmq.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {"redis", "postgres", "migrate", "ingest-worker", "search-worker"}
WORKERS = ("ingest-worker", "search-worker")
CLIP = "clip:openai/clip-vit-base-patch32"

# ${VAR}, ${VAR:-default}, ${VAR-default}: compose interpolation, plain text to YAML.
_PLACEHOLDER = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def substitute_defaults(value: str) -> str:
    """Replace compose placeholders with their defaults, as compose does with VAR unset."""
    return _PLACEHOLDER.sub(lambda m: m.group("default") or "", value)


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def mmq_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of environment"
    return {k: substitute_defaults(str(v)) for k, v in env.items() if k.startswith("MMQ_")}


def test_substitute_defaults() -> None:
    assert substitute_defaults("a:${P:-mmq}@h") == "a:mmq@h"
    assert substitute_defaults("${P-x}/${Q}") == "x/"


def test_five_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_redis_is_durable(services: dict[str, Any]) -> None:
    redis = services["redis"]
    argv = as_argv(redis["command"])
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert argv[argv.index("--requirepass") + 1]  # and the workers' URLs carry it:
    assert services["search-worker"]["environment"]["MMQ_BROKER_URL"].startswith("redis://:")
    assert redis["volumes"] and "healthcheck" in redis


def test_every_redis_url_carries_the_servers_password(services: dict[str, Any]) -> None:
    from urllib.parse import urlsplit

    argv = as_argv(services["redis"]["command"])
    requirepass = argv[argv.index("--requirepass") + 1]
    assert requirepass.startswith("${REDIS_PASSWORD")  # set once, by the deployer
    for name in ["migrate", *WORKERS]:
        for key in ("MMQ_BROKER_URL", "MMQ_RESULT_BACKEND"):
            raw = services[name]["environment"][key]
            assert "${REDIS_PASSWORD" in raw, (name, key)  # the same variable as the server's
            password = urlsplit(substitute_defaults(raw)).password
            assert password == substitute_defaults(requirepass), (name, key)


def test_postgres_has_pgvector(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"] == "pgvector/pgvector:pg17"
    assert "pg_isready" in " ".join(as_argv(postgres["healthcheck"]["test"]))
    assert postgres["volumes"]


def test_ingest_worker_reserves_gpu(services: dict[str, Any]) -> None:
    worker = services["ingest-worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    env = mmq_env(worker)
    assert env["MMQ_MODEL"] == CLIP
    assert env["MMQ_DEVICE"] == "cuda"


def test_workers_serve_the_same_model(services: dict[str, Any]) -> None:
    # A collection is bound to one model: queries must be encoded into the same space.
    assert {mmq_env(services[name])["MMQ_MODEL"] for name in WORKERS} == {CLIP}
    assert mmq_env(services["search-worker"])["MMQ_DEVICE"] == "cpu"


@pytest.mark.parametrize("name", ["migrate", *WORKERS])
def test_mmq_env_keys_are_settings_fields(services: dict[str, Any], name: str) -> None:
    env = mmq_env(services[name])
    assert env, f"{name} sets no MMQ_* variables"
    for key in env:
        assert key.removeprefix("MMQ_").lower() in Settings.model_fields, key


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_servers_get_no_mmq_settings(services: dict[str, Any], name: str) -> None:
    assert mmq_env(services[name]) == {}


@pytest.mark.parametrize("name", ["migrate", *WORKERS])
def test_mmq_env_values_validate(services: dict[str, Any], name: str) -> None:
    env = mmq_env(services[name])
    # Strings, as the environment gives them: Settings parses and validates each one.
    fields: dict[str, Any] = {k.removeprefix("MMQ_").lower(): v for k, v in env.items()}
    settings = Settings(**fields)
    assert settings.broker_url and settings.broker_url.startswith("redis://:mmq@redis:6379/")
    assert settings.result_backend and settings.result_backend.startswith(
        "redis://:mmq@redis:6379/"
    )
    assert settings.database_url and "@postgres:5432/" in settings.database_url
    assert not settings.needs_embedded


def test_migrate_runs_once_before_workers(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert as_argv(migrate["command"]) == ["mmq", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in WORKERS:
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize(
    ("name", "queue"), [("ingest-worker", "ingest"), ("search-worker", "search")]
)
def test_worker_queues(services: dict[str, Any], name: str, queue: str) -> None:
    argv = as_argv(services[name]["command"])
    assert argv[:2] == ["mmq", "worker"]
    assert argv[argv.index("--queues") + 1] == queue


def test_dockerfile_installs_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^COPY \. ", text, re.M), "migrations/ must ship beside the package"
    assert re.search(r"^RUN pip install .*-e \.", text, re.M)
    assert re.search(r'^CMD \["mmq", "worker"', text, re.M)

"""The production compose file, Dockerfile and pinned dependencies, checked by parsing them
(no Docker engine needed); `docker compose config` checks the same when it is installed."""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from deploy import lock
from mmq.cli.serve import add_serve_arguments
from mmq.config import Settings

ROOT = Path(__file__).resolve().parents[1]
SERVICES = {
    "redis",
    "postgres",
    "migrate",
    "ingest-worker-gpu",
    "ingest-worker-cpu",
    "search-worker",
    "api",
}
INGEST = ("ingest-worker-gpu", "ingest-worker-cpu")
WORKERS = (*INGEST, "search-worker")
MMQ_SERVICES = ("migrate", *WORKERS, "api")
CLIP = "clip:openai/clip-vit-base-patch32"
PASSWORDS = ("POSTGRES_PASSWORD", "REDIS_PASSWORD")
# Secrets without a default: the passwords, and the key the API signs media URLs with.
SECRETS = (*PASSWORDS, "API_SECRET")
# What a deployer puts in .env: the variables compose cannot start without.
DEPLOYER_ENV = {
    "POSTGRES_PASSWORD": "pg0secret",
    "REDIS_PASSWORD": "redis0secret",
    "API_SECRET": "0123456789abcdef" * 4,
    "MMQ_MEDIA_DIR": "/srv/photos",
}
MEDIA = DEPLOYER_ENV["MMQ_MEDIA_DIR"]
UPLOADS = f"{MEDIA}/uploads"  # where the API stores uploads: a subfolder of the media
API_PORT = 8000

# Compose interpolation: $$ (a literal $), ${VAR}, ${VAR:-default}, ${VAR-default},
# ${VAR:?error}, ${VAR?error}, ${VAR:+alternative}, ${VAR+alternative}, $VAR.
_PLACEHOLDER = re.compile(
    r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)"
)


class MissingVariable(Exception):
    """What compose reports before starting anything: a required variable has no value."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """`text` as compose sees it with `env` as the environment (and .env)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op") or "", m.group("arg") or ""
        value = env.get(name)
        # The colon forms treat an empty value as unset.
        missing = value is None or (op.startswith(":") and value == "")
        if op in (":-", "-"):
            return arg if missing else str(value)
        if op in (":?", "?"):
            if missing:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op in (":+", "+"):
            return "" if missing else arg
        return value or ""

    return _PLACEHOLDER.sub(one, text)


def interpolate_all(node: Any, env: dict[str, str]) -> Any:
    """Every string value of a parsed compose document, interpolated (keys are not)."""
    if isinstance(node, dict):
        return {k: interpolate_all(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate_all(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


def placeholders(text: str) -> list[tuple[str, str]]:
    """(name, operator) of every variable the text reads."""
    return [
        (m.group("name") or m.group("bare"), m.group("op") or "")
        for m in _PLACEHOLDER.finditer(text)
        if m.group(0) != "$$"
    ]


def as_argv(command: str | list[str]) -> list[str]:
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def compose_text() -> str:
    return (ROOT / "docker-compose.yml").read_text()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(compose_text())


def deployed(raw: dict[str, Any], **env: str) -> dict[str, Any]:
    """The services as compose runs them with the deployer's .env, plus `env`."""
    return interpolate_all(raw, {**DEPLOYER_ENV, **env})["services"]


@pytest.fixture(scope="module")
def services(raw: dict[str, Any]) -> dict[str, Any]:
    return deployed(raw)


def mmq_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "use the mapping form of environment"
    return {k: str(v) for k, v in env.items() if k.startswith("MMQ_")}


def binds(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The service's bind mounts (long form: short-form host paths are not used)."""
    return [v for v in service.get("volumes", []) if isinstance(v, dict) and v["type"] == "bind"]


def settings_of(service: dict[str, Any]) -> Settings:
    """The Settings the service's mmq processes read from their environment."""
    env = {**mmq_env(service), "MMQ_STATE_DIR": dockerfile_env()["MMQ_STATE_DIR"]}
    # Strings, as the environment gives them: Settings parses and validates each one.
    fields: dict[str, Any] = {k.removeprefix("MMQ_").lower(): v for k, v in env.items()}
    return Settings(**fields)


def test_interpolate_like_compose() -> None:
    env = {"P": "pw", "E": ""}
    assert interpolate("a:${P:-mmq}@h ${Q:-d} ${E:-d} ${E-d}|", env) == "a:pw@h d d |"
    assert interpolate("$${P} $P ${P:+on}${Q:+on}", env) == "${P} pw on"
    assert interpolate("${P:?need P}", env) == "pw"
    with pytest.raises(MissingVariable, match="Q: need Q"):
        interpolate("${Q:?need Q}", env)
    with pytest.raises(MissingVariable, match="E"):
        interpolate("${E:?}", env)
    assert interpolate("${E?}", env) == ""  # without the colon, empty counts as set


def test_seven_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


# ---------------------------------------------------------------- passwords and secrets


@pytest.mark.parametrize("name", SECRETS)
def test_every_password_reference_is_required(name: str) -> None:
    refs = [op for var, op in placeholders(compose_text()) if var == name]
    assert refs, f"{name} is never used"
    assert set(refs) == {":?"}, f"{name} must be ${{{name}:?...}} everywhere: no default"


def test_no_variable_defaults_to_a_secret() -> None:
    for var, op in placeholders(compose_text()):
        if re.search(r"PASSWORD|SECRET|TOKEN|KEY", var):
            assert op == ":?", var


@pytest.mark.parametrize("name", [*SECRETS, "MMQ_MEDIA_DIR"])
@pytest.mark.parametrize("value", [None, ""])
def test_refuses_to_start_without(raw: dict[str, Any], name: str, value: str | None) -> None:
    env = {k: v for k, v in DEPLOYER_ENV.items() if k != name}
    if value is not None:
        env[name] = value
    with pytest.raises(MissingVariable, match=name):
        interpolate_all(raw, env)


def test_password_reaches_server_and_every_client(services: dict[str, Any]) -> None:
    argv = as_argv(services["redis"]["command"])
    assert argv[argv.index("--requirepass") + 1] == DEPLOYER_ENV["REDIS_PASSWORD"]
    postgres = services["postgres"]["environment"]
    assert postgres["POSTGRES_PASSWORD"] == DEPLOYER_ENV["POSTGRES_PASSWORD"]
    for name in MMQ_SERVICES:
        env = services[name]["environment"]
        for key in ("MMQ_BROKER_URL", "MMQ_RESULT_BACKEND"):
            assert urlsplit(env[key]).password == DEPLOYER_ENV["REDIS_PASSWORD"], (name, key)
        db = urlsplit(env["MMQ_DATABASE_URL"])
        assert (db.username, db.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        )


def test_env_example_lists_every_variable(raw: dict[str, Any]) -> None:
    example = (ROOT / ".env.example").read_text()
    listed = dict(re.findall(r"^#?(\w+)=(.*)$", example, re.M))
    read = {var for var, _ in placeholders(compose_text())}
    assert read <= set(listed), f"not in .env.example: {sorted(read - set(listed))}"
    for var, op in placeholders(compose_text()):
        if op == ":?":
            assert listed[var] == "", f"{var}: no sample value a deployer might keep"
    assert listed["COMPOSE_PROFILES"] in {"gpu", "cpu"}
    assert ".env" in (ROOT / ".dockerignore").read_text().split(), "passwords into the image"


# ---------------------------------------------------------------- services


def test_redis_is_durable(services: dict[str, Any]) -> None:
    redis = services["redis"]
    argv = as_argv(redis["command"])
    assert argv[argv.index("--appendonly") + 1] == "yes"
    assert redis["volumes"] and "healthcheck" in redis
    # $$ keeps the password out of the file: the shell in the container expands it.
    assert "$REDIS_PASSWORD" in " ".join(redis["healthcheck"]["test"])


def test_postgres_has_pgvector(services: dict[str, Any]) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("pgvector/pgvector:")
    assert "pg_isready" in " ".join(as_argv(postgres["healthcheck"]["test"]))
    assert postgres["volumes"]


@pytest.mark.parametrize(("name", "port"), [("redis", 6379), ("postgres", 5432)])
def test_servers_published_on_loopback(services: dict[str, Any], name: str, port: int) -> None:
    # Producers outside the compose network (mmq.Client on the host) need both servers.
    [published] = services[name]["ports"]
    host_ip, host_port, container_port = str(published).rsplit(":", 2)
    assert host_ip == "127.0.0.1" and int(container_port) == port and host_port
    # The workers reach the same port inside the network.
    urls = mmq_env(services["search-worker"])
    key = "MMQ_BROKER_URL" if name == "redis" else "MMQ_DATABASE_URL"
    assert urlsplit(urls[key]).port == port


def test_publishing_elsewhere_is_a_choice(raw: dict[str, Any]) -> None:
    services = deployed(raw, REDIS_PUBLISH="10.0.0.5:6380", API_PUBLISH="10.0.0.5:8080")
    assert services["redis"]["ports"] == ["10.0.0.5:6380:6379"]
    assert services["api"]["ports"] == [f"10.0.0.5:8080:{API_PORT}"]
    assert services["postgres"]["ports"] == ["127.0.0.1:5432:5432"]  # each its own choice


def test_only_servers_and_the_api_publish_ports(services: dict[str, Any]) -> None:
    # Workers and migrate take no connections: nothing of theirs is reachable from the host.
    assert {n for n, s in services.items() if "ports" in s} == {"redis", "postgres", "api"}


def test_ingest_profiles(services: dict[str, Any]) -> None:
    gpu, cpu = services["ingest-worker-gpu"], services["ingest-worker-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in cpu
    assert mmq_env(gpu)["MMQ_DEVICE"] == "cuda"
    assert mmq_env(cpu)["MMQ_DEVICE"] == "cpu"
    assert as_argv(gpu["command"]) == as_argv(cpu["command"])


def test_always_on_services_have_no_profile(services: dict[str, Any]) -> None:
    for name in SERVICES - set(INGEST):
        assert "profiles" not in services[name], name


def test_images_match_torch_variants(services: dict[str, Any]) -> None:
    # One tag per variant: two builds under one tag would overwrite each other.
    variants = {
        name: (services[name]["image"], services[name]["build"]["args"]["TORCH_VARIANT"])
        for name in MMQ_SERVICES
    }
    assert variants["ingest-worker-gpu"][1] == "cuda"
    cpu = ("migrate", "ingest-worker-cpu", "search-worker", "api")
    assert {variants[n][1] for n in cpu} == {"cpu"}
    by_tag: dict[str, set[str]] = {}
    for image, variant in variants.values():
        by_tag.setdefault(image, set()).add(variant)
    assert all(len(v) == 1 for v in by_tag.values()), by_tag


def test_workers_serve_the_same_model(services: dict[str, Any]) -> None:
    # A collection is bound to one model: queries must be encoded into the same space.
    assert {mmq_env(services[name])["MMQ_MODEL"] for name in WORKERS} == {CLIP}
    assert mmq_env(services["search-worker"])["MMQ_DEVICE"] == "cpu"


def test_one_variable_changes_the_model_everywhere(raw: dict[str, Any]) -> None:
    services = deployed(raw, MMQ_MODEL="lite")
    assert {mmq_env(services[name])["MMQ_MODEL"] for name in WORKERS} == {"lite"}


def test_media_at_the_same_path_read_only(services: dict[str, Any]) -> None:
    for name in INGEST:
        service = services[name]
        assert mmq_env(service)["MMQ_INGEST_ROOTS"] == MEDIA
        # The media, and its uploads/ subfolder mounted writable over it (above).
        [mount] = [m for m in binds(service) if m["target"] != UPLOADS]
        assert mount["source"] == mount["target"] == MEDIA  # host paths work unchanged
        assert mount["read_only"] is True
        assert mount["bind"]["create_host_path"] is False
    assert "MMQ_INGEST_ROOTS" not in mmq_env(services["search-worker"])
    assert not binds(services["search-worker"])  # queries come as text or bytes


def test_model_cache_is_the_images_hf_home(services: dict[str, Any]) -> None:
    hf_home = dockerfile_env()["HF_HOME"]
    for name in WORKERS:
        volumes = [v for v in services[name]["volumes"] if isinstance(v, str)]
        assert f"hf-cache:{hf_home}" in volumes, name


def test_mmq_services_drop_privileges(services: dict[str, Any]) -> None:
    for name in MMQ_SERVICES:
        assert services[name]["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in services[name]["security_opt"], name
        assert "user" not in services[name], "the image's USER applies"


@pytest.mark.parametrize("name", MMQ_SERVICES)
def test_mmq_env_keys_are_settings_fields(services: dict[str, Any], name: str) -> None:
    env = mmq_env(services[name])
    assert env, f"{name} sets no MMQ_* variables"
    for key in env:
        assert key.removeprefix("MMQ_").lower() in Settings.model_fields, key


@pytest.mark.parametrize("name", ["redis", "postgres"])
def test_servers_get_no_mmq_settings(services: dict[str, Any], name: str) -> None:
    assert mmq_env(services[name]) == {}


@pytest.mark.parametrize("name", MMQ_SERVICES)
def test_mmq_env_values_validate(services: dict[str, Any], name: str) -> None:
    settings = settings_of(services[name])
    assert settings.broker_url and settings.broker_url.startswith("redis://:")
    assert settings.result_backend and settings.result_backend.startswith("redis://:")
    assert settings.database_url and "@postgres:5432/" in settings.database_url
    assert not settings.needs_embedded


def test_migrate_runs_once_before_workers(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert as_argv(migrate["command"]) == ["mmq", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in (*WORKERS, "api"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize(
    ("name", "queue"), [*((n, "ingest") for n in INGEST), ("search-worker", "search")]
)
def test_worker_queues(services: dict[str, Any], name: str, queue: str) -> None:
    argv = as_argv(services[name]["command"])
    assert argv[:2] == ["mmq", "worker"]
    assert argv[argv.index("--queues") + 1] == queue


# ---------------------------------------------------------------- the HTTP API


def serve_args(service: dict[str, Any]) -> argparse.Namespace:
    """The api service's command, parsed by `mmq serve`'s own argument parser."""
    argv = as_argv(service["command"])
    assert argv[:2] == ["mmq", "serve"], argv
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_serve_arguments(parser)
    return parser.parse_args(argv[2:])


def test_api_serves_on_every_interface_of_its_container(raw: dict[str, Any]) -> None:
    # Inside the container: 127.0.0.1 there would be unreachable from the published port.
    args = serve_args(deployed(raw)["api"])
    assert (args.host, args.port, args.workers) == ("0.0.0.0", API_PORT, 1)
    assert not getattr(args, "demo", False), "the compose workers do the work, not --demo's"
    assert serve_args(deployed(raw, API_WORKERS="4")["api"]).workers == 4


def test_api_published_on_loopback(services: dict[str, Any]) -> None:
    [published] = services["api"]["ports"]
    host_ip, host_port, container_port = str(published).rsplit(":", 2)
    assert host_ip == "127.0.0.1" and host_port
    assert int(container_port) == serve_args(services["api"]).port


def test_api_is_a_producer_of_the_same_stack(services: dict[str, Any]) -> None:
    api, search = mmq_env(services["api"]), mmq_env(services["search-worker"])
    for key in ("MMQ_BROKER_URL", "MMQ_RESULT_BACKEND", "MMQ_DATABASE_URL"):
        assert api[key] == search[key], key
    assert "MMQ_DEVICE" not in api  # it loads no model
    assert not [v for v in services["api"]["volumes"] if isinstance(v, str)], "no model cache"


def test_api_secret_is_the_deployers(services: dict[str, Any]) -> None:
    # Fixed in .env, so restarts and every API process sign media URLs alike.
    secret = settings_of(services["api"]).api_secret
    assert secret is not None and secret.get_secret_value() == DEPLOYER_ENV["API_SECRET"]
    for name in set(MMQ_SERVICES) - {"api"}:
        assert "MMQ_API_SECRET" not in mmq_env(services[name]), name


def test_uploads_writable_in_the_api_and_ingest_workers_only(services: dict[str, Any]) -> None:
    # The API stores uploads there, ingest workers the originals of bytes ingests; the
    # user's media folder stays read-only everywhere, and nothing else writes anything.
    writers = {"api", *INGEST}
    for name, service in services.items():
        for mount in binds(service):
            assert mount["source"] == mount["target"], (name, mount)  # host paths unchanged
            assert mount["bind"]["create_host_path"] is False, (name, mount)
            if name in writers and mount["target"] == UPLOADS:
                assert mount["read_only"] is False
            else:
                assert mount["read_only"] is True, (name, mount)
    for name in writers:
        assert UPLOADS in {m["target"] for m in binds(services[name])}, name
    assert binds(services["search-worker"]) == []  # image queries are never stored


def test_api_reads_the_media_it_did_not_upload(services: dict[str, Any]) -> None:
    # Originals of items ingested by path are served from MMQ_MEDIA_DIR, read-only; the
    # writable uploads folder is mounted over a part of it.
    api = services["api"]
    by_target = {m["target"]: m for m in binds(api)}
    assert set(by_target) == {MEDIA, UPLOADS}
    assert by_target[MEDIA]["read_only"] is True
    assert Path(UPLOADS).is_relative_to(MEDIA)
    assert mmq_env(api)["MMQ_INGEST_ROOTS"] == MEDIA


def test_api_and_ingest_workers_agree_on_the_uploads(services: dict[str, Any]) -> None:
    assert mmq_env(services["api"])["MMQ_MEDIA_DIR"] == UPLOADS
    assert settings_of(services["api"]).resolved_media_dir == Path(UPLOADS)
    for name in INGEST:
        settings = settings_of(services[name])
        assert settings.resolved_media_dir == Path(UPLOADS), name
        assert settings.keep_originals == "bytes", name  # bytes ingests keep their file
        # The workers read the media read-only, and write their originals to the uploads
        # (mounted over it), within their ingest roots.
        by_target = {m["target"]: m["read_only"] for m in binds(services[name])}
        assert by_target == {MEDIA: True, UPLOADS: False}, name
        assert Path(MEDIA) in settings.ingest_roots
        assert Path(UPLOADS).resolve() in settings.resolved_ingest_roots


def test_api_trusts_no_proxy_by_default(raw: dict[str, Any]) -> None:
    # uvicorn believes X-Forwarded-Proto/-For only from these addresses.
    env = deployed(raw)["api"]["environment"]
    assert env["FORWARDED_ALLOW_IPS"] in {"127.0.0.1", "127.0.0.1,::1"}
    env = deployed(raw, API_FORWARDED_ALLOW_IPS="172.18.0.1")["api"]["environment"]
    assert env["FORWARDED_ALLOW_IPS"] == "172.18.0.1"


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 (the http.server name)
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_api_healthcheck_asks_healthz(services: dict[str, Any], status: int, healthy: bool) -> None:
    check = services["api"]["healthcheck"]
    test = as_argv(check["test"])
    # CMD form: no shell needed, and curl may be absent from the image; its Python is there.
    assert test[:3] == ["CMD", "python", "-c"], test
    url = f"http://127.0.0.1:{serve_args(services['api']).port}/healthz"
    assert url in test[3]
    assert check["interval"] and check["timeout"] and check["retries"]
    # Run the check itself against a stand-in answering `status` on a free loopback port.
    _Health.status = status
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        code = test[3].replace(":8000/", f":{server.server_address[1]}/")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30)
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy, result.stderr


def test_uploads_owner_is_the_images_user() -> None:
    # .env.example tells the deployer which uid must own uploads/: the Dockerfile's.
    run = " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    uid = re.search(r"useradd .*--uid (\d+)", run)
    assert uid, "useradd --uid N: a fixed uid a host folder can be given to"
    example = (ROOT / ".env.example").read_text()
    assert re.search(rf"chown {uid.group(1)}:\d+ \S*uploads", example), "uploads owner"


# ---------------------------------------------------------------- Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined: list[str] = []
    current = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            joined.append(current.strip())
            current = ""
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in joined]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def dockerfile_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for instruction, rest in dockerfile_instructions():
        if instruction == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            args[name] = shlex.split(value)[0]
    return args


def makefile_torch() -> list[str]:
    match = re.search(r"^TORCH \?= (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert match, "the Makefile's install target pins torch in TORCH"
    return sorted(match.group(1).split())


def test_dockerfile_pins_torch_as_the_makefile() -> None:
    pins = makefile_torch()
    assert {Requirement(p).name for p in pins} == {"torch", "torchvision"}
    assert all(str(Requirement(p).specifier).startswith("==") for p in pins), pins
    assert sorted(dockerfile_args()["TORCH"].split()) == pins


def test_dockerfile_runs_as_a_user() -> None:
    users = [
        args.strip() for instruction, args in dockerfile_instructions() if instruction == "USER"
    ]
    assert users, "no USER: the workers would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    # The user owns only what it writes: the model cache and the state directory.
    run = " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    env = dockerfile_env()
    assert "useradd" in run and users[-1] in run
    assert "chown" in run and "$HF_HOME" in run and "$MMQ_STATE_DIR" in run
    assert env["MMQ_STATE_DIR"] and env["HF_HOME"]


def test_dockerfile_variants() -> None:
    run = " ".join(a for i, a in dockerfile_instructions() if i == "RUN")
    assert dockerfile_args()["TORCH_VARIANT"] == "cuda"
    assert re.search(r"cuda\) pip install --no-deps -r \S*requirements-cuda\.txt \$TORCH", run)
    assert re.search(r"cpu\) pip install --no-deps --index-url \"\$TORCH_CPU_INDEX\" \$TORCH", run)
    assert dockerfile_args()["TORCH_CPU_INDEX"].endswith("/whl/cpu")


def test_dockerfile_installs_only_pinned_packages() -> None:
    runs = [a for i, a in dockerfile_instructions() if i == "RUN" and "pip install" in a]
    for run in runs:
        for command in run.split(";"):
            if "pip install" in command:
                assert "--no-deps" in command, command  # nothing resolved at build time
    assert any("-r /tmp/deploy/requirements.txt" in r for r in runs)
    assert runs[-1].endswith("pip check")
    assert re.search(r'pip install --no-deps --no-build-isolation -e "\.\[worker\]"', runs[-1])


def test_image_has_the_worker_extra() -> None:
    # The image runs workers: the project goes in with its worker extra (above), and the
    # lock pins that extra's packages too (torch and torchvision come from TORCH).
    assert lock.IMAGE_EXTRAS == ("worker",)
    pins = lock.read_pins(lock.MAIN)
    producer = {canonicalize_name(r.name) for r in lock.project_requirements(())}
    worker = {canonicalize_name(r.name) for r in lock.project_requirements()} - producer
    assert {"torch", "transformers", "scikit-learn"} <= worker
    assert worker - lock.TORCH_PACKAGES <= set(pins), "run `.venv/bin/python -m deploy.lock`"


def test_dockerfile_python_is_the_locks() -> None:
    # deploy/lock.py evaluates markers for this Python (redis needs async-timeout on
    # Python < 3.11.3): the image must run the same minor version, a later patch.
    match = re.search(r"^FROM python:(\d+)\.(\d+)-slim", (ROOT / "Dockerfile").read_text(), re.M)
    assert match, "FROM python:<major>.<minor>-slim..."
    assert (int(match.group(1)), int(match.group(2))) == sys.version_info[:2]


def test_dockerfile_installs_project() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", text, re.M)
    assert re.search(r"^COPY \. /app", text, re.M), "migrations/ must ship beside the package"
    assert re.search(r'^CMD \["mmq", "worker"', text, re.M)


# ---------------------------------------------------------------- pinned dependencies


def test_lock_covers_every_runtime_dependency() -> None:
    pins, cuda = lock.read_pins(lock.MAIN), lock.read_pins(lock.CUDA)
    needed = lock.closure(lock.project_requirements(), skip_cuda=True)
    missing = set(needed) - set(pins) - lock.TORCH_PACKAGES
    assert not missing, f"unpinned: {sorted(missing)}: run `.venv/bin/python -m deploy.lock`"
    assert not (set(pins) | set(cuda)) & lock.TORCH_PACKAGES, "torch comes from the Makefile's pins"
    assert not any(lock.is_cuda_only(name) for name in pins), "the CPU image takes no CUDA"
    assert cuda and all(lock.is_cuda_only(name) for name in cuda)


def test_lock_satisfies_pyproject() -> None:
    pins = lock.read_pins(lock.MAIN)
    for req in lock.project_requirements():
        name = canonicalize_name(req.name)
        if name not in lock.TORCH_PACKAGES:
            assert req.specifier.contains(pins[name], prereleases=True), (req, pins[name])


# ---------------------------------------------------------------- the real thing


def compose_command() -> list[str] | None:
    """`docker compose` or `docker-compose`, when one is installed (config needs no engine)."""
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0
    ):
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    return [standalone] if standalone else None


def run_compose(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = compose_command()
    if command is None:
        pytest.skip("no docker compose installed: the parsing tests above stand in")
    base = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    return subprocess.run(
        [*command, "--project-directory", str(ROOT), "--env-file", "/dev/null", *args],
        capture_output=True, text=True, env={**base, **env}, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("name", [*SECRETS, "MMQ_MEDIA_DIR"])
def test_docker_compose_refuses_without(name: str) -> None:
    env = {k: v for k, v in DEPLOYER_ENV.items() if k != name}
    result = run_compose(["config", "--quiet"], env)
    assert result.returncode != 0 and name in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("profile", "worker"), [("gpu", "ingest-worker-gpu"), ("cpu", "ingest-worker-cpu")]
)
def test_docker_compose_profiles(profile: str, worker: str) -> None:
    result = run_compose(["--profile", profile, "config", "--services"], DEPLOYER_ENV)
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVICES - set(INGEST) | {worker}

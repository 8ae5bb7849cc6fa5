"""`pip install mmq` with no extras is the producer side: no torch, no model, and enough to
enqueue, search, migrate and serve the API. A venv is built from this tree that way; the
Client and the `mmq` command from it work against the session's workers, and the commands
that load a model say which extra to install.

The install takes what pip's configured indexes give (PyPI's wheels stay in pip's cache
between runs): 35 to 75 s on the 2-CPU development machine, idle or busy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from mmq.cli.worker_extra import INSTALL_HINT, WORKER_MODULES
from mmq.embedded import Urls
from mmq.errors import Unavailable
from tests.support.api import free_port
from tests.support.names import fresh
from tests.support.procs import Procs, without_mmq_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
# Everything but what the build needs (pyproject.toml, README.md, mmq/, workers/ and the
# migrations/ that mmq/store/migrations links to): pip builds in the source folder, so it
# builds in a copy and leaves this tree alone.
NOT_BUILT = shutil.ignore_patterns(
    ".*", "*.egg-info", "__pycache__", "build", "dist", "tests", "benchmarks", "docs"
)
PHOTOS = ("chelsea", "coffee", "rocket", "astronaut")
MODEL_COMMANDS = (
    ["worker"],
    ["demo"],
    ["serve", "--demo"],
    ["train", "--images", "i", "--captions", "c.csv", "--out", "o"],
    ["eval", "--images", "i", "--captions", "c.csv"],
)
# Packages that load models: a producer's install cannot import them.
MODEL_SIDE = ("mmq.encoders", "mmq.relevance", "mmq.services", "mmq.training", "workers.")
# Import every module of mmq and workers; print {module: missing top-level package}.
IMPORT_ALL = """
import importlib, json, pkgutil, mmq, workers
failed = {}
for package in (mmq, workers):
    for found in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if found.name.endswith(".__main__"):
            continue  # runs the command line
        try:
            importlib.import_module(found.name)
        except ModuleNotFoundError as exc:
            failed[found.name] = (exc.name or "").split(".")[0]
print(json.dumps(failed))
"""
# The producer's script: ingest by path, then search, with the venv's Client.
PRODUCER = """
import json, sys
from mmq.client import Client
from mmq.schemas import IngestItem

collection, photos = sys.argv[1], json.loads(sys.argv[2])
client = Client()
items = [IngestItem(image_path=path, external_id=name) for name, path in photos.items()]
ingested = client.ingest(items, collection=collection).result(timeout=300)
found = client.search(collection=collection, text="a cat", targets=["image"], k=3)
hits = found.result(timeout=60).hits
client.close()
loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "sklearn"})
print(json.dumps({"stored": ingested.stored, "failed": ingested.failed,
                  "hits": [h.external_id for h in hits], "loaded": loaded}))
"""


@dataclass(frozen=True)
class Venv:
    root: Path
    install_s: float

    def bin(self, name: str) -> str:
        return str(self.root / "bin" / name)

    def run(
        self, *argv: str, env: dict[str, str], timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A program of the venv, run from the venv's folder: nothing of this tree is on
        its path (`python -c` puts the working folder first)."""
        return subprocess.run(
            [self.bin(argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            env=env,
            cwd=self.root,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def producer(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    base = tmp_path_factory.mktemp("producer")
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_BUILT)
    root = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    t0 = time.monotonic()
    # The folder by its absolute path: a bare name is a project on the index. No bytecode
    # compiled ahead: the few modules the tests import compile as they load.
    pip = [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", "--no-compile"]
    pip.append(str(source))
    result = subprocess.run(pip, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    return Venv(root, time.monotonic() - t0)


def test_install_brings_no_model_package(producer: Venv) -> None:
    print(f"pip install of the producer side: {producer.install_s:.0f}s")
    env = without_mmq_settings()
    show = producer.run("pip", "show", "torch", env=env)
    assert show.returncode != 0 and "not found" in show.stderr
    code = (
        "import importlib.util, mmq; print(mmq.__file__); "
        f"print([m for m in {WORKER_MODULES!r} if importlib.util.find_spec(m)])"
    )
    out = producer.run("python", "-c", code, env=env)
    assert out.returncode == 0, out.stderr
    where, found = out.stdout.splitlines()
    assert Path(where).is_relative_to(producer.root), "mmq came from the tree, not the venv"
    assert found == "[]"
    torch = producer.run("python", "-c", "import torch", env=env)
    assert "ModuleNotFoundError: No module named 'torch'" in torch.stderr


@pytest.fixture(scope="module")
def session_env(urls: Urls, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The venv's processes talk to the session's servers (and so to its workers)."""
    env = without_mmq_settings()
    env.update(
        MMQ_BROKER_URL=urls.broker_url,
        MMQ_RESULT_BACKEND=urls.result_backend,
        MMQ_DATABASE_URL=urls.database_url,
        MMQ_STATE_DIR=str(tmp_path_factory.mktemp("producer-state")),
    )
    return env


def test_client_from_the_venv_ingests_and_searches(
    producer: Venv, session_env: dict[str, str], workers: Procs, photos: dict[str, Path]
) -> None:
    chosen = json.dumps({n: str(photos[n]) for n in PHOTOS})
    argv = ["python", "-c", PRODUCER, fresh("producer"), chosen]
    result = producer.run(*argv, env=session_env, timeout=600)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.splitlines()[-1])
    assert outcome["stored"] == len(PHOTOS) and outcome["failed"] == 0, outcome
    assert outcome["hits"][0] == "chelsea", outcome
    assert outcome["loaded"] == [], "the producer loaded model packages"


def test_cli_from_the_venv_ingests_and_searches(
    producer: Venv, session_env: dict[str, str], workers: Procs, photos: dict[str, Path]
) -> None:
    collection = fresh("producer-cli")
    paths = [str(photos[n]) for n in PHOTOS]
    ingest = producer.run("mmq", "ingest", *paths, "--collection", collection, "--wait",
                          env=session_env, timeout=600)  # fmt: skip
    assert ingest.returncode == 0, ingest.stderr
    assert f"{len(PHOTOS)} stored, 0 failed" in ingest.stdout
    search = ["mmq", "search", "--collection", collection, "--text", "a cup of coffee", "--json"]
    result = producer.run(*search, "-k", "1", env=session_env)
    assert result.returncode == 0, result.stderr
    [hit] = json.loads(result.stdout)
    assert hit["external_id"] == "coffee.png", hit


def test_producer_commands_start(producer: Venv) -> None:
    env = without_mmq_settings()
    for command in ("search", "serve"):
        result = producer.run("mmq", command, "--help", env=env)
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: mmq {command}"), command


def test_only_the_model_side_needs_the_extra(producer: Venv) -> None:
    # Every module imports in the producer's venv but the model side's, and those lack only
    # packages of the worker extra: a producer module that took to importing torch (or
    # sklearn, ...) at the top fails here.
    result = producer.run("python", "-c", IMPORT_ALL, env=without_mmq_settings(), timeout=300)
    assert result.returncode == 0, result.stderr
    failed: dict[str, str] = json.loads(result.stdout)
    for module, missing in failed.items():
        assert module.startswith(MODEL_SIDE), f"{module} needs {missing}"
        assert missing in WORKER_MODULES, f"{module} needs {missing}, not in the worker extra"
    assert "mmq.encoders.alignment_head" in failed  # the walk did reach the model side


@pytest.mark.parametrize("argv", MODEL_COMMANDS, ids=lambda argv: " ".join(argv[:2]))
def test_model_commands_say_what_to_install(producer: Venv, argv: list[str]) -> None:
    env = without_mmq_settings()
    # Nothing answers on port 1: were the check to let the command through, it could reach
    # no server (and no worker without models would take the session's tasks).
    env.update(
        MMQ_BROKER_URL="redis://127.0.0.1:1/0", MMQ_DATABASE_URL="postgresql://x@127.0.0.1:1/x"
    )
    result = producer.run("mmq", *argv, env=env)
    assert result.returncode == Unavailable.exit_code
    assert result.stderr == f"mmq {argv[0]}: unavailable: {INSTALL_HINT}\n"
    assert INSTALL_HINT.endswith("pip install 'mmq[worker]'")


def test_embedded_servers_without_configuration(producer: Venv, tmp_path: Path) -> None:
    # A producer on a laptop: no URL set, the servers start under the state folder and are
    # migrated from the scripts the wheel carries; they stop when the command exits.
    env = {**without_mmq_settings(), "MMQ_STATE_DIR": str(tmp_path / "state")}
    result = producer.run("mmq", "db", "upgrade", env=env)
    assert result.returncode == 0, result.stderr
    assert "database upgraded" in result.stdout
    assert not (tmp_path / "state" / "embedded.json").exists(), "the servers were left running"


def test_serve_from_the_venv_answers_healthz(
    producer: Venv, session_env: dict[str, str], workers: Procs
) -> None:
    port = free_port()
    argv = [producer.bin("mmq"), "serve", "--port", str(port)]
    proc = subprocess.Popen(argv, env=session_env, cwd=producer.root, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "mmq serve did not answer in 60 s"
                time.sleep(0.2)
        assert response.status_code == 200, response.text
        assert response.json()["database"] and response.json()["broker"]
        page = httpx.get(f"http://127.0.0.1:{port}/", timeout=30)  # the static files shipped
        assert page.status_code == 200 and "<html" in page.text.lower(), page.text[:200]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

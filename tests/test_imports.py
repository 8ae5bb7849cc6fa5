"""A web backend can enqueue with mmq.Client without loading a model, torch or the ORM."""

import subprocess
import sys
from pathlib import Path

from tests.support.procs import without_mmq_settings

HEAVY = ("torch", "transformers", "torchvision", "mmq.store", "mmq.encoders", "workers", "PIL")
FIND_HEAVY = (
    f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}]\n"
    "assert not heavy, heavy\n"
    "assert 'sqlalchemy' not in sys.modules\n"
)


def test_importing_the_client_loads_nothing_heavy() -> None:
    # docs/design.md: `import mmq.client` loads neither torch, transformers nor SQLAlchemy.
    code = "import sys, mmq, mmq.client\n" + FIND_HEAVY
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_client_with_configured_urls_loads_nothing_heavy_and_connects_nowhere(
    tmp_path: Path,
) -> None:
    # A producer builds its Client at start-up: that too loads no model, no torch and no
    # ORM, and opens no connection (port 1 refuses any) and starts no embedded server.
    env = without_mmq_settings()
    env.update(
        MMQ_STATE_DIR=str(tmp_path / "state"),
        MMQ_BROKER_URL="redis://127.0.0.1:1/0",
        MMQ_DATABASE_URL="postgresql://mmq@127.0.0.1:1/mmq",
    )
    code = (
        "import sys\n"
        "from mmq.client import Client\n"
        "from mmq.schemas import IngestItem, SearchRequest\n"
        "client = Client()\n"
        "assert client.urls.result_backend == 'redis://127.0.0.1:1/0', client.urls\n"
        "client.close()\n"
    ) + FIND_HEAVY
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
    assert not (tmp_path / "state").exists()  # no embedded server was started


def test_importing_the_workers_connects_to_nothing_and_loads_no_model(tmp_path: Path) -> None:
    env = without_mmq_settings()
    env["MMQ_STATE_DIR"] = str(tmp_path)
    code = (
        "import sys, workers.app, workers.tasks, mmq.services\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "from workers import runtime\n"
        "assert runtime._runtime is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    assert list(tmp_path.iterdir()) == []  # no embedded server was started


def test_configured_urls_are_used_as_given() -> None:
    from mmq.config import Settings
    from mmq.embedded import resolve_urls

    settings = Settings(
        broker_url="redis://:secret@127.0.0.1:6390/2",
        database_url="postgresql://u:p@127.0.0.1:5499/db",
        result_backend=None,
    )
    urls = resolve_urls(settings)  # no server is started and nothing is contacted
    assert urls.broker_url == urls.result_backend == "redis://:secret@127.0.0.1:6390/2"
    assert urls.database_url == "postgresql://u:p@127.0.0.1:5499/db"

"""A web backend can enqueue with mmq.Client without loading a model, torch or the ORM."""

import subprocess
import sys

HEAVY = ("torch", "transformers", "torchvision", "mmq.store", "mmq.encoders", "workers", "PIL")


def test_importing_the_client_loads_nothing_heavy() -> None:
    code = (
        "import sys, mmq, mmq.client\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}]\n"
        "assert not heavy, heavy\n"
        "assert 'sqlalchemy' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_acceptance_one_liner() -> None:
    subprocess.run(
        [sys.executable, "-c", "import sys, mmq.client; assert 'torch' not in sys.modules"],
        check=True,
    )


def test_importing_the_workers_connects_to_nothing_and_loads_no_model(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}
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

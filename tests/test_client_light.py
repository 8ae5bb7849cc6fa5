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

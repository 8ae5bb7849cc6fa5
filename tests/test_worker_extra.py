"""The commands that load a model ask for the `worker` extra in one line when it is missing
(tests/test_packaging.py runs them in a venv without it)."""

from __future__ import annotations

import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from mmq.cli import build_parser, main, worker_extra
from mmq.errors import Unavailable

ROOT = Path(__file__).resolve().parents[1]


def extra(name: str) -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {canonicalize_name(Requirement(s).name) for s in project["optional-dependencies"][name]}


def test_worker_modules_are_the_worker_extra() -> None:
    # Import names by the distribution that installs them (all installed in the dev venv).
    provided = {
        canonicalize_name(dist)
        for module in worker_extra.WORKER_MODULES
        for dist in packages_distributions().get(module, [])
    }
    assert provided == extra("worker")
    assert worker_extra.missing_worker_modules() == []


@pytest.mark.parametrize(
    ("argv", "needs"),
    [
        (["worker"], True),
        (["demo"], True),
        (["serve", "--demo"], True),
        (["train", "--images", "i", "--captions", "c", "--out", "o"], True),
        (["eval", "--images", "i", "--captions", "c"], True),
        (["serve"], False),
        (["search", "--collection", "c", "--text", "t"], False),
        (["ingest", "x", "--collection", "c"], False),
        (["status", "j"], False),
        (["db", "upgrade"], False),
    ],
)
def test_which_commands_need_it(argv: list[str], needs: bool) -> None:
    assert worker_extra.needs_worker_extra(build_parser().parse_args(argv)) is needs


def test_missing_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(worker_extra, "WORKER_MODULES", ("torch", "no_such_module_here"))
    assert worker_extra.missing_worker_modules() == ["no_such_module_here"]

    def started(args: object) -> int:
        raise AssertionError("the worker started without its packages")

    # The check comes before the command's own code: nothing starts.
    monkeypatch.setattr("mmq.cli.worker.run_worker", started)
    assert main(["worker"]) == Unavailable.exit_code
    assert capsys.readouterr().err == (
        "mmq worker: unavailable: this command needs the model packages: "
        "pip install 'mmq[worker]'\n"
    )

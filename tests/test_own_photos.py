"""README's "Your own photos", as a new user runs it: from a directory outside the clone,
with a fresh state directory (a fresh home), no URLs set, workers in terminals of their own.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmq.embedded import STATE_FILE, _pid_alive
from mmq.samples import write_photos
from tests.support.procs import without_mmq_settings

pytestmark = pytest.mark.slow  # starts its own servers and workers, twice

REPO = Path(__file__).resolve().parents[1]


def readme_quick_start() -> list[str]:
    """The commands of README's "Your own photos" block, comments stripped."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("### Your own photos", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line.split("  #", 1)[0].strip() for line in block.splitlines() if line.strip()]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    write_photos(home / "Pictures")
    return home


def user_env(home: Path) -> dict[str, str]:
    env = without_mmq_settings()
    env.pop("XDG_STATE_HOME", None)
    env["HOME"] = str(home)  # so the state directory is ~/.local/state/mmq, fresh
    return env


def shell(command: str, home: Path) -> subprocess.Popen[str]:
    """`command` in bash as the user types it, from the clone (where `.venv` is)."""
    return subprocess.Popen(
        ["bash", "-c", command],
        cwd=REPO,
        env=user_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def in_a_terminal(
    argv: list[str], home: Path, log: Path, cwd: Path = REPO
) -> subprocess.Popen[str]:
    """A long-running command in a terminal of its own: its own process group, its output
    in `log` (a pipe nobody reads would fill and block it)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=user_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )


def run(command: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = shell(command, home)
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def ctrl_c(proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Ctrl-C in the process's terminal: SIGINT to its whole process group."""
    os.killpg(proc.pid, signal.SIGINT)
    proc.communicate(timeout=timeout)


def server_pids(state: Path) -> list[int]:
    raw = json.loads((state / STATE_FILE).read_text())
    return [raw["postgres_pid"], raw["valkey_pid"]]


def wait_dead(pids: list[int], timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_pid_alive(p) for p in pids):
            return True
        time.sleep(0.1)
    return False


def first_hit(search_stdout: str) -> str:
    # "   1. 0.524  image  chelsea.png"
    match = re.search(r"^\s+1\. [\d.]+\s+\w+\s+(\S+)", search_stdout, re.M)
    assert match, search_stdout
    return match.group(1)


def test_the_readme_quick_start_from_outside_the_clone(home: Path) -> None:
    if not (REPO / ".venv" / "bin" / "activate").exists():
        pytest.skip("README's commands use the clone's .venv (make install)")
    activate, cd, worker_line, ingest, search, status = readme_quick_start()
    assert activate == ". .venv/bin/activate" and cd.startswith("cd ")
    assert "mmq worker" in worker_line and status == "mmq status <job id>"
    prefix = f"{activate} && {cd} && "
    log = home / "worker.log"
    worker = in_a_terminal(["bash", "-c", prefix + worker_line], home, log)
    try:
        done = run(prefix + ingest, home)
        assert done.returncode == 0, done.stderr[-3000:]
        state = home / ".local" / "state" / "mmq"
        started = f"mmq: started PostgreSQL and Valkey under {state}"
        assert started in done.stderr + log.read_text()  # by whichever came first
        job_id = re.search(r"^ingest job (\S+)$", done.stderr, re.M)
        assert job_id, done.stderr
        assert re.search(r"^14 stored, 0 failed in collection 'mine'", done.stdout, re.M)

        found = run(prefix + search, home)
        assert found.returncode == 0, found.stderr
        assert first_hit(found.stdout) == "chelsea.png"

        shown = run(prefix + status.replace("<job id>", job_id.group(1)), home)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["state"] == "done"
        pids = server_pids(state)
    finally:
        ctrl_c(worker)
    assert worker.returncode == 0
    assert wait_dead(pids), "the last mmq process out stops the servers"
    assert not (state / STATE_FILE).exists()


def mmq_in(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mmq.cli", *args],
        cwd=home,
        env=user_env(home),
        capture_output=True,
        text=True,
        timeout=300,
    )


def worker_in(home: Path, queue: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "mmq.cli", "worker", "--queues", queue]
    return in_a_terminal(argv, home, home / f"worker-{queue}.log", cwd=home)


def test_stopping_the_worker_that_started_the_servers_leaves_the_other_working(
    home: Path,
) -> None:
    state = home / ".local" / "state" / "mmq"
    photos = str(home / "Pictures")
    first = worker_in(home, "ingest")
    second = None
    try:
        while not (state / STATE_FILE).exists():  # the first worker starts the servers
            assert first.poll() is None, (home / "worker-ingest.log").read_text()
            time.sleep(0.2)
        second = worker_in(home, "search")
        done = mmq_in(home, "ingest", photos, "--collection", "mine", "--wait")
        assert done.returncode == 0, done.stderr[-3000:]
        pids = server_pids(state)
        ctrl_c(first)
        assert all(_pid_alive(p) for p in pids), "the search worker still uses the servers"
        found = mmq_in(home, "search", "--collection", "mine", "--text", "a cat",
                       "--if-no-worker", "wait")  # fmt: skip
        assert found.returncode == 0, found.stderr
        assert first_hit(found.stdout) == "chelsea.png"
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                ctrl_c(proc)
    assert wait_dead(pids)

"""Embedded servers: found and reused by later processes, stopped by the one that started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmq.embedded import STATE_FILE, _pid_alive

pytestmark = pytest.mark.slow  # each test starts (and stops) its own PostgreSQL and Valkey

START = """
import json, sys
from pathlib import Path
from mmq.config import Settings
from mmq.embedded import resolve_urls
urls = resolve_urls(Settings(state_dir=Path(sys.argv[1]), broker_url=None, database_url=None,
                             result_backend=None))
print(json.dumps(urls.__dict__), flush=True)
if len(sys.argv) > 2:
    sys.stdin.readline()  # stay alive until told to exit
"""


def start(state: Path, *, hold: bool) -> tuple[subprocess.Popen[str], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", START, str(state)] + (["hold"] if hold else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    return proc, json.loads(proc.stdout.readline())


def pids(state: Path) -> tuple[int, int]:
    raw = json.loads((state / STATE_FILE).read_text())
    return raw["postgres_pid"], raw["valkey_pid"]


def wait_dead(pid: int) -> bool:
    for _ in range(200):
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def test_second_process_reuses_and_owner_stops(state: Path) -> None:
    owner, owner_urls = start(state, hold=True)
    server_pids = pids(state)
    visitor, visitor_urls = start(state, hold=False)
    assert visitor.wait(timeout=60) == 0
    assert visitor_urls == owner_urls
    assert all(_pid_alive(p) for p in server_pids), "a visitor must not stop the servers"
    owner.communicate("\n", timeout=60)
    assert all(wait_dead(p) for p in server_pids), "the owner stops what it started"
    assert not (state / STATE_FILE).exists()


def test_orphaned_servers_are_adopted(state: Path) -> None:
    owner, owner_urls = start(state, hold=True)
    server_pids = pids(state)
    owner.send_signal(signal.SIGKILL)
    owner.wait(timeout=30)
    assert all(_pid_alive(p) for p in server_pids)
    heir, heir_urls = start(state, hold=False)
    assert heir.wait(timeout=60) == 0
    assert heir_urls == owner_urls  # the running servers were reused, not restarted
    assert all(wait_dead(p) for p in server_pids), "the heir owns and stops them"

"""Embedded servers: found and reused by later processes, migrated when started, stopped by
the last process using them, and out of reach of signals sent to the one that started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
import redis

from mmq.embedded import MAX_CONNECTIONS, STATE_FILE, _pid_alive, shared_buffers_mb

pytestmark = pytest.mark.slow  # each test starts (and stops) its own PostgreSQL and Valkey

START = """
import json, signal, sys
from pathlib import Path
# Ctrl-C as in a terminal of its own: a test process that ignores SIGINT (some library of
# the session may have set it so) would otherwise pass SIG_IGN on to this child.
signal.signal(signal.SIGINT, signal.default_int_handler)
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
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # its own process group, as a command in its own terminal
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


def test_second_process_reuses_and_the_last_one_out_stops(state: Path) -> None:
    owner, owner_urls = start(state, hold=True)
    server_pids = pids(state)
    visitor, visitor_urls = start(state, hold=False)
    _, visitor_err = visitor.communicate(timeout=60)
    assert visitor.returncode == 0
    assert visitor_urls == owner_urls
    assert "started" not in visitor_err, "reusing servers is silent"
    assert all(_pid_alive(p) for p in server_pids), "a visitor must not stop the servers"
    _, owner_err = owner.communicate("\n", timeout=60)
    assert f"mmq: started PostgreSQL and Valkey under {state.resolve()}" in owner_err
    assert all(wait_dead(p) for p in server_pids), "the last one out stops them"
    assert not (state / STATE_FILE).exists()


def test_servers_outlive_the_process_that_started_them(state: Path) -> None:
    starter, urls = start(state, hold=True)
    server_pids = pids(state)
    user, _ = start(state, hold=True)
    starter.communicate("\n", timeout=60)  # the first worker is stopped: an orderly exit
    assert all(_pid_alive(p) for p in server_pids), "another process still uses them"
    assert redis.Redis.from_url(urls["broker_url"]).ping()
    user.communicate("\n", timeout=60)
    assert all(wait_dead(p) for p in server_pids)


def test_ctrl_c_in_the_starters_terminal_does_not_reach_the_servers(state: Path) -> None:
    starter, urls = start(state, hold=True)
    server_pids = pids(state)
    user, _ = start(state, hold=True)
    os.killpg(starter.pid, signal.SIGINT)  # Ctrl-C: the whole foreground process group
    starter.wait(timeout=60)  # as the other waits here: a loaded CI machine is slow
    assert all(_pid_alive(p) for p in server_pids)
    assert redis.Redis.from_url(urls["broker_url"]).ping()
    user.communicate("\n", timeout=60)
    assert all(wait_dead(p) for p in server_pids)


def test_started_servers_have_the_schema(state: Path) -> None:
    owner, urls = start(state, hold=True)
    try:
        url = urls["database_url"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            found = conn.execute("SELECT to_regclass('items'), to_regclass('ingest_jobs')")
            assert found.fetchone() == ("items", "ingest_jobs")
    finally:
        owner.communicate("\n", timeout=60)


def test_started_postgres_is_sized_for_indexes_and_workers_and_keeps_its_pid_file(
    state: Path,
) -> None:
    owner, urls = start(state, hold=True)
    try:
        url = urls["database_url"].replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(url) as conn:
            found = conn.execute(
                "SELECT setting::bigint * current_setting('block_size')::bigint / 1048576,"
                " current_setting('max_connections')::int"
                " FROM pg_settings WHERE name = 'shared_buffers'"
            ).fetchone()
        assert found == (shared_buffers_mb(), MAX_CONNECTIONS)
        # The restart that sized it changed the server's pid: the state file follows.
        server_pids = pids(state)
        assert all(_pid_alive(p) for p in server_pids)
    finally:
        owner.communicate("\n", timeout=60)
    assert all(wait_dead(p) for p in server_pids)


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

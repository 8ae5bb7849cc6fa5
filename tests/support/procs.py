"""Worker and server processes in tests: their environment, liveness and memory."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

Procs = Sequence[subprocess.Popen[bytes]]


def without_mmq_settings() -> dict[str, str]:
    """This process's environment without any MMQ_* setting: a child given it starts from
    the defaults (and its own servers) unless told otherwise."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MMQ_")}


def all_alive(procs: Procs) -> bool:
    return all(p.poll() is None for p in procs)


def peak_memory_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) since it started or since
    `reset_peak_memory`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def resident_memory_mb(pid: int) -> float:
    """The process's resident memory now (VmRSS)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def reset_peak_memory(pid: int) -> None:
    """Start the process's peak resident memory again from its current size (Linux)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")

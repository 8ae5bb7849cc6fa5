"""The `mmq` command as a user runs it: a subprocess of this interpreter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping


def mmq(
    *args: str,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """Run `mmq ARGS...` (with `env` as its whole environment when given) and capture its
    output. With `check`, a non-zero exit raises CalledProcessError."""
    return subprocess.run(
        [sys.executable, "-m", "mmq.cli", *args],
        capture_output=True,
        text=True,
        env=None if env is None else dict(env),
        check=check,
        timeout=timeout,
    )

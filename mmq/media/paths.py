"""Paths from untrusted requests: readable only under the configured ingest roots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmq.errors import InvalidInput


def confined(path: str, roots: Sequence[Path]) -> Path:
    """The real path of `path` if it lies under one of `roots` (already resolved).

    Resolved first, so neither `..` nor a symlink planted under a root leads out of it."""
    if "\x00" in path:
        raise InvalidInput("path contains a NUL byte")
    real = Path(path).resolve()
    if not any(real.is_relative_to(root) for root in roots):
        # The roots are the worker's, not the producer's: say where they are set.
        raise InvalidInput(
            f"path {path[:200]!r} is outside the worker's ingest roots ("
            + ", ".join(str(r) for r in roots)
            + "): set MMQ_INGEST_ROOTS where `mmq worker` runs and restart it"
        )
    return real

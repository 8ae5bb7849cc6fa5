"""Names for what a test creates in the shared servers, so tests never meet each other's."""

from __future__ import annotations

import uuid


def fresh(prefix: str) -> str:
    """A collection name no other test uses: `prefix-` and 8 random hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"

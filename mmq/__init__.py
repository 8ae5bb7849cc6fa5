"""mmq: asynchronous multimodal retrieval. Producers use `mmq.Client`."""

from __future__ import annotations

from typing import Any

__all__ = ["Client"]


def __getattr__(name: str) -> Any:
    # Lazy, so `import mmq.config` in a worker does not pull in the producer side.
    if name == "Client":
        from mmq.client import Client

        return Client
    raise AttributeError(name)

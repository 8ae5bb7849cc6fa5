"""Model registry: one function turns a model name into an encoder, or raises."""

from __future__ import annotations

from pathlib import Path

from mmq.encoders.base import Encoder
from mmq.errors import BadRequest

__all__ = ["Encoder", "get_encoder"]


def get_encoder(name: str, device: str = "auto", cache_dir: Path | None = None) -> Encoder:
    """`lite` (offline default: the towers and the shipped alignment head), `lite-conse`
    (the towers joined by ConSE alone), `lite+head:<dir>` (a head from `mmq train`) or
    `clip:<hf-name-or-path>`. Unknown names raise; not loaded yet."""
    if name.startswith("lite+head:") and len(name) > len("lite+head:"):
        from mmq.encoders.lite import LiteEncoder

        return LiteEncoder(name.removeprefix("lite+head:"), device=device, cache_dir=cache_dir)
    if name == "lite":
        from mmq.encoders.lite import LiteEncoder

        return LiteEncoder(device=device, cache_dir=cache_dir)
    if name == "lite-conse":
        from mmq.encoders.lite_conse import LiteConseEncoder

        return LiteConseEncoder(device=device, cache_dir=cache_dir)
    if name.startswith("clip:") and len(name) > len("clip:"):
        from mmq.encoders.clip import ClipEncoder

        return ClipEncoder(name.removeprefix("clip:"), device=device)
    raise BadRequest(
        f"unknown model {name!r}: use 'lite', 'lite-conse', 'lite+head:<dir>' "
        "or 'clip:<hf-name-or-path>'"
    )

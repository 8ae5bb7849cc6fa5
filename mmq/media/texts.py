"""Texts: non-empty, bounded, printable."""

from __future__ import annotations

import unicodedata

from mmq.errors import InvalidInput


def clean_text(text: object, *, max_chars: int) -> str:
    """Normalise a caption or query; refuse empty, oversized or non-string input."""
    if not isinstance(text, str):
        raise InvalidInput(f"text must be a string, got {type(text).__name__}")
    # Control whitespace (\r, \v, \f, U+0085) separates words: keep it for split() to collapse.
    text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    # NFC after filtering, so a dropped control character cannot leave a decomposed pair,
    # and the same caption typed two ways hashes and embeds the same.
    text = unicodedata.normalize("NFC", text)
    text = " ".join(text.split())
    if not text:
        raise InvalidInput("text is empty")
    if len(text) > max_chars:
        raise InvalidInput(f"text has {len(text)} characters, the limit is {max_chars}")
    return text

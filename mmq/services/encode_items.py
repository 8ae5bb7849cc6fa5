"""Items of an ingest request → their image and text vectors. Each item that cannot be
used gets its own failed result, and the rest go on.

Images go to the encoder a few at a time as they are decoded: with a batching encoder
(the threads pool) the model works on the first ones while this thread decodes the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import partial

import numpy as np
from pydantic import ValidationError

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.encoders.base import default_batch_size
from mmq.errors import InvalidInput, describe
from mmq.media import Picture, clean_text, confined, decode_image, read_image_bytes
from mmq.media.originals import image_suffix
from mmq.schemas import IngestItem, ItemResult, RawIngestRequest, describe_errors
from mmq.services.originals import Original, keeps

log = logging.getLogger(__name__)

# Images per submission to the encoder: small, so the model starts early; the batching
# encoder merges submissions from all tasks into batches of MMQ_ENCODE_BATCH_SIZE.
SUBMIT_EVERY = 4

# Exceptions that end an ingest call instead of failing the item they hit.
Interrupts = tuple[type[BaseException], ...]


@dataclass
class DecodedItem:
    index: int
    item: IngestItem
    image: Picture | None  # an EncodedJpeg where the encoder decodes JPEGs itself
    text: str | None
    content_hash: str
    uri: str | None
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    original: Original | None = None  # to keep in the media store once the item is good


@dataclass
class Submitted:
    """Decoded items whose images are with the encoder."""

    items: list[DecodedItem]
    vectors: Future[np.ndarray]


def encode_items(
    request: RawIngestRequest,
    *,
    encoder: Encoder,
    settings: Settings,
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> tuple[list[DecodedItem], list[tuple[int, IngestItem]]]:
    """The request's images, texts and pairs, decoded and encoded, and its videos (left to
    `services/video.py`). An item that cannot be used gets its end in `results` instead."""
    decoded: list[DecodedItem] = []
    videos: list[tuple[int, IngestItem]] = []
    submitted: list[Submitted] = []
    waiting: list[DecodedItem] = []
    for index, raw in enumerate(request.items):
        try:
            item = IngestItem.model_validate(raw)
        except ValidationError as exc:
            results[index] = invalid_item(index, raw, exc)
            continue
        try:
            check_metadata(item, settings)
            if item.is_video:
                videos.append((index, item))
                continue
            d = decode_item(index, item, settings, encoder)
        except InvalidInput as exc:
            results[index] = failed(index, item, exc)
            continue
        decoded.append(d)
        if d.image is not None:
            waiting.append(d)
        if len(waiting) >= SUBMIT_EVERY:
            submitted.append(_submit_images(encoder, waiting))
            waiting = []
    if waiting:
        submitted.append(_submit_images(encoder, waiting))
    for batch in submitted:
        _store_vectors(encoder, "image", batch.items, batch.vectors.result, results, interrupts)
    batch_size = settings.encode_batch_size or default_batch_size(encoder.device)
    _encode_texts(encoder, decoded, results, batch_size, interrupts)
    return decoded, videos


def decode_item(index: int, item: IngestItem, settings: Settings, encoder: Encoder) -> DecodedItem:
    """Read and check the item's image and text (InvalidInput says why one cannot be used)."""
    digest = hashlib.sha256()
    image = text = uri = original = None
    if item.image_path is not None or item.image_bytes is not None:
        path = None
        if item.image_path is not None:
            path = confined(item.image_path, settings.resolved_ingest_roots)
            data = read_image_bytes(path, max_bytes=settings.max_image_bytes)
            uri = item.image_path
        else:
            data = item.image_bytes or b""
        image = decode_image(
            data,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            min_side=encoder.decode_side,
            keep_jpeg=encoder.decodes_jpeg,
        )
        digest.update(b"image:" + hashlib.sha256(data).digest())
        if keeps(settings, path):  # the bytes that were decoded, whatever the file is now
            original = Original(data, image_suffix(data))
    if item.text is not None:
        text = clean_text(item.text, max_chars=settings.max_text_chars)
        digest.update(b"text:" + text.encode())
    return DecodedItem(index, item, image, text, digest.hexdigest(), uri, original=original)


def check_metadata(item: IngestItem, settings: Settings) -> None:
    size = len(json.dumps(item.metadata).encode())
    if size > settings.max_metadata_bytes:
        raise InvalidInput(f"metadata is {size} bytes, the limit is {settings.max_metadata_bytes}")


def _submit_images(encoder: Encoder, batch: list[DecodedItem]) -> Submitted:
    return Submitted(batch, encoder.submit_images([d.image for d in batch if d.image is not None]))


def _encode_texts(
    encoder: Encoder,
    decoded: list[DecodedItem],
    results: dict[int, ItemResult],
    batch_size: int,
    interrupts: Interrupts,
) -> None:
    todo = [d for d in decoded if d.text is not None]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        texts = [d.text for d in batch if d.text is not None]
        encode = partial(encoder.encode_texts, texts)
        _store_vectors(encoder, "text", batch, encode, results, interrupts)


def _store_vectors(
    encoder: Encoder,
    modality: str,
    batch: list[DecodedItem],
    encode: Callable[[], np.ndarray],
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> None:
    """The batch's vectors from `encode`; if the batch failed, each item is retried alone."""
    try:
        vectors = encode()
    except interrupts:
        raise
    except Exception:
        log.exception("batch encode failed; isolating the bad item")
        _encode_alone(encoder, modality, batch, results, interrupts)
        return
    for d, vector in zip(batch, vectors, strict=True):
        d.vectors[modality] = vector


def _encode_alone(
    encoder: Encoder,
    modality: str,
    batch: list[DecodedItem],
    results: dict[int, ItemResult],
    interrupts: Interrupts,
) -> None:
    for d in batch:
        try:
            if modality == "image" and d.image is not None:
                d.vectors["image"] = encoder.encode_images([d.image])[0]
            elif modality == "text" and d.text is not None:
                d.vectors["text"] = encoder.encode_texts([d.text])[0]
        except interrupts:
            raise
        except Exception as exc:
            results[d.index] = failed(d.index, d.item, exc)


def failed(index: int, item: IngestItem, exc: BaseException) -> ItemResult:
    """The end of an item that could not be stored, with why (`mmq.errors.describe`)."""
    return ItemResult(
        index=index,
        source=item.source,
        external_id=item.external_id,
        status="failed",
        error=describe(exc),
    )


def invalid_item(index: int, raw: object, exc: ValidationError) -> ItemResult:
    """The end of an item that is not a valid IngestItem, with what is wrong in it."""
    fields = raw if isinstance(raw, dict) else {}
    external_id = fields.get("external_id")
    external_id = _printable(external_id[:512]) if isinstance(external_id, str) else None
    source = fields.get("image_path") or fields.get("video_path") or external_id
    error = InvalidInput(f"invalid item: {describe_errors(exc)}")
    return ItemResult(
        index=index,
        source=_printable(str(source)[:200]) if source else f"<item {index}>",
        external_id=external_id,
        status="failed",
        error=describe(error),
    )


def _printable(text: str) -> str:
    """An invalid item's own strings, made safe to store and show in its result."""
    text = text.encode("utf-8", "replace").decode()
    return "".join(ch if ch.isprintable() else "?" for ch in text)

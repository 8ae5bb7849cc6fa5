"""Ingest: decode → encode in batches → fuse → one upsert. Bad items fail alone."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydantic import ValidationError
from sqlalchemy.orm import Session

from mmq.config import Settings
from mmq.encoders import Encoder
from mmq.fusion import fused_dim
from mmq.media import MediaError, clean_text, decode_image, read_image_bytes
from mmq.schemas import IngestItem, IngestResult, ItemResult, RawIngestRequest
from mmq.services.vectors import item_vector
from mmq.store import repository

log = logging.getLogger(__name__)


@dataclass
class _Decoded:
    index: int
    item: IngestItem
    image: Image.Image | None
    text: str | None
    content_hash: str
    uri: str | None
    vectors: dict[str, np.ndarray]


def ingest(
    *, encoder: Encoder, session: Session, request: RawIngestRequest, settings: Settings
) -> IngestResult:
    """Store every valid item of the request; each invalid one gets its own error."""
    fusion = request.fusion or settings.default_fusion
    collection = repository.ensure_collection(
        session=session,
        name=request.collection,
        model=encoder.name,
        model_version=encoder.version,
        dim=fused_dim(fusion, encoder.dim),
        fusion=fusion,
        hnsw_m=settings.hnsw_m,
        hnsw_ef_construction=settings.hnsw_ef_construction,
    )
    session.commit()  # a new collection is visible (and its creation lock released) at once
    results: dict[int, ItemResult] = {}
    decoded: list[_Decoded] = []
    for index, raw in enumerate(request.items):
        try:
            item = IngestItem.model_validate(raw)
        except ValidationError as exc:
            results[index] = _invalid(index, raw, exc)
            continue
        try:
            decoded.append(_decode(index, item, settings))
        except MediaError as exc:
            results[index] = _failed(index, item, str(exc))

    _encode_all(encoder, decoded, results, settings.encode_batch_size)

    rows: list[tuple[_Decoded, repository.ItemRow]] = []
    for d in decoded:
        if d.index in results:
            continue
        try:
            vector = item_vector(
                d.vectors,
                collection_fusion=collection.fusion,  # type: ignore[arg-type]
                weights=request.weights,
            )
        except ValueError as exc:
            results[d.index] = _failed(d.index, d.item, str(exc))
            continue
        rows.append((d, _row(d, vector)))
    ids = repository.upsert_items(session=session, collection=collection, rows=[r for _, r in rows])
    session.commit()
    for d, row in rows:
        results[d.index] = ItemResult(
            index=d.index,
            source=d.item.source,
            external_id=d.item.external_id,
            status="stored",
            item_id=ids[row.key],
        )
    return IngestResult(collection=collection.name, items=[results[i] for i in sorted(results)])


def _decode(index: int, item: IngestItem, settings: Settings) -> _Decoded:
    digest = hashlib.sha256()
    image = text = uri = None
    if item.image_path is not None or item.image_bytes is not None:
        if item.image_path is not None:
            data = read_image_bytes(item.image_path, max_bytes=settings.max_image_bytes)
            uri = item.image_path
        else:
            data = item.image_bytes or b""
        image = decode_image(
            data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels
        )
        digest.update(b"image:" + hashlib.sha256(data).digest())
    if item.text is not None:
        text = clean_text(item.text, max_chars=settings.max_text_chars)
        digest.update(b"text:" + text.encode())
    size = len(json.dumps(item.metadata).encode())
    if size > settings.max_metadata_bytes:
        raise MediaError(f"metadata is {size} bytes, the limit is {settings.max_metadata_bytes}")
    return _Decoded(index, item, image, text, digest.hexdigest(), uri, {})


def _encode_all(
    encoder: Encoder, decoded: list[_Decoded], results: dict[int, ItemResult], batch_size: int
) -> None:
    """Encode images then texts in batches; a batch that fails is retried item by item."""
    for modality in ("image", "text"):
        todo = [d for d in decoded if getattr(d, modality) is not None]
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            try:
                vectors = _encode(encoder, modality, batch)
            except Exception:
                log.exception("batch encode failed; isolating the bad item")
                vectors = None
            for i, d in enumerate(batch):
                if vectors is not None:
                    d.vectors[modality] = vectors[i]
                    continue
                try:
                    d.vectors[modality] = _encode(encoder, modality, [d])[0]
                except Exception as exc:
                    results[d.index] = _failed(d.index, d.item, f"{modality} encoder: {exc}")


def _encode(encoder: Encoder, modality: str, batch: list[_Decoded]) -> np.ndarray:
    if modality == "image":
        return encoder.encode_images([d.image for d in batch if d.image is not None])
    return encoder.encode_texts([d.text for d in batch if d.text is not None])


def _row(d: _Decoded, vector: np.ndarray) -> repository.ItemRow:
    key = f"ext:{d.item.external_id}" if d.item.external_id else f"sha256:{d.content_hash}"
    return repository.ItemRow(
        key=key,
        external_id=d.item.external_id,
        kind=d.item.kind,
        uri=d.uri,
        text=d.text,
        metadata=d.item.metadata,
        content_hash=d.content_hash,
        vector=vector,
        image_vector=d.vectors.get("image") if d.item.kind == "pair" else None,
        text_vector=d.vectors.get("text") if d.item.kind == "pair" else None,
    )


def _invalid(index: int, raw: object, exc: ValidationError) -> ItemResult:
    fields = raw if isinstance(raw, dict) else {}
    external_id = fields.get("external_id")
    external_id = external_id if isinstance(external_id, str) else None
    source = fields.get("image_path") or external_id or f"<item {index}>"
    errors = "; ".join(
        f"{'.'.join(map(str, e['loc'])) or 'item'}: {e['msg']}" for e in exc.errors()
    )
    return ItemResult(
        index=index,
        source=str(source)[:200],
        external_id=external_id,
        status="failed",
        error=f"invalid item: {errors}",
    )


def _failed(index: int, item: IngestItem, error: str) -> ItemResult:
    return ItemResult(
        index=index,
        source=item.source,
        external_id=item.external_id,
        status="failed",
        error=error,
    )

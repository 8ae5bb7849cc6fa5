"""SQLAlchemy tables. The schema itself changes only through Alembic migrations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import (
    BigInteger,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Integer,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Collection(Base):
    """A named set of items bound to one model (name + version) and one fusion method."""

    __tablename__ = "collections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text, unique=True)
    model: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(Integer)  # width of `items.vector` in this collection
    fusion: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Item(Base):
    """One stored image, text, pair or video, with its vector.

    `vector` is the vector searched (image, text, the pair's fused vector, or the video's
    mean frame vector; videos are searched through their segments). It is an
    untyped `vector` column so that collections of different widths share the table; each
    collection gets its own partial HNSW index over `vector::vector(dim)`.
    """

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("collection_id", "key", name="items_collection_key"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    # Idempotency key: "ext:<external_id>" or "sha256:<content hash>".
    key: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    uri: Mapped[str | None] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB)
    content_hash: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(Text)
    model_version: Mapped[str] = mapped_column(Text)
    dim: Mapped[int] = mapped_column(Integer)
    vector: Mapped[Any] = mapped_column(Vector())
    image_vector: Mapped[Any | None] = mapped_column(Vector())
    text_vector: Mapped[Any | None] = mapped_column(Vector())
    duration_s: Mapped[float | None] = mapped_column(Double)  # videos only
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Segment(Base):
    """A time range of a video item, with the mean vector of its sampled frames.

    `collection_id` repeats the item's so that each collection gets its own partial HNSW
    index over its segments, as it does over its items.
    """

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("item_id", "ordinal", name="segments_item_ordinal"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    collection_id: Mapped[int] = mapped_column(ForeignKey("collections.id", ondelete="CASCADE"))
    ordinal: Mapped[int] = mapped_column(Integer)
    start_s: Mapped[float] = mapped_column(Double)
    end_s: Mapped[float] = mapped_column(Double)
    keyframe_s: Mapped[float] = mapped_column(Double)
    vector: Mapped[Any] = mapped_column(Vector())


class Event(Base):
    """A user's interaction with an item (view, like, cart, purchase, ...), weighted.

    Written by producers (mmq/jobs/events.py); items are named by collection name and
    external id, so events may come before their items are ingested."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    collection: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str] = mapped_column(Text)
    external_id: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    weight: Mapped[float] = mapped_column(Double)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ApiKeyRow(Base):
    """An HTTP API key (mmq/store/api_keys.py): its public prefix and the SHA-256 of the
    whole key, never the key itself; the role and the collections it may see."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    prefix: Mapped[str] = mapped_column(Text, unique=True)
    key_hash: Mapped[str] = mapped_column(Text, unique=True)
    role: Mapped[str] = mapped_column(Text)
    collections: Mapped[list[str]] = mapped_column(ARRAY(Text))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

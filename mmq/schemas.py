"""Wire format: the JSON that travels between producers and workers.

Messages are JSON only (never pickle). Image and video bytes travel base64-encoded; for
large videos, send a path the workers can read instead.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ItemKind = Literal["image", "text", "pair", "video"]
FusionName = Literal["sum", "concat", "attention", "autoencoder"]
# "unknown": an id that is no job: never sent, or its rows pruned (MMQ_JOB_RETENTION_DAYS),
# or a search whose record expired with its result (MMQ_RESULT_EXPIRES_S).
JobState = Literal["queued", "running", "done", "failed", "unknown"]
ALL_KINDS: tuple[ItemKind, ...] = ("image", "text", "pair", "video")

MAX_FILTER_CHARS = 64 * 1024
COLLECTION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,62}$"


def _unstorable(value: object) -> str | None:
    """Why PostgreSQL could not store this string, or a string inside it; None if it can."""
    if isinstance(value, str):
        if "\x00" in value:
            return "a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "an unpaired surrogate (invalid UTF-8)"
        return None
    if isinstance(value, dict):
        return next((r for k, v in value.items() if (r := _unstorable(k) or _unstorable(v))), None)
    if isinstance(value, list):
        return next((r for v in value if (r := _unstorable(v))), None)
    return None


def describe_errors(exc: ValidationError) -> str:
    """A validation error as one line, field by field; an error of the whole request by its
    message alone. Our own checks raise ValueError, which pydantic prefixes with
    "Value error, ": that prefix is noise here."""
    parts = []
    for e in exc.errors():
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{'.'.join(map(str, e['loc']))}: {msg}" if e["loc"] else msg)
    return "; ".join(parts)


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")


class IngestItem(_Wire):
    """One thing to store: an image, a text, an image+text pair, or a video."""

    image_path: str | None = None
    image_bytes: bytes | None = None
    text: str | None = None
    video_path: str | None = None
    video_bytes: bytes | None = None
    external_id: str | None = Field(default=None, max_length=512)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("metadata")
    @classmethod
    def _strict_json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            # NaN/Infinity are not JSON, and PostgreSQL's jsonb refuses them.
            json.dumps(value, allow_nan=False)
        except ValueError as exc:
            raise ValueError(f"metadata is not valid JSON: {exc}") from None
        if problem := _unstorable(value):
            raise ValueError(f"metadata contains {problem}, which PostgreSQL cannot store")
        return value

    @field_validator("text", mode="before")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        # What invalid UTF-8 decodes to (lone surrogates) and NUL cannot be stored; the
        # text is cleaned of them (and every other control character) anyway.
        if isinstance(value, str) and _unstorable(value):
            return value.encode("utf-8", "ignore").decode().replace("\x00", "")
        return value

    @field_validator("external_id", "image_path", "video_path")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
            raise ValueError("contains control characters")
        if value is not None and (problem := _unstorable(value)):
            raise ValueError(f"contains {problem}")
        return value

    @model_validator(mode="after")
    def _one_media_source(self) -> IngestItem:
        sources = [self.image_path, self.image_bytes, self.video_path, self.video_bytes]
        if sum(s is not None for s in sources) > 1:
            raise ValueError("give one of image_path, image_bytes, video_path, video_bytes")
        if self.is_video and self.text is not None:
            raise ValueError("a video item carries no text: put titles in its metadata")
        if all(s is None for s in sources) and self.text is None:
            raise ValueError("an item needs an image, a text, both, or a video")
        return self

    @property
    def is_video(self) -> bool:
        return self.video_path is not None or self.video_bytes is not None

    @property
    def kind(self) -> ItemKind:
        if self.is_video:
            return "video"
        has_image = self.image_path is not None or self.image_bytes is not None
        if has_image and self.text is not None:
            return "pair"
        return "image" if has_image else "text"

    @property
    def source(self) -> str:
        """A human-readable name for progress output and errors."""
        path = self.image_path or self.video_path
        if path is not None:
            return path
        if self.external_id is not None:
            return self.external_id
        if self.image_bytes is not None or self.video_bytes is not None:
            return "<bytes>"
        return "<text>"


class _IngestOptions(_Wire):
    collection: str = Field(pattern=COLLECTION_PATTERN)
    fusion: FusionName | None = None  # used only when the collection is created
    weights: dict[str, float] | None = None  # pair fusion: {"image": w, "text": w}


class IngestRequest(_IngestOptions):
    """What a producer sends: every item already validated."""

    items: list[IngestItem] = Field(min_length=1)


class ReindexTarget(_Wire):
    """The model a reindex re-embeds a collection with (mmq/services/reindex.py)."""

    model: str = Field(min_length=1, max_length=512)


class RawIngestRequest(_IngestOptions):
    """What a worker receives: items stay raw so one malformed item fails alone. With
    `reindex`, the items are `{"item_id": N}`: stored items to re-embed, not new ones."""

    items: list[Any] = Field(min_length=1)
    reindex: ReindexTarget | None = None


class IngestTaskMessage(_Wire):
    """What an ingest message carries: the id of a task whose request is in PostgreSQL."""

    task_id: str = Field(min_length=1, max_length=64)
    # Sent again by its worker because PostgreSQL went away during the attempt: that
    # attempt does not count (services/ingest_tasks.py).
    outage: bool = False


class ItemResult(_Wire):
    index: int
    source: str
    external_id: str | None
    status: Literal["stored", "failed"]
    item_id: int | None = None
    # Stored over an item of the collection with the same key (external id, or content
    # hash without one), which it replaced: docs/wire-format.md says when exactly.
    replaced: bool = False
    error: str | None = None
    # Videos: how much was indexed.
    duration_s: float | None = None
    segments: int | None = None


def item_json(item: ItemResult) -> dict[str, Any]:
    """An ingested item's end as `mmq ingest --wait --json` and the HTTP API print it."""
    keys = ("source", "external_id", "status", "replaced", "error")
    out = {k: getattr(item, k) for k in keys}
    if item.duration_s is not None:
        out |= {"duration_s": item.duration_s, "segments": item.segments}
    return out


class IngestResult(_Wire):
    collection: str
    items: list[ItemResult]

    @property
    def stored(self) -> int:
        return sum(r.status == "stored" for r in self.items)

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.items)

    @property
    def replaced(self) -> int:
        """Stored items that replaced an item of the collection (counted in `stored` too)."""
        return sum(r.replaced for r in self.items)


MAX_EXAMPLES = 1000
ExampleMethod = Literal["svm", "centroid"]


class Example(_Wire):
    """An example for a search by examples ("more like these"): an item of the collection,
    by its external id or its item id, or one given here (an image, a text, both, or a
    vector in the collection's space), encoded as an item of the collection would be."""

    external_id: str | None = Field(default=None, max_length=512)
    item_id: int | None = None
    image_bytes: bytes | None = None
    text: str | None = Field(default=None, min_length=1)
    vector: list[float] | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Example:
        stored = [self.external_id is not None, self.item_id is not None]
        given = self.image_bytes is not None or self.text is not None
        if sum(stored) + given + (self.vector is not None) != 1:
            raise ValueError(
                "an example is one of: external_id, item_id, an image and/or a text, a vector"
            )
        if self.vector is not None and not all(math.isfinite(v) for v in self.vector):
            raise ValueError("vector has NaN or infinite values")
        return self

    @property
    def stored(self) -> bool:
        return self.external_id is not None or self.item_id is not None


class SearchRequest(_Wire):
    """A query: a text, an image, both (composed), or a raw vector; or examples alone:
    `positives` (and `negatives`) ranked by `method` (docs/examples.md)."""

    collection: str = Field(pattern=COLLECTION_PATTERN)
    text: str | None = None
    image_bytes: bytes | None = None
    vector: list[float] | None = None
    weights: dict[str, float] | None = None  # composed query: {"image": w, "text": w}
    fusion: FusionName | None = None  # default: the collection's
    targets: list[ItemKind] = Field(default_factory=lambda: list(ALL_KINDS))
    k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = None  # JSON containment on item metadata
    ef_search: int | None = Field(default=None, ge=1, le=1000)
    # Video hits: "best" gives each video's best segment; "all" also lists every segment of
    # the video that scores at least `min_score`, best first.
    segments: Literal["best", "all"] = "best"
    min_score: float | None = Field(default=None, ge=-1, le=1)
    # A search by examples: more like the positives, unlike the negatives.
    positives: list[Example] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    negatives: list[Example] = Field(default_factory=list, max_length=MAX_EXAMPLES)
    method: ExampleMethod = "svm"

    @field_validator("filter")
    @classmethod
    def _storable_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return value
        try:
            size = len(json.dumps(value, allow_nan=False))
        except ValueError as exc:
            raise ValueError(f"filter is not valid JSON: {exc}") from None
        if size > MAX_FILTER_CHARS:
            raise ValueError(
                f"filter is {size} characters of JSON, the limit is {MAX_FILTER_CHARS}"
            )
        if problem := _unstorable(value):
            raise ValueError(f"filter contains {problem}")
        return value

    @field_validator("vector")
    @classmethod
    def _finite(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and not all(math.isfinite(v) for v in value):
            raise ValueError("vector has NaN or infinite values")
        return value

    @model_validator(mode="after")
    def _has_query(self) -> SearchRequest:
        if self.vector is not None and (self.text is not None or self.image_bytes is not None):
            raise ValueError("a vector query cannot be combined with text or image")
        query = self.vector is not None or self.text is not None or self.image_bytes is not None
        if self.positives and query:
            raise ValueError("a search is by examples or by a query, not both")
        if self.negatives and not self.positives:
            raise ValueError("negative examples need at least one positive example")
        if not query and not self.positives:
            raise ValueError("a search needs text, an image, or a vector")  # or positives
        if not self.targets:
            raise ValueError("targets must name at least one kind")
        return self


class SegmentHit(_Wire):
    start_s: float
    end_s: float
    keyframe_s: float
    score: float


class Hit(_Wire):
    """One item found. `score` is the cosine to the query, calibrated by the model for this
    (query kind, item kind) pair so that hits of different kinds compare
    (docs/models.md, "Scores across item kinds"): image and video hits score their cosine
    (an image finds itself at 1), texts and pairs the value mapped onto that scale. A raw
    vector query, or a model without a calibration, scores cosines. `min_score` and
    `SegmentHit.score` are on the same scale.

    A search by examples scores on its method's own scale, not calibrated: `svm`, the
    item's signed distance to the SVM's boundary (> 0 on the positives' side; an item
    vector's cosine to the SVM's direction plus its offset); `centroid`, the cosine to the
    Rocchio centroid (docs/examples.md)."""

    item_id: int
    external_id: str | None
    score: float
    kind: ItemKind
    uri: str | None
    text: str | None
    metadata: dict[str, Any]
    # Videos: the best segment's time range (the hit's score is that segment's score).
    start_s: float | None = None
    end_s: float | None = None
    keyframe_s: float | None = None
    duration_s: float | None = None
    segments: list[SegmentHit] | None = None  # with segments="all"


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as `mmq search --json` and the HTTP API print it."""
    out: dict[str, Any] = {
        "external_id": hit.external_id,
        "kind": hit.kind,
        "score": round(hit.score, 4),
        "source": hit.uri or hit.text,
        "metadata": hit.metadata,
    }
    if hit.kind == "video":
        out |= {
            "start_s": hit.start_s,
            "end_s": hit.end_s,
            "keyframe_s": hit.keyframe_s,
            "duration_s": hit.duration_s,
        }
        if hit.segments is not None:
            out["segments"] = [s.model_dump() | {"score": round(s.score, 4)} for s in hit.segments]
    return out


class SearchResult(_Wire):
    collection: str
    hits: list[Hit]
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # The model (and version) whose space the hits are in: the collection's, which is the
    # one that encoded the query.
    model: str | None = None
    model_version: str | None = None
    # The text the model actually read, where it rewrote the query's text (a Chinese query
    # read as English words by `lite`); None where it read the text as given.
    encoded_text: str | None = None
    # Only when no hit was found before `min_score`: the item kinds the collection holds
    # (empty for an empty collection), to tell "no match" from `targets` leaving them out.
    kinds_held: list[ItemKind] | None = None
    # A search by examples: the examples given by id that the collection does not hold
    # (external ids as given, item ids as decimal strings); the search used the others.
    missing_examples: list[str] | None = None


class JobStatus(_Wire):
    id: str
    state: JobState
    # An ingest: its first failed item's error. A failed search: its error, and the error's
    # kind (mmq.errors: "not_found", "conflict", ...).
    error: str | None = None
    error_kind: str | None = None
    done_tasks: int = 0
    total_tasks: int = 1


# Recommendations (task `mmq.recommend`, docs/wire-format.md). Events are not on the wire:
# producers write them to PostgreSQL (mmq/jobs/events.py).
RecommendMethod = Literal["auto", "svm", "centroid"]


class RecommendRequest(_Wire):
    """Items for a user, from the user's recorded events in the collection."""

    collection: str = Field(pattern=COLLECTION_PATTERN)
    user: str = Field(min_length=1, max_length=512)
    k: int = Field(default=10, ge=1, le=1000)
    targets: list[ItemKind] = Field(default_factory=lambda: list(ALL_KINDS), min_length=1)
    filter: dict[str, Any] | None = None  # JSON containment on item metadata
    exclude_seen: bool = True  # leave out the items the user has events on
    # "auto": an SVM over the user's items when there are enough of them, else the centroid.
    method: RecommendMethod = "auto"
    ef_search: int | None = Field(default=None, ge=1, le=1000)

    @field_validator("filter")
    @classmethod
    def _storable_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return SearchRequest._storable_filter(value)


class RecommendHit(Hit):
    """A recommended item. `because`: the external ids of the user's history items that led
    to it, the most telling first (their event weight times their cosine to the hit);
    empty for a popular item. `score` is on the scale of the result's `method`: an SVM
    margin (svm), a cosine to the user's weighted profile (centroid), or the item's decayed
    event weight over every user divided by the first hit's (popular)."""

    because: list[str] = Field(default_factory=list)


class RecommendResult(_Wire):
    collection: str
    user: str
    hits: list[RecommendHit]
    # How the hits were ranked; "popular" when the user has no usable history here.
    method: Literal["svm", "centroid", "popular"]
    # True when the user has no event on a stored item of the collection: the hits are the
    # collection's most interacted-with items.
    cold_start: bool = False
    history: int = 0  # the user's items with a positive weight that are stored and used
    history_missing: int = 0  # the user's items that the collection does not hold
    timings_ms: dict[str, float] = Field(default_factory=dict)
    model: str | None = None
    model_version: str | None = None


# Delete (task `mmq.delete`, on the ingest queue; docs/wire-format.md).
MAX_DELETE_IDS = 10_000


class DeleteRequest(_Wire):
    """Items to delete from a collection: by external ids, by item ids, by a metadata
    filter, or all of them (the collection itself goes too). Exactly one of the four."""

    collection: str = Field(pattern=COLLECTION_PATTERN)
    external_ids: list[str] = Field(default_factory=list, max_length=MAX_DELETE_IDS)
    item_ids: list[Annotated[int, Field(ge=-(2**63), lt=2**63)]] = Field(
        default_factory=list, max_length=MAX_DELETE_IDS
    )
    filter: dict[str, Any] | None = None  # JSON containment on item metadata
    all: bool = False

    @field_validator("external_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        for external_id in value:
            if len(external_id) > 512:
                raise ValueError("an external id has at most 512 characters")
            if problem := _unstorable(external_id):
                raise ValueError(f"an external id contains {problem}")
        return value

    @field_validator("filter")
    @classmethod
    def _storable_filter(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # An empty object is contained in every item's metadata: it would delete them all.
        if value == {}:
            raise ValueError("an empty filter matches every item: to delete them all, use all")
        return SearchRequest._storable_filter(value)

    @model_validator(mode="after")
    def _one_mode(self) -> DeleteRequest:
        modes = [bool(self.external_ids), bool(self.item_ids), self.filter is not None, self.all]
        if sum(modes) != 1:
            raise ValueError("delete by one of: external_ids, item_ids, filter, all")
        return self


class DeleteResult(_Wire):
    collection: str
    deleted: int  # items deleted
    # The external ids and item ids (as decimal strings) asked for that the collection does
    # not hold, in the order asked; never the reason for a failure of the others.
    missing: list[str] = Field(default_factory=list)


class ReindexFinish(_Wire):
    """What the task that ends a reindex receives: its job, whose chunks it waits for."""

    collection: str = Field(pattern=COLLECTION_PATTERN)
    model: str = Field(min_length=1, max_length=512)
    job_id: str = Field(min_length=1, max_length=64)


class ReindexFailure(_Wire):
    item_id: int
    external_id: str | None
    error: str


class ReindexResult(_Wire):
    """How a reindex ended: `switched` (the collection now searches the new vectors) or
    not, because items could not be re-embedded (`failed`, each with its reason) and
    `allow_missing` was not given."""

    collection: str
    model: str
    switched: bool
    items: int  # items with their new vector
    failed: list[ReindexFailure] = Field(default_factory=list)
    deleted: int = 0  # items without a new vector, deleted at the switch (allow_missing)

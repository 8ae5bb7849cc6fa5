"""Interaction events in PostgreSQL (migrations/versions/0006): written by producers with
plain psycopg, as the job records are (`mmq.client` uses this: no ORM, no model call), and
read by the recommend service as a user's profile and as the collection's popular items.

An event's weight says how much it tells of a liking (DEFAULT_WEIGHTS, or the producer's
own); a profile sums each item's weights, each decayed by its age with a half-life
(`MMQ_RECOMMEND_HALF_LIFE_DAYS`), on the database's clock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import Connection

from mmq.errors import BadRequest
from mmq.schemas import COLLECTION_PATTERN

# The one place event weights are set. A purchase says more than a look: these are the
# usual implicit-feedback orders of magnitude, not fitted to any data; a producer passes
# `weight=` for its own events, or to override these (negative: a dislike).
DEFAULT_WEIGHTS: dict[str, float] = {"view": 1.0, "like": 2.0, "cart": 3.0, "purchase": 5.0}

MAX_ID_CHARS = 512
_EVENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class NewEvent:
    user: str
    external_id: str
    event: str
    weight: float
    at: datetime | None  # None: when it is recorded


@dataclass(frozen=True)
class Interest:
    """An item of a user's history: its decayed weight (the sum over its events)."""

    external_id: str
    weight: float


@dataclass(frozen=True)
class PopularRow:
    item_id: int
    external_id: str
    kind: str
    uri: str | None
    text: str | None
    metadata: dict[str, Any]
    weight: float  # decayed weight over every user's events


def new_event(
    *,
    user: str,
    external_id: str,
    event: str,
    weight: float | None = None,
    at: datetime | None = None,
) -> NewEvent:
    """A checked event: BadRequest (naming the field) for anything that cannot be stored."""
    _check_id("user", user)
    _check_id("item", external_id)
    if not _EVENT_NAME.match(event):
        raise BadRequest(f"event {event!r}: a name of letters, digits, '_', '.' or '-'")
    if weight is None:
        if event not in DEFAULT_WEIGHTS:
            known = ", ".join(DEFAULT_WEIGHTS)
            raise BadRequest(f"event {event!r} has no default weight ({known} have): give one")
        weight = DEFAULT_WEIGHTS[event]
    if not math.isfinite(weight):
        raise BadRequest(f"event weight must be a finite number, not {weight}")
    if at is not None and at.tzinfo is None:
        at = at.replace(tzinfo=UTC)  # a naive time is read as UTC, never as local time
    return NewEvent(user, external_id, event, float(weight), at)


def check_collection(name: str) -> None:
    if not re.match(COLLECTION_PATTERN, name):
        raise BadRequest(f"collection {name!r}: letters, digits, '_', '.' or '-', 63 at most")


def _check_id(field: str, value: str) -> None:
    if not value or len(value) > MAX_ID_CHARS:
        raise BadRequest(f"{field} must be 1 to {MAX_ID_CHARS} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise BadRequest(f"{field} {value!r} contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{field} contains an unpaired surrogate (invalid UTF-8)") from None


def record(conn: Connection, *, collection: str, events: Iterable[NewEvent]) -> int:
    """Insert the events in one COPY (the caller commits); returns how many. Events with no
    time get the database's time, the clock their ages are measured on."""
    check_collection(collection)
    now = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    count = 0
    with conn.cursor().copy(
        "COPY events (collection, user_id, external_id, event, weight, at) FROM STDIN"
    ) as copy:
        for e in events:
            copy.write_row((collection, e.user, e.external_id, e.event, e.weight, e.at or now))
            count += 1
    return count


_DECAYED = (
    "weight * power(0.5, greatest(0.0, extract(epoch FROM now() - at)::float8) / %(half_life_s)s)"
)


def history(
    conn: Connection, *, collection: str, user: str, half_life_s: float, limit: int
) -> list[Interest]:
    """The user's items, each with its events' decayed weights summed, heaviest first
    (items whose events cancel out included: they were seen)."""
    rows = conn.execute(
        f"SELECT external_id, sum({_DECAYED}) AS w FROM events"
        " WHERE collection = %(collection)s AND user_id = %(user)s"
        " GROUP BY external_id ORDER BY w DESC, external_id LIMIT %(limit)s",
        {"collection": collection, "user": user, "half_life_s": half_life_s, "limit": limit},
    ).fetchall()
    return [Interest(str(external_id), float(w)) for external_id, w in rows]


def popular(
    conn: Connection,
    *,
    collection: str,
    collection_id: int,
    half_life_s: float,
    kinds: Sequence[str],
    filter: dict[str, Any] | None,
    exclude_item_ids: Collection[int],
    k: int,
) -> list[PopularRow]:
    """The k stored items of these kinds (and metadata filter) with the most decayed weight
    of events over every user, heaviest first; items with no positive weight are not
    popular."""
    where = "i.kind = ANY(%(kinds)s) AND NOT i.id = ANY(%(exclude)s)"
    if filter is not None:
        where += " AND i.metadata @> CAST(%(filter)s AS jsonb)"
    # Items heaviest first, each looked up by its key on the items' unique index, until k
    # pass: a join over every item of the collection would read them all.
    rows = conn.execute(
        "SELECT i.id, i.external_id, i.kind, i.uri, i.text, i.metadata, p.w FROM"
        f" (SELECT external_id, sum({_DECAYED}) AS w FROM events"
        "  WHERE collection = %(collection)s GROUP BY external_id"
        "  ORDER BY w DESC, external_id) p"
        " CROSS JOIN LATERAL (SELECT * FROM items i WHERE i.collection_id = %(cid)s"
        f"  AND i.key = 'ext:' || p.external_id AND {where}) i"
        " WHERE p.w > 0 ORDER BY p.w DESC, p.external_id LIMIT %(k)s",
        {
            "collection": collection,
            "cid": collection_id,
            "half_life_s": half_life_s,
            "kinds": list(kinds),
            "exclude": list(exclude_item_ids),
            "filter": None if filter is None else json.dumps(filter),
            "k": k,
        },
    ).fetchall()
    return [
        PopularRow(item_id, external_id, kind, uri, text, metadata, float(w))
        for item_id, external_id, kind, uri, text, metadata, w in rows
    ]

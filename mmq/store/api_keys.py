"""API keys of the HTTP API: create, find, list and revoke (table `api_keys`, migration 0008).

A key reads `mmq_<prefix>_<secret>`: the prefix (8 hex digits) is public, it names the key
in `mmq keys list` and `mmq keys revoke`; the secret is 64 hex digits (256 random bits).
The plaintext key is handed back once, by `create_key`; only its SHA-256 is stored.

Like the rest of mmq/store, these functions never commit: the caller owns the transaction
and commits (`session.commit()`) after `create_key` and `revoke_key`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast, get_args

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from mmq.errors import BadRequest, Conflict, NotFound
from mmq.schemas import COLLECTION_PATTERN
from mmq.store.tables import ApiKeyRow

Role = Literal["read", "write", "admin"]
ROLES: tuple[Role, ...] = get_args(Role)

KEY_START = "mmq_"
PREFIX_HEX = 8  # 32 bits: unique among keys (a clash is retried), not a secret
SECRET_BYTES = 32  # 256 bits: beyond any guessing, so one SHA-256 is enough (see _hash)
# Hex digits only: the separator "_" cannot occur inside a part, so a key splits one way.
_KEY = re.compile(rf"{KEY_START}([0-9a-f]{{{PREFIX_HEX}}})_[0-9a-f]{{{2 * SECRET_BYTES}}}")
_PREFIX = re.compile(rf"(?:{KEY_START})?([0-9a-f]{{{PREFIX_HEX}}})")
_CLASH_RETRIES = 5


@dataclass(frozen=True)
class ApiKey:
    """A key as stored, without its secret. `find_key` never returns a revoked one;
    `list_keys` and `revoke_key` do (`revoked_at` set)."""

    id: int
    prefix: str
    role: Role
    collections: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    def can_see(self, collection: str) -> bool:
        """Whether the key is scoped to `collection` (admin keys too are scoped)."""
        return collection in self.collections

    @property
    def can_write(self) -> bool:
        """Ingest, record events: the write and admin roles."""
        return self.role in ("write", "admin")

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


_COLUMNS = (
    ApiKeyRow.id,
    ApiKeyRow.prefix,
    ApiKeyRow.role,
    ApiKeyRow.collections,
    ApiKeyRow.created_at,
    ApiKeyRow.revoked_at,
)


def create_key(*, session: Session, collections: Sequence[str], role: Role) -> tuple[str, ApiKey]:
    """A new key for `role` over `collections` (at least one; a name may be repeated, it is
    kept once). Returns the plaintext key, shown this once and stored nowhere, and the
    key as stored. BadRequest for an unknown role or a bad collection name. The caller
    commits."""
    if role not in ROLES:
        raise BadRequest(f"role {role!r}: use one of {', '.join(ROLES)}")
    if isinstance(collections, str):  # a lone name would be read as its letters
        raise BadRequest("collections must be a list of collection names, not one string")
    names = tuple(dict.fromkeys(collections))
    if not names:
        raise BadRequest("an API key needs at least one collection")
    for name in names:
        if not isinstance(name, str) or not re.match(COLLECTION_PATTERN, name):
            raise BadRequest(f"collection {name!r}: letters, digits, '_', '.' or '-', 63 at most")
    for _ in range(_CLASH_RETRIES):
        prefix = secrets.token_hex(PREFIX_HEX // 2)
        key = f"{KEY_START}{prefix}_{secrets.token_hex(SECRET_BYTES)}"
        row = session.execute(
            insert(ApiKeyRow)
            .values(prefix=prefix, key_hash=_hash(key), role=role, collections=list(names))
            # A prefix taken by another key (about 1 in 4 billion per key held): draw again.
            .on_conflict_do_nothing(constraint="api_keys_prefix")
            .returning(*_COLUMNS)
        ).one_or_none()
        if row is not None:
            return key, _as_key(row)
    raise Conflict(f"no free key prefix in {_CLASH_RETRIES} draws: try again")


def find_key(*, session: Session, key: str) -> ApiKey | None:
    """The live key whose plaintext is `key`; None when it is malformed, unknown or revoked.

    The lookup is by the key's hash, never by comparing secrets: what the database compares
    is the SHA-256 of what the caller sent, which a caller cannot steer toward a stored
    hash, so how long the lookup takes tells nothing about any stored key."""
    if not _KEY.fullmatch(key):
        return None  # not ours (also keeps a huge header from being hashed)
    row = session.execute(
        select(*_COLUMNS).where(ApiKeyRow.key_hash == _hash(key), ApiKeyRow.revoked_at.is_(None))
    ).one_or_none()
    return None if row is None else _as_key(row)


def list_keys(*, session: Session) -> list[ApiKey]:
    """Every key, newest first, revoked ones included."""
    rows = session.execute(
        select(*_COLUMNS).order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id.desc())
    )
    return [_as_key(row) for row in rows]


def revoke_key(*, session: Session, prefix: str) -> ApiKey:
    """Revoke the key named by its prefix (`abcd1234` or `mmq_abcd1234`) or by the whole
    key; returns it with `revoked_at` set. Revoking a revoked key keeps its first
    `revoked_at`. NotFound when no key has that prefix (or that whole key). The caller
    commits."""
    whole = _KEY.fullmatch(prefix)
    if whole:
        which = ApiKeyRow.key_hash == _hash(prefix)
        named = f"the key {KEY_START}{whole.group(1)}_..."  # never echo a secret
    else:
        short = _PREFIX.fullmatch(prefix)
        if short is None:
            raise NotFound(
                f"no API key with prefix {prefix!r} (a prefix is {PREFIX_HEX} hex digits, "
                "as `mmq keys list` shows it)"
            )
        which = ApiKeyRow.prefix == short.group(1)
        named = f"prefix {short.group(1)!r}"
    row = session.execute(
        update(ApiKeyRow)
        .where(which)
        .values(revoked_at=func.coalesce(ApiKeyRow.revoked_at, func.now()))
        .returning(*_COLUMNS)
        .execution_options(synchronize_session=False)  # no key is loaded as an ORM object
    ).one_or_none()
    if row is None:
        raise NotFound(f"no API key with {named}")
    return _as_key(row)


def _hash(key: str) -> str:
    # A fast hash, not a password hash (bcrypt, argon2): those slow down guessing a
    # low-entropy secret. A key's secret is 256 random bits, beyond guessing at any speed,
    # and a fast hash lets every request be checked with one indexed lookup.
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def _as_key(row: Any) -> ApiKey:
    return ApiKey(
        id=row.id,
        prefix=row.prefix,
        role=cast(Role, row.role),
        collections=tuple(row.collections),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )

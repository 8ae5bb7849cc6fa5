"""`mmq keys create | list | revoke`: the HTTP API's keys (mmq/store/api_keys.py).

Straight to PostgreSQL (embedded when no URL is configured), no queue and no worker."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from mmq.errors import Unavailable

if TYPE_CHECKING:  # building the parser loads no SQLAlchemy
    from sqlalchemy.orm import Session

    from mmq.store.api_keys import ApiKey

R = TypeVar("R")


def add_keys_arguments(p: argparse.ArgumentParser) -> None:
    actions = p.add_subparsers(dest="action", required=True)
    a = actions.add_parser("create", help="a new key; printed once, alone on the last line")
    a.add_argument(
        "--collection",
        action="append",
        required=True,
        metavar="NAME",
        help="a collection the key may see (repeat for several; admin keys too are scoped)",
    )
    a.add_argument("--role", choices=["read", "write", "admin"], required=True)
    a = actions.add_parser("list", help="every key, newest first (never a secret)")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("revoke", help="revoke a key from now on")
    a.add_argument("prefix", metavar="PREFIX", help="the key's prefix, as `keys list` shows it")


def run_keys(args: argparse.Namespace) -> int:
    from mmq.store import api_keys

    if args.action == "create":
        key, stored = _in_transaction(
            lambda s: api_keys.create_key(session=s, collections=args.collection, role=args.role)
        )
        print(f"API key {stored.prefix}: role {stored.role}, collections {_names(stored)}")
        print("store it now: it is shown this once (only its hash is kept)")
        print(key)  # alone on the last line: `KEY=$(mmq keys create ... | tail -1)`
    elif args.action == "list":
        keys = _in_transaction(lambda s: api_keys.list_keys(session=s))
        if args.json:
            print(json.dumps([_as_json(k) for k in keys], indent=2))
        else:
            _print(keys)
    else:
        revoked = _in_transaction(lambda s: api_keys.revoke_key(session=s, prefix=args.prefix))
        print(f"API key {revoked.prefix} revoked (at {_time(revoked.revoked_at)})")
    return 0


def _in_transaction(work: Callable[[Session], R]) -> R:
    """`work(session)`, committed, on the configured database (or the embedded one). The
    schema is checked first: on an unmigrated database, the fix (`mmq db upgrade`) rather
    than a SQL error."""
    from sqlalchemy.exc import OperationalError

    from mmq.config import get_settings
    from mmq.embedded import resolve_urls
    from mmq.store.db import make_engine, make_sessionmaker
    from mmq.store.migrate import require_schema

    engine = make_engine(resolve_urls(get_settings()).database_url, pool_size=1)
    try:
        require_schema(engine)
        with make_sessionmaker(engine)() as session:
            result = work(session)
            session.commit()
            return result
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0]
        raise Unavailable(f"cannot reach PostgreSQL: {reason}") from exc
    finally:
        engine.dispose()


def _print(keys: list[ApiKey]) -> None:
    if not keys:
        print("no API keys: create one with `mmq keys create`")
    for k in keys:
        revoked = f"revoked {_time(k.revoked_at)}" if k.revoked_at else "active"
        print(f"{k.prefix}  {k.role:5s}  {_time(k.created_at)}  {revoked:28s}  {_names(k)}")


def _time(at: datetime | None) -> str:
    return f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%SZ}" if at else "-"


def _names(key: ApiKey) -> str:
    return ", ".join(key.collections)


def _as_json(key: ApiKey) -> dict[str, Any]:
    return {
        "prefix": key.prefix,
        "role": key.role,
        "collections": list(key.collections),
        "created_at": key.created_at.astimezone(UTC).isoformat(),
        "revoked_at": key.revoked_at.astimezone(UTC).isoformat() if key.revoked_at else None,
    }

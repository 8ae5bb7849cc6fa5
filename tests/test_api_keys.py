"""API keys (mmq/store/api_keys.py) and `mmq keys`, against the session's PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mmq.embedded import Urls
from mmq.errors import BadRequest, NotFound
from mmq.store.api_keys import create_key, find_key, list_keys, revoke_key
from mmq.store.tables import ApiKeyRow
from tests.support.cli import mmq
from tests.support.names import fresh

pytestmark = pytest.mark.slow

KEY = re.compile(r"mmq_[0-9a-f]{8}_[0-9a-f]{64}")


@pytest.fixture()
def session(db_session: Session) -> Iterator[Session]:
    """The fixture's session, committed by each test as the API and CLI commit."""
    yield db_session
    db_session.rollback()


def test_create_find_list_revoke(session: Session) -> None:
    shop, kitchen = fresh("shop"), fresh("kitchen")
    key, created = create_key(session=session, collections=[shop, kitchen, shop], role="write")
    session.commit()
    assert KEY.fullmatch(key)
    assert key.split("_")[1] == created.prefix
    assert created.collections == (shop, kitchen)  # a repeated name is kept once
    assert created.role == "write" and created.revoked_at is None
    assert created.can_see(shop) and created.can_see(kitchen) and not created.can_see("other")
    assert created.can_write and not created.is_admin

    assert find_key(session=session, key=key) == created
    assert created in list_keys(session=session)

    revoked = revoke_key(session=session, prefix=created.prefix)
    session.commit()
    assert revoked.id == created.id and revoked.revoked_at is not None
    assert find_key(session=session, key=key) is None
    listed = {k.prefix: k for k in list_keys(session=session)}
    assert listed[created.prefix].revoked_at == revoked.revoked_at  # revoked ones are listed


def test_roles() -> None:
    from datetime import UTC, datetime

    from mmq.store.api_keys import ApiKey

    def key(role: str) -> ApiKey:
        return ApiKey(1, "abcd1234", role, ("c",), datetime.now(UTC), None)  # type: ignore[arg-type]

    assert (key("read").can_write, key("read").is_admin) == (False, False)
    assert (key("write").can_write, key("write").is_admin) == (True, False)
    assert (key("admin").can_write, key("admin").is_admin) == (True, True)
    assert key("admin").can_see("c") and not key("admin").can_see("d")  # admins are scoped too


def test_wrong_and_malformed_keys_are_not_found(session: Session) -> None:
    key, created = create_key(session=session, collections=[fresh("c")], role="read")
    session.commit()
    prefix, secret = key.split("_")[1:]
    other_secret = ("0" if secret[0] != "0" else "1") + secret[1:]
    for wrong in (
        f"mmq_{prefix}_{other_secret}",  # the right prefix with a wrong secret
        key.upper(),
        key + "0",
        key[:-1],
        f"mmq_{prefix}",
        prefix,
        "",
        "x" * 100_000,
    ):
        assert find_key(session=session, key=wrong) is None, wrong


def test_only_the_hash_of_the_key_is_stored(session: Session) -> None:
    key, created = create_key(session=session, collections=[fresh("c")], role="read")
    session.commit()
    row = session.scalars(select(ApiKeyRow).where(ApiKeyRow.id == created.id)).one()
    assert row.key_hash == hashlib.sha256(key.encode()).hexdigest()
    secret = key.split("_")[2]
    stored = [str(getattr(row, c.name)) for c in ApiKeyRow.__table__.columns]
    assert not any(secret in value for value in stored)


def test_keys_are_distinct(session: Session) -> None:
    made = [create_key(session=session, collections=["c"], role="read") for _ in range(20)]
    session.commit()
    assert len({key for key, _ in made}) == len({k.prefix for _, k in made}) == 20


def test_list_is_newest_first(session: Session) -> None:
    _, first = create_key(session=session, collections=["c"], role="read")
    session.commit()
    _, second = create_key(session=session, collections=["c"], role="read")
    session.commit()
    ids = [k.id for k in list_keys(session=session)]
    assert ids.index(second.id) < ids.index(first.id)


def test_revoke_by_prefix_or_whole_key_and_twice(session: Session) -> None:
    key, created = create_key(session=session, collections=["c"], role="admin")
    session.commit()
    first = revoke_key(session=session, prefix=key)
    session.commit()
    again = revoke_key(session=session, prefix=f"mmq_{created.prefix}")
    session.commit()
    assert first.revoked_at is not None and again.revoked_at == first.revoked_at
    assert revoke_key(session=session, prefix=created.prefix).revoked_at == first.revoked_at


def test_revoking_an_unknown_key_is_not_found_and_echoes_no_secret(session: Session) -> None:
    key, created = create_key(session=session, collections=["c"], role="read")
    session.commit()
    wrong = key[:-1] + ("0" if key[-1] != "0" else "1")
    with pytest.raises(NotFound) as caught:
        revoke_key(session=session, prefix=wrong)
    assert wrong.split("_")[2] not in str(caught.value)
    with pytest.raises(NotFound, match="no API key with prefix 'ffffffff'"):
        revoke_key(session=session, prefix="ffffffff" if created.prefix != "ffffffff" else "0")
    with pytest.raises(NotFound, match="8 hex digits"):
        revoke_key(session=session, prefix="nope")
    assert find_key(session=session, key=key) is not None


@pytest.mark.parametrize(
    ("collections", "role", "message"),
    [
        (["c"], "root", "role 'root': use one of read, write, admin"),
        ([], "read", "at least one collection"),
        ("shop", "read", "a list of collection names"),
        (["ok", "bad name"], "read", "collection 'bad name'"),
        (["-dash-first"], "read", "collection '-dash-first'"),
        (["x" * 64], "read", "63 at most"),
    ],
)
def test_bad_requests(session: Session, collections: list[str], role: str, message: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        create_key(session=session, collections=collections, role=role)  # type: ignore[arg-type]


def test_cli_create_prints_the_key_alone_on_its_last_line(urls: Urls, db_session: Session) -> None:
    shop = fresh("shop")
    out = mmq("keys", "create", "--collection", shop, "--collection", "kitchen", "--role", "write")
    *description, last = out.stdout.splitlines()
    assert KEY.fullmatch(last), out.stdout
    assert description and not any(KEY.search(line) for line in description)
    found = find_key(session=db_session, key=last)
    assert found is not None and found.role == "write"
    assert found.collections == (shop, "kitchen")


def test_cli_list_shows_no_secret_and_revoke_by_prefix(urls: Urls, db_session: Session) -> None:
    out = mmq("keys", "create", "--collection", fresh("c"), "--role", "read")
    key = out.stdout.splitlines()[-1]
    prefix, secret = key.split("_")[1:]
    listed = mmq("keys", "list", "--json").stdout
    assert secret not in listed and hashlib.sha256(key.encode()).hexdigest() not in listed
    mine = [k for k in json.loads(listed) if k["prefix"] == prefix]
    assert len(mine) == 1 and mine[0]["revoked_at"] is None
    assert set(mine[0]) == {"prefix", "role", "collections", "created_at", "revoked_at"}
    text = mmq("keys", "list").stdout
    assert prefix in text and secret not in text

    out = mmq("keys", "revoke", prefix)
    assert f"API key {prefix} revoked" in out.stdout
    assert find_key(session=db_session, key=key) is None
    mine = [k for k in json.loads(mmq("keys", "list", "--json").stdout) if k["prefix"] == prefix]
    assert mine[0]["revoked_at"] is not None


def test_cli_errors(urls: Urls) -> None:
    out = mmq("keys", "create", "--collection", "c", "--role", "root", check=False)
    assert out.returncode == 2 and "invalid choice: 'root'" in out.stderr, out.stderr
    assert out.stdout == ""
    out = mmq("keys", "create", "--collection", "bad name", "--role", "read", check=False)
    assert out.returncode == 3, out.stderr
    assert "mmq keys: bad_request: collection 'bad name'" in out.stderr
    out = mmq("keys", "revoke", "ffffffff", check=False)
    assert out.returncode == 4 and "mmq keys: not_found: no API key" in out.stderr, out.stderr

"""Short-lived signed URLs for an item's media: `<img>` and `<video>` cannot send an
Authorization header, so the API puts `?token=` on the URLs it hands out. A token names
one item and an expiry, signed with HMAC-SHA256 under the API's secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from mmq.config import Settings


def api_secret(settings: Settings) -> bytes:
    """`MMQ_API_SECRET`, or a random one kept in the state folder, made on first use: every
    API process of this state folder must sign alike (uvicorn --workers N)."""
    if settings.api_secret is not None:
        return settings.api_secret.get_secret_value().encode()
    path = settings.state_dir / "api-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = path.with_name(f".api-secret.{os.getpid()}")
        fresh.write_text(secrets.token_hex(32))
        fresh.chmod(0o600)
        try:
            os.link(fresh, path)  # the first process to get here wins; the others read it
        except FileExistsError:
            pass
        finally:
            fresh.unlink()
    return Path(path).read_text().strip().encode()


class Signer:
    def __init__(self, secret: bytes, ttl_s: float) -> None:
        self.secret, self.ttl_s = secret, ttl_s

    def sign(self, item_id: int, *, now: float | None = None) -> str:
        expires = int((now if now is not None else time.time()) + self.ttl_s)
        return f"{expires}.{self._mac(item_id, expires)}"

    def valid(self, token: str, item_id: int, *, now: float | None = None) -> bool:
        expires_s, _, mac = token.partition(".")
        if not expires_s.isdigit():
            return False
        expires = int(expires_s)
        if expires < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(mac, self._mac(item_id, expires))

    def _mac(self, item_id: int, expires: int) -> str:
        digest = hmac.new(self.secret, f"{item_id}:{expires}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:18]).decode()

"""The signed browser session between the authorization request, login, patient
picker and consent pages.

No server memory holds it, so any number of server processes can serve one sign-in:
the state travels in a cookie, ``base64url(JSON).kid.base64url(HMAC-SHA256)``, with an
expiry inside the signed part (OWASP session management; RFC 6265 for the cookie
attributes: HttpOnly, SameSite=Lax, Secure on https, Path=/auth). The HMAC key is
derived from the private part of the server's signing key (kept in the auth store), so
every process shares it; rotating the signing key ends the sign-ins in progress.

The session also carries the per-session CSRF token that every form posts back
(double submit with a signed cookie, OWASP CSRF prevention cheat sheet).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

from smart_auth.keys import KeyManager

COOKIE_NAME = "smart_auth_session"
COOKIE_PATH = "/auth"
_LABEL = b"smart_auth session cookie v1\x00"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionCodec:
    """Signs and checks session cookies with a key derived from the signing key."""

    def __init__(self, keys: KeyManager, lifetime: int) -> None:
        self.keys = keys
        self.lifetime = lifetime

    def _secret(self, kid: str | None) -> bytes | None:
        key = self.keys.current_key() if kid is None else self.keys.key_for(kid)
        if key is None:
            return None
        private = key.as_dict(private=True)
        material = json.dumps({k: private[k] for k in ("d", "p", "q") if k in private})
        return hashlib.sha256(_LABEL + material.encode()).digest()

    def dumps(self, data: dict[str, Any]) -> str:
        key = self.keys.current_key()
        kid = str(key.kid)
        body = dict(data, exp=int(time.time()) + self.lifetime)
        payload = _b64(json.dumps(body, separators=(",", ":")).encode())
        secret = self._secret(kid) or b""
        signature = hmac.new(secret, f"{payload}.{kid}".encode(), hashlib.sha256).digest()
        return f"{payload}.{kid}.{_b64(signature)}"

    def loads(self, cookie: str | None) -> dict[str, Any] | None:
        """The session data, or None if absent, tampered with or expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        payload, kid, signature = cookie.split(".")
        try:
            secret = self._secret(kid)
            if secret is None:
                return None
            expected = hmac.new(secret, f"{payload}.{kid}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                return None
            data = json.loads(_unb64(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(data, dict) or int(data.get("exp", 0)) < time.time():
            return None
        data.pop("exp", None)
        return data


def new_session() -> dict[str, Any]:
    """A fresh session with its CSRF token."""
    return {"csrf": secrets.token_urlsafe(24)}


def csrf_ok(session: dict[str, Any] | None, presented: str | None) -> bool:
    """True if the form's CSRF token is the session's (constant-time comparison)."""
    if not session or not presented or not isinstance(session.get("csrf"), str):
        return False
    return hmac.compare_digest(session["csrf"].encode(), presented.encode())

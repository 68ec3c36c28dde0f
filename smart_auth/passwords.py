"""Password and secret hashing.

Passwords: Argon2id (RFC 9106, https://www.rfc-editor.org/rfc/rfc9106) with
argon2-cffi's defaults; verification is constant time and says when a hash should be
upgraded. Opaque secrets the server hands out (authorization codes, refresh tokens,
client secrets, invitation codes, registration tokens) are long random strings, so a
plain SHA-256 is enough to store them (https://www.rfc-editor.org/rfc/rfc6819#section-5.1.4.1.3).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
_DUMMY_HASH = _HASHER.hash("not a real password")


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` (PHC string format)."""
    return _HASHER.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True if ``password`` matches ``password_hash`` (constant time). A malformed hash
    is a mismatch, never an exception."""
    try:
        return _HASHER.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True if the hash was made with weaker parameters than today's: after a
    successful login, store :func:`hash_password` of the password again."""
    try:
        return _HASHER.check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


def burn_password_check(password: str) -> None:
    """Spend the time of one verification (for an unknown username), so that response
    times do not tell which usernames exist."""
    verify_password(_DUMMY_HASH, password)


def new_secret(nbytes: int = 32) -> str:
    """A random URL-safe secret (codes, refresh tokens, client secrets)."""
    return secrets.token_urlsafe(nbytes)


def new_identifier(nbytes: int = 16) -> str:
    """A random URL-safe identifier that never starts with ``-`` (a client_id that an
    operator passes to a command line, where a leading ``-`` reads as an option)."""
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def hash_secret(secret: str) -> str:
    """The SHA-256 hex digest of an opaque secret, as stored."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    """Compare a presented secret with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), secret_hash)

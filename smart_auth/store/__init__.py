"""Storage of the authorization server's records (see :mod:`smart_auth.store.base`).

:func:`open_auth_store` takes the same storage URLs as the FHIR server
(``sqlite:///relative/path``, ``sqlite:////absolute/path``, ``mongodb://...``,
``mongodb+srv://...``, ``mongomock://NAME/DB``): the auth records live next to the FHIR
data, in tables / collections whose names start with ``auth_``.
"""

from __future__ import annotations

import importlib.util

from smart_auth.store.base import (
    AuthorizationCode,
    AuthStore,
    Client,
    DuplicateError,
    Invitation,
    LaunchContext,
    RefreshToken,
    Revocation,
    User,
)

__all__ = [
    "AuthStore",
    "AuthorizationCode",
    "Client",
    "DuplicateError",
    "Invitation",
    "LaunchContext",
    "RefreshToken",
    "Revocation",
    "User",
    "open_auth_store",
]


def open_auth_store(storage_url: str, *, sqlite_synchronous: str = "NORMAL") -> AuthStore:
    """The auth store of a storage URL, ready to use (tables and indexes created)."""
    if storage_url.startswith("sqlite:"):
        from smart_auth.store.sqlite import SQLiteAuthStore

        return SQLiteAuthStore.from_url(storage_url, synchronous=sqlite_synchronous)
    if storage_url.startswith(("mongodb://", "mongodb+srv://", "mongomock:")):
        if storage_url.startswith("mongomock:") and importlib.util.find_spec("mongomock") is None:
            raise ValueError("mongomock:// needs mongomock: pip install 'fhir-server[test]'")
        from smart_auth.store.mongo import MongoAuthStore

        return MongoAuthStore.from_url(storage_url)
    raise ValueError(
        f"unsupported storage URL {storage_url!r} (expected sqlite:///PATH, mongodb://…,"
        " mongodb+srv://… or mongomock://)"
    )

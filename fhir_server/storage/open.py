"""Opening a store by its URL (``FHIR_SERVER_STORAGE``): the assembly of the store
implementations, kept out of ``base`` so that the protocol does not depend on them."""

from __future__ import annotations

import importlib.util

from fhir_server.redact import url_for_log
from fhir_server.storage.base import Store


def open_store(
    url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    sqlite_mmap_mib: int = 1024,
    server_selection_timeout: float | None = None,
) -> Store:
    """Create the store named by a storage URL: ``sqlite:///path``, ``mongodb://…`` or
    ``mongodb+srv://…`` (a MongoDB connection string), or ``mongomock://[name]`` (an
    in-memory MongoDB stand-in for tests and demos; needs the ``test`` extra).
    ``server_selection_timeout``: seconds a MongoDB client waits for a server (the
    driver's 30 s when None; the URL's ``serverSelectionTimeoutMS`` wins)."""
    if url.startswith("sqlite:"):
        from fhir_server.storage.sqlite import SQLiteStore

        return SQLiteStore.from_url(url, synchronous=sqlite_synchronous, mmap_mib=sqlite_mmap_mib)
    if url.startswith(("mongodb://", "mongodb+srv://", "mongomock:")):
        if url.startswith("mongomock:") and importlib.util.find_spec("mongomock") is None:
            raise ValueError("mongomock:// needs mongomock: pip install 'fhir-server[test]'")
        from fhir_server.storage.mongo import MongoStore

        return MongoStore.from_url(url, server_selection_timeout=server_selection_timeout)
    raise ValueError(
        f"unsupported storage URL {url_for_log(url)!r} (expected sqlite:///PATH, mongodb://…,"
        " mongodb+srv://… or mongomock://)"
    )

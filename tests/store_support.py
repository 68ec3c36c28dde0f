"""Helpers of the store-level tests: a write request as the HTTP layer builds it, and a
parsed search query."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fhir_server.interactions.write import content_builder, index_entries
from fhir_server.storage.base import WriteRequest
from fhir_server.storage.open import open_store
from fhir_server.storage.sqlite import SQLiteStore
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery


def put(resource: dict[str, Any]) -> WriteRequest:
    """An update (create or new version) of ``resource`` with its id, content and index."""
    type_, id_ = resource["resourceType"], resource["id"]
    return WriteRequest(
        type_, id_, "update", content_builder(resource, id_), index=index_entries(resource, id_)
    )


def observation_query(items: list[tuple[str, str]], default_count: int = 10) -> SearchQuery:
    """``Observation?items`` parsed strictly."""
    return parse_search(
        ["Observation"],
        items,
        strict=True,
        params_for=search_params,
        max_count=100,
        default_count=default_count,
    )


@asynccontextmanager
async def sqlite_store(path: Path) -> AsyncIterator[SQLiteStore]:
    """An open SQLite store on the file ``path``, closed on exit."""
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    try:
        yield store
    finally:
        await store.close()

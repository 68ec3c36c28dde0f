"""The database of each MongoDB search compiler test: its own, on the stand-in or on
``MONGODB_URI`` when it is set."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from fhir_server.storage.mongo_index import INDEXES
from fhir_server.storage.mongo_search import (
    RESOURCES,
)
from fhir_server.storage.mongomock_async import AsyncMockClient
from tests.test_mongo_search.support import MONGODB_URI


@pytest.fixture(params=["mongomock", "mongodb"])
async def db(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A database of its own: on the stand-in, or on ``MONGODB_URI`` when it is set."""
    name = f"fhir_test_search_{uuid.uuid4().hex}"
    if request.param == "mongodb":
        if not MONGODB_URI:
            pytest.skip("set MONGODB_URI to run against a real MongoDB")
        from pymongo import AsyncMongoClient

        client: Any = AsyncMongoClient(MONGODB_URI)
    else:
        client = AsyncMockClient(name)
    database = client[name]
    await database[RESOURCES].create_indexes(INDEXES)
    yield database
    await client.drop_database(name)
    await client.close()

"""The store of each MongoDB store test: its own database on the stand-in (answering as a
replica set and as a standalone server) or on ``MONGODB_URI`` when it is set."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from fhir_server.storage.mongo import MongoStore
from tests.test_mongo_store.support import MONGODB_URI


@pytest.fixture(params=["mongomock", "mongomock-standalone", "mongodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MongoStore]:
    name = f"t{uuid.uuid4().hex}"
    if request.param == "mongodb":
        if not MONGODB_URI:
            pytest.skip("set MONGODB_URI to run against a real MongoDB")
        instance = MongoStore.from_url(MONGODB_URI, database=f"fhir_test_{name}")
    elif request.param == "mongomock":
        instance = MongoStore.from_url(f"mongomock://{name}/fhir")
    else:
        instance = MongoStore.from_url(f"mongomock://{name}/fhir?standalone=true")
    await instance.open()
    yield instance
    await instance.client.drop_database(instance.db.name)
    await instance.close()

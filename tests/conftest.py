"""Shared fixtures: the app over real stores, driven in-process through httpx."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings

STORES = ["sqlite", "mongomock"]
"""Every store the backend-parametrized tests run on (MongoDB through the in-process
stand-in; ``tests/test_mongo_store.py`` also runs on a real server when MONGODB_URI is set)."""

BASE = "http://testserver/fhir"
JSON = {"content-type": "application/fhir+json"}


def storage_url(kind: str, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    if kind == "mongomock":  # a fresh in-memory server per test
        return f"mongomock://{tmp_path.name}-{id(tmp_path):x}/fhir"
    raise ValueError(kind)


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="off")


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            yield http

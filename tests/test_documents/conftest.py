"""Fixtures of the documents and education tests: the app with SMART on, on every store,
seeded with ``support.SEED`` through its own API, and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.test_documents.support import SEED, Token, bearer, issuer


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart")


@pytest.fixture
def token(app: Any) -> Token:
    return issuer(app)


@pytest.fixture
def admin(token: Token) -> dict[str, str]:
    return bearer(token("system/*.cruds"))


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    return bearer(token("patient/*.cruds", patient="alice"))


@pytest.fixture
def bob(token: Token) -> dict[str, str]:
    return bearer(token("patient/*.cruds", patient="bob"))


@pytest.fixture
async def http(app: Any, admin: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        for resource in SEED:
            path = f"{resource['resourceType']}/{resource['id']}"
            response = await client.put(path, json=resource, headers=admin)
            assert response.status_code in (200, 201), response.text
        yield client

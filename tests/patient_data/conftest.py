"""Fixtures of the patient-data security tests: the app with SMART on, on every store,
seeded with ``support.SEED``, and tokens of its own authorization server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.patient_data.support import Token, bearer, issuer, seed


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(storage=storage_url(request.param, tmp_path), auth="smart")


@pytest.fixture
def token(app: Any) -> Token:
    return issuer(app)


@pytest.fixture
async def http(app: Any, token: Token) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        await seed(client, bearer(token("system/*.cruds")))
        yield client


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    return bearer(token("patient/*.cruds", patient="alice"))


@pytest.fixture
def admin(token: Token) -> dict[str, str]:
    return bearer(token("system/*.cruds"))

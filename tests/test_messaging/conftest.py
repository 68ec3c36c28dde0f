"""Fixtures of the messaging and refill tests: the app with SMART on, on every store,
seeded with ``support.SEED``, and the people's tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from tests.conftest import BASE, STORES, storage_url
from tests.patient_data.support import issuer
from tests.test_messaging.support import People, seed

ATTACHMENT_LIMIT = 2048


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        storage=storage_url(request.param, tmp_path),
        auth="smart",
        organization_inboxes="Organization/billing",
        attachment_max_bytes=ATTACHMENT_LIMIT,
    )


@pytest.fixture
def people(app: Any) -> People:
    return People(issuer(app))


@pytest.fixture
async def http(app: Any, people: People) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        await seed(client, people.admin)
        yield client

"""Fixtures of the scheduling tests: the app with SMART on, on every store, seeded with
``support.SEED``, a 48 h cancellation cutoff and a telehealth link template, and tokens of
its own authorization server (patients, a caregiver, staff, a backend service)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from tests.app_client import asgi_client, system_admin
from tests.conftest import STORES, storage_url
from tests.patient_data.support import Token, bearer, issuer
from tests.scheduling.support import TELEHEALTH, seed


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        storage=storage_url(request.param, tmp_path),
        auth="smart",
        cancel_cutoff="48h",
        telehealth_url_template=TELEHEALTH,
    )


token = pytest.fixture(issuer, name="token")
"""Tokens of the app's own authorization server."""
admin = pytest.fixture(system_admin, name="admin")


@pytest.fixture
async def http(app: Any, admin: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        await seed(client, admin)
        yield client


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    """The narrowest scopes a scheduling app needs."""
    scopes = "patient/Slot.rs patient/Schedule.rs patient/Practitioner.rs patient/Appointment.cruds"
    return bearer(token(scopes, patient="alice"))


@pytest.fixture
def bob(token: Token) -> dict[str, str]:
    return bearer(token("patient/*.cruds", patient="bob"))


@pytest.fixture
def mum(token: Token) -> dict[str, str]:
    """Alice's caregiver."""
    return bearer(token("user/*.cruds", fhir_user="RelatedPerson/mum", patient="alice"))


@pytest.fixture
def staff(token: Token) -> dict[str, str]:
    return bearer(token("user/*.cruds", fhir_user="Practitioner/dr"))

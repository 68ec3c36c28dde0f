"""Fixtures of the wave-2 attack tests: the real application with SMART on, on every
store (SQLite file, the MongoDB stand-in), payments pointed at the Stripe test double,
seeded through its own API with ``support.SEED``; tokens of its own authorization
server for the attackers (Alice's app, Alice's caregiver) and for staff."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from tests.app_client import asgi_client, system_admin
from tests.conftest import STORES
from tests.doubles.fake_stripe import FakeStripe
from tests.doubles.stripe_settings import serve_stripe, stripe_settings
from tests.patient_data.support import Token, bearer, issuer
from tests.security_wave2.support import AUDIT_ABOUT_BOB, SEED

stripe_double = pytest.fixture(scope="module", name="stripe_double")(serve_stripe)


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path, stripe_double: FakeStripe) -> Settings:
    return stripe_settings(request.param, tmp_path, stripe_double)


token = pytest.fixture(issuer, name="token")
"""Tokens of the app's own authorization server (the app: ``tests.conftest``'s)."""
admin = pytest.fixture(system_admin, name="admin")


@pytest.fixture
async def http(app: Any, admin: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as client:
        # two transactions: the Appointments' rule reads their Slots as stored
        for batch in (
            [r for r in SEED if r["resourceType"] != "Appointment"],
            [r for r in SEED if r["resourceType"] == "Appointment"],
        ):
            response = await client.post("", json=_transaction(batch), headers=admin)
            assert response.status_code == 200, response.text
        made = await client.post("AuditEvent", json=AUDIT_ABOUT_BOB, headers=admin)
        assert made.status_code == 201, made.text
        client.headers["x-bob-audit"] = made.json()["id"]  # read back by the tests
        yield client


def _transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


@pytest.fixture
def alice(token: Token) -> dict[str, str]:
    """Alice's app (a malicious one asks for everything a patient may grant)."""
    return bearer(
        token("patient/*.cruds openid fhirUser", patient="alice", fhir_user="Patient/alice")
    )


@pytest.fixture
def mum(token: Token) -> dict[str, str]:
    """Alice's caregiver, launched for Alice."""
    return bearer(token("user/*.cruds", patient="alice", fhir_user="RelatedPerson/mum"))


@pytest.fixture
def dr(token: Token) -> dict[str, str]:
    return bearer(token("user/*.cruds", subject="u-dr", fhir_user="Practitioner/dr"))

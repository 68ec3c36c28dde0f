"""Fixtures of the payment tests: the Stripe double (one thread for the module), and the
app with SMART on, on every store, with ``FHIR_SERVER_PAYMENTS=stripe`` pointed at the
double, seeded with ``support.SEED``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, STORES
from tests.doubles.fake_stripe import FakeStripe
from tests.doubles.stripe_settings import serve_stripe, stripe_settings
from tests.test_payments.support import SEED, Portal

stripe_double = pytest.fixture(scope="module", name="stripe_double")(serve_stripe)


@pytest.fixture(params=STORES)
def settings(request: pytest.FixtureRequest, tmp_path: Path, stripe_double: FakeStripe) -> Settings:
    return stripe_settings(
        request.param, tmp_path, stripe_double, portal_url="https://portal.example/bills"
    )


@pytest.fixture
async def portal(settings: Settings, stripe_double: FakeStripe) -> AsyncIterator[Portal]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            portal = Portal(http, app, stripe_double)
            for resource in SEED:
                path = f"{resource['resourceType']}/{resource['id']}"
                response = await http.put(path, json=resource, headers=portal.admin)
                assert response.status_code in (200, 201), response.text
            yield portal

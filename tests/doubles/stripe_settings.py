"""The app's side of the Stripe test double (:mod:`tests.doubles.fake_stripe`), shared by
the test packages that pay bills (tests/test_payments, tests/security_wave2): the double
for a fixture, and the settings of an app with SMART on whose payments go to it.

A conftest takes the double as its fixture with
``stripe_double = pytest.fixture(scope="module", name="stripe_double")(serve_stripe)``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fhir_server.config import Settings
from tests.conftest import storage_url
from tests.doubles.fake_stripe import FakeStripe, fake_stripe


def serve_stripe() -> Iterator[FakeStripe]:
    """The Stripe double, serving on a thread of its own while the fixture lasts."""
    with fake_stripe() as fake:
        yield fake


def stripe_settings(kind: str, tmp_path: Path, stripe: FakeStripe, **extra: Any) -> Settings:
    """Settings of an app on the store ``kind`` (``tests.conftest.STORES``), SMART on,
    ``FHIR_SERVER_PAYMENTS=stripe`` pointed at ``stripe``; ``extra``: other settings."""
    return Settings(
        storage=storage_url(kind, tmp_path),
        auth="smart",
        payments="stripe",
        stripe_secret_key=stripe.secret_key,
        stripe_webhook_secret=stripe.webhook_secret,
        stripe_api_base=stripe.api_base,
        **extra,
    )

"""End to end over real HTTP: ``fhir-server serve`` (uvicorn) with
``FHIR_SERVER_PAYMENTS=stripe`` pointed at the Stripe double, which sends its signed
webhook to the server's ``/payments/webhook`` itself. One store (SQLite): the stores are
covered in-process by the other payment tests."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.doubles.fake_stripe import FakeStripe
from tests.live import LiveServer
from tests.test_payments.support import SEED


def test_a_checkout_paid_at_the_processor_balances_the_bill(
    tmp_path: Path, stripe_double: FakeStripe
) -> None:
    server = LiveServer(
        f"sqlite:///{tmp_path / 'fhir.sqlite3'}",
        tmp_path / "server.log",
        FHIR_SERVER_PAYMENTS="stripe",
        FHIR_SERVER_STRIPE_SECRET_KEY=stripe_double.secret_key,
        FHIR_SERVER_STRIPE_WEBHOOK_SECRET=stripe_double.webhook_secret,
        FHIR_SERVER_STRIPE_API_BASE=stripe_double.api_base,
    )
    try:
        with httpx.Client(base_url=server.base + "/", timeout=10) as http:
            for resource in SEED:
                path = f"{resource['resourceType']}/{resource['id']}"
                assert http.put(path, json=resource).status_code in (200, 201)
            response = http.post("Invoice/inv-bob/$pay")
            assert response.status_code == 200, response.text
            found = {p["name"]: p for p in response.json()["parameter"]}
            session = found["session"]["valueString"]
            # the default return URL is the server's portal (FHIR_SERVER_PORTAL_URL unset)
            opened = stripe_double.sessions[session]
            assert opened["cancel_url"] == f"{server.origin}/portal/?payment=cancelled"
            event = stripe_double.pay(session)
            assert event.send(f"{server.origin}/payments/webhook") == 200
            assert event.send(f"{server.origin}/payments/webhook") == 200  # a retry
            payments = http.get("PaymentReconciliation").json().get("entry", [])
            assert len(payments) == 1
            assert http.get("Invoice/inv-bob").json()["status"] == "balanced"
    finally:
        server.stop()

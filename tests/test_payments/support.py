"""Data and helpers of the payment tests: two patients, their bills and coverages, and
the portal's calls over HTTP with tokens of the app's own authorization server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import BASE
from tests.doubles.fake_stripe import FakeStripe, SignedEvent
from tests.patient_data.support import bearer, issuer

ORIGIN = BASE.removesuffix("/fhir")
WEBHOOK = f"{ORIGIN}/payments/webhook"


def invoice(id_: str, patient: str, total: str, status: str = "issued") -> dict[str, Any]:
    money = {"value": float(total), "currency": "USD"}
    return {
        "resourceType": "Invoice",
        "id": id_,
        "identifier": [{"system": "urn:test:invoice", "value": id_.upper()}],
        "status": status,
        "subject": {"reference": f"Patient/{patient}"},
        "recipient": {"reference": f"Patient/{patient}"},
        "date": "2026-11-02",
        "lineItem": [
            {
                "sequence": 1,
                "chargeItemCodeableConcept": {"text": "Office visit"},
                "priceComponent": [{"type": "base", "amount": money}],
            }
        ],
        "totalNet": money,
        "totalGross": money,
    }


def coverage(id_: str, patient: str, member: str) -> dict[str, Any]:
    return {
        "resourceType": "Coverage",
        "id": id_,
        "status": "active",
        "subscriberId": member,
        "subscriber": {"reference": f"Patient/{patient}"},
        "beneficiary": {"reference": f"Patient/{patient}"},
        "relationship": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                    "code": "self",
                }
            ]
        },
        "period": {"start": "2026-01-01", "end": "2026-12-31"},
        "payor": [{"reference": "Organization/payer"}],
        "class": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                            "code": "group",
                        }
                    ]
                },
                "value": "GRP-1",
            }
        ],
    }


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell"}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bravo"}]},
    {"resourceType": "Organization", "id": "payer", "name": "Acme Health Insurance"},
    invoice("inv-alice", "alice", "120.00"),
    invoice("inv-alice-paid", "alice", "40.00", status="balanced"),
    invoice("inv-alice-cancelled", "alice", "30.00", status="cancelled"),
    invoice("inv-bob", "bob", "80.00"),
    coverage("cov-alice", "alice", "M-ALICE"),
    coverage("cov-bob", "bob", "M-BOB"),
]


class Portal:
    """The app over HTTP, with tokens of its own authorization server."""

    def __init__(self, http: httpx.AsyncClient, app: Any, stripe: FakeStripe) -> None:
        self.http = http
        self.stripe = stripe
        token = issuer(app)
        self.alice = bearer(token("patient/*.cruds", patient="alice"))
        self.bob = bearer(token("patient/*.cruds", patient="bob"))
        self.admin = bearer(token("system/*.cruds"))

    async def pay(
        self, invoice_id: str, who: dict[str, str], *parameters: dict[str, Any]
    ) -> httpx.Response:
        body = {"resourceType": "Parameters", "parameter": list(parameters)}
        return await self.http.post(f"Invoice/{invoice_id}/$pay", json=body, headers=who)

    async def checkout(self, invoice_id: str, who: dict[str, str], **amount: Any) -> str:
        """Open a checkout session and return its id."""
        parameters = [{"name": "amount", "valueMoney": amount}] if amount else []
        response = await self.pay(invoice_id, who, *parameters)
        assert response.status_code == 200, response.text
        found = {p["name"]: p for p in response.json()["parameter"]}
        return str(found["session"]["valueString"])

    webhook_url = WEBHOOK

    async def deliver(self, event: SignedEvent) -> httpx.Response:
        return await self.http.post(WEBHOOK, content=event.body, headers=event.headers)

    async def payments(self, who: dict[str, str]) -> list[dict[str, Any]]:
        response = await self.http.get("PaymentReconciliation", headers=who)
        assert response.status_code == 200, response.text
        return [e["resource"] for e in response.json().get("entry", [])]

    async def invoice(self, invoice_id: str) -> dict[str, Any]:
        response = await self.http.get(f"Invoice/{invoice_id}", headers=self.admin)
        assert response.status_code == 200, response.text
        return dict(response.json())

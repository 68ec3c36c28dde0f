"""The demo population's bills (``fhir-server demo-data``): issued, paid and partly paid
Invoices with their PaymentReconciliations, written through the import path; a patient
token reads its own payments (their patient recorded on import by the billing rule) and
pays what is open of a partly paid bill."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.demo_data import Population, write_population
from fhir_server.storage.open import open_store
from tests.conftest import BASE
from tests.patient_data.support import bearer, issuer

TODAY = date(2026, 12, 6)


def _bills(population: list[dict[str, Any]]) -> tuple[dict[str, dict], dict[str, list[dict]]]:
    invoices = {r["id"]: r for r in population if r["resourceType"] == "Invoice"}
    payments: dict[str, list[dict]] = defaultdict(list)
    for r in population:
        if r["resourceType"] == "PaymentReconciliation":
            invoice = invoices[r["detail"][0]["request"]["reference"].removeprefix("Invoice/")]
            payments[invoice["subject"]["reference"]].append(r)
    return invoices, payments


def test_the_demo_has_issued_paid_and_partly_paid_bills() -> None:
    population = list(Population(10, seed=1, today=TODAY))
    invoices, payments = _bills(population)
    paid_for = {
        p["detail"][0]["request"]["reference"].removeprefix("Invoice/"): p
        for found in payments.values()
        for p in found
    }
    kinds = set()
    for id_, invoice in invoices.items():
        payment = paid_for.get(id_)
        if invoice["status"] == "balanced":
            assert payment is not None
            assert payment["paymentAmount"]["value"] == invoice["totalGross"]["value"]
            kinds.add("paid")
        elif payment is None:
            kinds.add("issued")
        else:
            assert 0 < payment["paymentAmount"]["value"] < invoice["totalGross"]["value"]
            kinds.add("partly paid")
    assert kinds == {"paid", "issued", "partly paid"}
    assert sum(1 for r in population if r["resourceType"] == "Coverage") == 10


@pytest.mark.parametrize("settings", ["sqlite"], indirect=True)  # the rule: every store
async def test_demo_payments_are_their_patients(settings: Settings, stripe_double: Any) -> None:
    population = list(Population(10, seed=1, today=TODAY))
    invoices, payments = _bills(population)
    store = open_store(settings.storage)
    await store.open()
    try:
        report = await write_population(store, Population(10, seed=1, today=TODAY))
    finally:
        await store.close()
    assert report.problem_count == 0
    partly = next(
        p
        for found in payments.values()
        for p in found
        if invoices[p["detail"][0]["request"]["reference"][8:]]["status"] == "issued"
    )
    invoice = invoices[partly["detail"][0]["request"]["reference"][8:]]
    patient = invoice["subject"]["reference"]
    others = [p for p in payments if p != patient and payments[p]]
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = issuer(app)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            for who in (patient, others[0]):
                headers = bearer(token("patient/*.rs", patient=who.removeprefix("Patient/")))
                found = await http.get("PaymentReconciliation?_count=100", headers=headers)
                assert found.status_code == 200, found.text
                ids = {e["resource"]["id"] for e in found.json().get("entry", [])}
                assert ids == {p["id"] for p in payments[who]}
            headers = bearer(token("patient/*.rs", patient=patient.removeprefix("Patient/")))
            response = await http.post(f"Invoice/{invoice['id']}/$pay", headers=headers)
            assert response.status_code == 200, response.text
            amount = next(p for p in response.json()["parameter"] if p["name"] == "amount")
            due = Decimal(str(invoice["totalGross"]["value"]))
            paid = Decimal(str(partly["paymentAmount"]["value"]))
            assert Decimal(str(amount["valueMoney"]["value"])) == due - paid

"""Payment history, the billing write rules and insurance (issue 20): a patient token
reads its own payments only (PaymentReconciliation is outside the R4 Patient compartment:
its patient is its Invoice's, recorded when it is written, on every write path); Invoices
and payments are written by staff; Coverage is the patient's to read and update, each
change a version in its history. On SQLite and the MongoDB stand-in."""

from __future__ import annotations

from typing import Any

from tests.test_payments.support import Portal, invoice


def cash_payment(invoice_id: str, amount: float, *more: str) -> dict[str, Any]:
    """A payment recorded by staff at the front desk."""
    money = {"value": amount, "currency": "USD"}
    return {
        "resourceType": "PaymentReconciliation",
        "status": "active",
        "created": "2026-11-20T10:00:00Z",
        "paymentDate": "2026-11-20",
        "paymentAmount": money,
        "paymentIdentifier": {"system": "urn:test:cash", "value": f"cash-{invoice_id}"},
        "detail": [
            {
                "type": {"coding": [{"code": "payment"}]},
                "request": {"reference": f"Invoice/{ref}"},
                "amount": money,
            }
            for ref in (invoice_id, *more)
        ],
    }


async def test_a_patient_reads_its_own_payments_only(portal: Portal) -> None:
    for invoice_id, who in (("inv-alice", portal.alice), ("inv-bob", portal.bob)):
        session = await portal.checkout(invoice_id, who)
        assert (await portal.deliver(portal.stripe.pay(session))).status_code == 200
    alice = await portal.payments(portal.alice)
    bob = await portal.payments(portal.bob)
    assert [p["detail"][0]["request"]["reference"] for p in alice] == ["Invoice/inv-alice"]
    assert [p["detail"][0]["request"]["reference"] for p in bob] == ["Invoice/inv-bob"]
    assert len(await portal.payments(portal.admin)) == 2
    # and by id: another patient's payment is not found
    other = await portal.http.get(f"PaymentReconciliation/{bob[0]['id']}", headers=portal.alice)
    assert other.status_code == 404


async def test_a_payment_staff_record_is_the_invoices_patients(portal: Portal) -> None:
    created = await portal.http.post(
        "PaymentReconciliation", json=cash_payment("inv-bob", 80.0), headers=portal.admin
    )
    assert created.status_code == 201, created.text
    assert await portal.payments(portal.alice) == []
    [payment] = await portal.payments(portal.bob)
    assert payment["id"] == created.json()["id"]
    # paid in full: the billing rule balanced the invoice in the same transaction
    assert (await portal.invoice("inv-bob"))["status"] == "balanced"


async def test_a_payment_for_two_patients_bills_is_neither_patients(portal: Portal) -> None:
    created = await portal.http.post(
        "PaymentReconciliation",
        json=cash_payment("inv-bob", 10.0, "inv-alice"),
        headers=portal.admin,
    )
    assert created.status_code == 201, created.text
    assert await portal.payments(portal.alice) == []
    assert await portal.payments(portal.bob) == []


async def test_an_invoice_and_its_payment_in_one_transaction(portal: Portal) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": invoice("inv-alice-new", "alice", "15.00"),
                "request": {"method": "PUT", "url": "Invoice/inv-alice-new"},
            },
            {
                "resource": cash_payment("inv-alice-new", 5.0),
                "request": {"method": "POST", "url": "PaymentReconciliation"},
            },
        ],
    }
    response = await portal.http.post("", json=bundle, headers=portal.admin)
    assert response.status_code == 200, response.text
    [payment] = await portal.payments(portal.alice)
    assert payment["detail"][0]["request"]["reference"] == "Invoice/inv-alice-new"
    assert await portal.payments(portal.bob) == []


async def test_patients_do_not_write_bills_or_payments(portal: Portal) -> None:
    paid = {**invoice("inv-alice", "alice", "120.00"), "status": "balanced"}
    response = await portal.http.put("Invoice/inv-alice", json=paid, headers=portal.alice)
    assert response.status_code == 403, response.text
    response = await portal.http.post(
        "PaymentReconciliation", json=cash_payment("inv-alice", 120.0), headers=portal.alice
    )
    assert response.status_code == 403, response.text
    assert (await portal.invoice("inv-alice"))["meta"]["versionId"] == "1"
    assert await portal.payments(portal.admin) == []


async def test_a_patient_updates_its_coverage_and_staff_see_the_versions(portal: Portal) -> None:
    response = await portal.http.get("Coverage/cov-alice", headers=portal.alice)
    assert response.status_code == 200, response.text
    changed = {**response.json(), "subscriberId": "M-ALICE-2027"}
    changed.pop("meta")
    response = await portal.http.put("Coverage/cov-alice", json=changed, headers=portal.alice)
    assert response.status_code == 200, response.text
    history = await portal.http.get("Coverage/cov-alice/_history", headers=portal.admin)
    members = [e["resource"]["subscriberId"] for e in history.json()["entry"]]
    assert members == ["M-ALICE-2027", "M-ALICE"]
    # another patient's coverage: neither readable nor writable
    assert (await portal.http.get("Coverage/cov-bob", headers=portal.alice)).status_code == 404
    response = await portal.http.put(
        "Coverage/cov-bob", json={**changed, "id": "cov-bob"}, headers=portal.alice
    )
    assert response.status_code in (403, 404), response.text
    bob = await portal.http.get("Coverage/cov-bob", headers=portal.admin)
    assert bob.json()["subscriberId"] == "M-BOB"

"""Billing workflow rules (issue 20, "Bills and payment"): Invoices
(https://hl7.org/fhir/R4/invoice.html) and the PaymentReconciliations
(https://hl7.org/fhir/R4/paymentreconciliation.html) that record their payments.

- Staff, backend services and the server write them; a patient-context caller (a
  patient, a caregiver) never does: a patient must not mark a bill ``balanced`` nor
  record a payment of its own making (``403``). A patient pays through
  ``Invoice/[id]/$pay``, and the processor's signed webhook records the payment.
- A PaymentReconciliation names no Patient and is outside R4's Patient compartment: its
  patients are those of the Invoices its ``detail.request`` names, recorded as its
  memberships when it is written (the Invoice as stored, or as written in the same
  request), so a patient-context token reads the payments of its own bills and no other
  (the access rule for types outside the compartment: that patient and no other).
- A payment recorded for an ``issued`` Invoice whose payments then cover its total makes
  the Invoice ``balanced`` in the same transaction (a compare-and-set on the version
  read: a concurrent change evaluates the request again).
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

from fhir_server.payments.ledger import (
    PAYABLE,
    PAYMENT,
    amount_due,
    invoice_patients,
    paid_for,
    references_to_invoices,
)
from fhir_server.storage.base import IndexEntries
from fhir_server.workflows.base import Change, Transaction, rule
from resources import fhir_json
from resources.compartments import patient_member_types
from resources.errors import FhirError
from resources.search.query import Grant, GrantClause, SearchQuery

INVOICE = "Invoice"


@rule(INVOICE, PAYMENT)
async def written_by_staff(tx: Transaction, change: Change) -> None:
    """Invoices and payments are written by staff and the server only."""
    if not tx.caller.staff:
        raise FhirError(
            403,
            "forbidden",
            f"A {change.type} is written by staff and the payment processor: a bill is"
            " paid with Invoice/[id]/$pay",
        )


@rule(PAYMENT)
async def payment_of_invoices(tx: Transaction, change: Change) -> None:
    """The payment's patients are its Invoices'; an Invoice it pays in full is
    balanced (see the module)."""
    payment = change.resource
    if payment is None or change.request.index is None:
        return
    ids = list(dict.fromkeys(references_to_invoices(payment)))
    patients = dict.fromkeys(change.request.index.compartments)
    invoices: list[tuple[str, dict[str, Any], int | None]] = []
    for id_ in ids:
        invoice, version = await _invoice(tx, id_)
        if invoice is not None:
            patients.update(dict.fromkeys(invoice_patients(invoice, id_)))
            invoices.append((id_, invoice, version))
    index: IndexEntries = replace(change.request.index, compartments=tuple(patients))
    change.request = replace(change.request, index=index)
    if payment.get("status", "active") != "active":
        return
    for id_, invoice, version in invoices:
        if version is not None and await _paid_in_full(tx, id_, invoice):
            _balance(tx, id_, invoice, version)


async def _invoice(tx: Transaction, id_: str) -> tuple[dict[str, Any] | None, int | None]:
    """The Invoice as this request writes it (version None), else as stored."""
    for other in tx.changing([INVOICE]):
        if other.id == id_:
            return other.resource, None
    return await tx.current(INVOICE, id_)


async def _paid_in_full(tx: Transaction, id_: str, invoice: dict[str, Any]) -> bool:
    """Whether the payments of ``Invoice/id_`` (stored ones, and those this request
    writes in their place or besides) cover its total."""
    due = amount_due(invoice)
    if due is None or invoice.get("status") != PAYABLE:
        return False
    reference = f"{INVOICE}/{id_}"
    written = {c.id: c.resource for c in tx.changing([PAYMENT])}
    paid = sum(
        (paid_for(resource, reference) for resource in written.values() if resource),
        Decimal(0),
    )
    patients = invoice_patients(invoice, id_)
    if patients:
        grant = Grant(frozenset({PAYMENT}), patients, patient_member_types())
        query = SearchQuery((PAYMENT,), [GrantClause(grant)])
        for stored in await tx.search(query, 1000):
            if stored.id not in written and stored.content is not None:
                paid += paid_for(fhir_json.loads(stored.content), reference)
    return paid >= due[0]


def _balance(tx: Transaction, id_: str, invoice: dict[str, Any], version: int) -> None:
    balanced: set[str] = tx.state.setdefault("billing.balanced", set())
    if id_ in balanced:
        return
    balanced.add(id_)
    tx.update({**invoice, "status": "balanced"}, if_match=version)

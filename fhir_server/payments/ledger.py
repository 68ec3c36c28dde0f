"""Invoices and the payments recorded for them, in FHIR terms: what is open on an
``Invoice`` (https://hl7.org/fhir/R4/invoice.html) and the ``PaymentReconciliation``
(https://hl7.org/fhir/R4/paymentreconciliation.html) that records a payment, written with
the Invoice's new status in one store transaction.

- The amount due is ``Invoice.totalGross`` (else ``totalNet``); what is paid is the sum of
  the ``detail.amount`` of the active PaymentReconciliations whose ``detail.request`` is
  the Invoice. They are found among the payments of the Invoice's patient (the
  memberships recorded with each PaymentReconciliation, see :func:`invoice_patients`).
- A payment is one PaymentReconciliation: ``identifier`` the processor's checkout
  session, ``paymentIdentifier`` the processor's payment id, ``paymentAmount``, and one
  ``detail`` whose ``request`` is the Invoice. It is written as a conditional create on
  the session identifier (checked atomically by the store), so a session is recorded
  once, whatever the number of events and concurrent deliveries.
- When the payments reach the amount due, the Invoice becomes ``balanced`` in the same
  transaction: the ``billing`` workflow rule (``fhir_server.workflows.billing``) adds
  that write, with a compare-and-set on the version read, on every path that records a
  payment (this one included); :func:`settle` catches part payments committed
  concurrently that add up only together.

PaymentReconciliation is outside R4's Patient compartment and names no Patient: its
patient is the patient of the Invoice(s) it references, recorded as its membership when
it is written (here, and by the ``billing`` workflow rule for every other write path),
so a patient-context token reads its own payments only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.interactions.write import check_valid, content_builder, index_entries
from fhir_server.payments.processor import PaymentEvent
from fhir_server.storage.base import (
    ConditionMatched,
    Store,
    VersionConflict,
    WriteRequest,
    now_instant,
)
from resources import fhir_json
from resources.compartments import patient_member_types
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import Grant, GrantClause, SearchQuery

PAYMENT = "PaymentReconciliation"
PAYABLE = "issued"
"""The only Invoice status that can be paid (https://hl7.org/fhir/R4/valueset-invoice-status.html)."""
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/payment-type"
_ATTEMPTS = 8


def identifier_system(processor: str, what: str) -> str:
    """The identifier system of a processor's ids (``checkout-session``, ``payment``)."""
    return f"urn:fhir-server:payments:{processor}:{what}"


# -- what is due and what is paid ------------------------------------------------------------


def amount_due(invoice: dict[str, Any]) -> tuple[Decimal, str] | None:
    """``totalGross`` (else ``totalNet``) as (value, currency); None without a total."""
    for key in ("totalGross", "totalNet"):
        money = invoice.get(key)
        if isinstance(money, dict):
            value = decimal_of(money.get("value"))
            if value is not None:
                return value, str(money.get("currency") or "USD").upper()
    return None


def invoice_patients(invoice: dict[str, Any], id_: str) -> tuple[str, ...]:
    """The Patient compartments (``Patient/1``) an Invoice is in: its ``subject`` and a
    Patient ``recipient`` (R4 CompartmentDefinition)."""
    return tuple(index_entries(invoice, id_).compartments)


def paid_for(payment: dict[str, Any], invoice: str) -> Decimal:
    """What an (active) PaymentReconciliation paid towards ``Invoice/[id]``."""
    if payment.get("status", "active") != "active":
        return Decimal(0)
    details = [d for d in payment.get("detail") or [] if isinstance(d, dict)]
    mine = [d for d in details if (d.get("request") or {}).get("reference") == invoice]
    total = Decimal(0)
    for detail in mine:
        value = decimal_of((detail.get("amount") or {}).get("value"))
        if value is None and len(details) == 1:
            value = decimal_of((payment.get("paymentAmount") or {}).get("value"))
        total += value or Decimal(0)
    return total


async def paid_so_far(store: Store, invoice: str, patients: Sequence[str]) -> Decimal:
    """The sum paid towards ``Invoice/[id]`` by the recorded payments of its patients."""
    if not patients:
        return Decimal(0)
    grant = Grant(frozenset({PAYMENT}), tuple(patients), patient_member_types())
    query = SearchQuery((PAYMENT,), [GrantClause(grant)])
    total, cursor = Decimal(0), None
    while True:
        page = await store.search(query, cursor, 500, False)
        for stored in page.entries:
            if stored.content is not None:
                total += paid_for(fhir_json.loads(stored.content), invoice)
        cursor = page.next_cursor
        if cursor is None:
            return total


@dataclass(frozen=True)
class Balance:
    """An Invoice as the ledger sees it."""

    invoice: dict[str, Any]
    version: int
    due: Decimal
    currency: str
    paid: Decimal
    patients: tuple[str, ...]

    @property
    def open(self) -> Decimal:
        return max(self.due - self.paid, Decimal(0))


async def balance(store: Store, invoice: dict[str, Any], version: int) -> Balance | None:
    """What is due and paid on ``invoice`` (None: it has no total)."""
    due = amount_due(invoice)
    if due is None:
        return None
    reference = f"Invoice/{invoice['id']}"
    patients = invoice_patients(invoice, invoice["id"])
    paid = await paid_so_far(store, reference, patients)
    return Balance(invoice, version, due[0], due[1], paid, patients)


# -- recording a payment ---------------------------------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """What recording an event did."""

    payment: str | None
    """``PaymentReconciliation/[id]`` (None: nothing recorded)."""
    created: bool
    message: str = ""


async def record_payment(store: Store, processor: str, event: PaymentEvent) -> Recorded:
    """Record ``event`` (see the module) through ``store``, a store with the workflow
    rules (``fhir_server.workflows.billing`` balances the Invoice in the same
    transaction); nothing when the session is recorded already."""
    kind, _, invoice_id = event.invoice.partition("/")
    if kind != "Invoice" or not invoice_id:
        return Recorded(None, False, message=f"not an Invoice: {event.invoice!r}")
    stored = await store.read("Invoice", invoice_id)
    if stored is None or stored.deleted or stored.content is None:
        return Recorded(None, False, message=f"{event.invoice} is not known")
    invoice = fhir_json.loads(stored.content)
    payment = payment_reconciliation(processor, event)
    try:
        [result] = await store.write_batch([_payment_request(payment, processor, event, invoice)])
    except ConditionMatched as matched:
        found = matched.matches[0]
        return Recorded(f"{found.type}/{found.id}", False, message="recorded already")
    made = result.stored
    assert made is not None
    return Recorded(f"{made.type}/{made.id}", True)


def payment_reconciliation(processor: str, event: PaymentEvent) -> dict[str, Any]:
    """The PaymentReconciliation of a processor's payment event."""
    when = datetime.fromtimestamp(event.created, UTC) if event.created else datetime.now(UTC)
    money = {"value": event.amount, "currency": event.currency}
    return {
        "resourceType": PAYMENT,
        "identifier": [
            {"system": identifier_system(processor, "checkout-session"), "value": event.session}
        ],
        "status": "active",
        "created": now_instant(),
        "paymentDate": when.date().isoformat(),
        "paymentAmount": money,
        "paymentIdentifier": {
            "system": identifier_system(processor, "payment"),
            "value": event.payment,
        },
        "outcome": "complete",
        "disposition": f"Paid online ({processor} checkout {event.session})",
        "detail": [
            {
                "identifier": {
                    "system": identifier_system(processor, "event"),
                    "value": event.event,
                },
                "type": {"coding": [{"system": PAYMENT_TYPE, "code": "payment"}]},
                "request": {"reference": event.invoice},
                "date": when.date().isoformat(),
                "amount": money,
            }
        ],
    }


def _payment_request(
    payment: dict[str, Any], processor: str, event: PaymentEvent, invoice: dict[str, Any]
) -> WriteRequest:
    """The conditional create of ``payment``: once per checkout session."""
    check_valid(payment)
    id_ = str(uuid.uuid4())
    index = index_entries(payment, id_)
    patients = invoice_patients(invoice, invoice["id"])
    session = f"{identifier_system(processor, 'checkout-session')}|{event.session}"
    return WriteRequest(
        PAYMENT,
        id_,
        "create",
        content_builder(payment, id_),
        must_not_exist=True,
        index=replace(index, compartments=patients),
        unless_exists=_by_identifier(session),
    )


def _by_identifier(token: str) -> SearchQuery:
    return parse_search(
        [PAYMENT],
        [("identifier", token)],
        strict=True,
        params_for=search_params,
        max_count=2,
        default_count=2,
    )


def _settles(due: Balance, amount: Decimal) -> bool:
    return due.invoice.get("status") == PAYABLE and due.paid + amount >= due.due


def _balanced_request(due: Balance) -> WriteRequest:
    invoice = {**due.invoice, "status": "balanced"}
    id_ = invoice["id"]
    return WriteRequest(
        "Invoice",
        id_,
        "update",
        content_builder(invoice, id_),
        if_match=due.version,
        index=index_entries(invoice, id_),
    )


async def settle(store: Store, invoice_id: str) -> bool:
    """Make the Invoice ``balanced`` if its recorded payments cover it: after a payment
    was committed, for part payments committed concurrently (each rule saw only its own
    and the ones before); True when it did."""
    for _ in range(_ATTEMPTS):
        stored = await store.read("Invoice", invoice_id)
        if stored is None or stored.deleted or stored.content is None:
            return False
        invoice = fhir_json.loads(stored.content)
        if invoice.get("status") != PAYABLE:
            return False
        due = await balance(store, invoice, stored.version)
        if due is None or not _settles(due, Decimal(0)):
            return False
        try:
            await store.write_batch([_balanced_request(due)])
        except VersionConflict:
            continue
        return True
    return False


def decimal_of(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def references_to_invoices(payment: dict[str, Any]) -> Iterable[str]:
    """The Invoice ids a PaymentReconciliation's ``detail.request`` names."""
    for detail in payment.get("detail") or []:
        reference = (
            (detail.get("request") or {}).get("reference") if isinstance(detail, dict) else None
        )
        if isinstance(reference, str) and reference.startswith("Invoice/"):
            yield reference.removeprefix("Invoice/")

"""The demo population's payments: a ``PaymentReconciliation``
(https://hl7.org/fhir/R4/paymentreconciliation.html) for every paid (``balanced``)
Invoice, paying it in full, and for one issued Invoice in three a part payment (40 %),
so the portal shows issued, paid and partly paid bills.

Deterministic without drawing from the patient's random generator (the rest of the
population stays as it was): which bills are partly paid follows from the patient's and
the visit's numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from fhir_server.demo.layout import ref, when
from fhir_server.demo.patient import Person

PART = Decimal("0.4")
PAYMENT_TYPE = "http://terminology.hl7.org/CodeSystem/payment-type"


def payments(person: Person, v: int, invoice: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The payment of visit ``v``'s Invoice, if it is paid or partly paid."""
    total = Decimal(str(invoice["totalGross"]["value"]))
    issued = datetime.fromisoformat(invoice["date"]).replace(tzinfo=None)
    if invoice["status"] == "balanced":
        amount, paid, how = total, issued + timedelta(days=12), "Paid online"
    elif (person.n + v) % 3 == 0:
        amount = (total * PART).quantize(Decimal("0.01"))
        paid, how = issued + timedelta(days=5), "Part payment at the front desk"
    else:
        return
    money = {"value": amount, "currency": invoice["totalGross"].get("currency", "USD")}
    number = f"PAY-{person.n:06d}-{v:02d}"
    yield {
        "resourceType": "PaymentReconciliation",
        "id": person.sub_id("pay", v),
        "identifier": [{"system": "urn:demo:payment", "value": number}],
        "status": "active",
        "created": when(paid),
        "paymentDate": paid.date().isoformat(),
        "paymentAmount": money,
        "paymentIdentifier": {"system": "urn:demo:payment", "value": number},
        "outcome": "complete",
        "disposition": how,
        "detail": [
            {
                "type": {"coding": [{"system": PAYMENT_TYPE, "code": "payment"}]},
                "request": ref("Invoice", invoice["id"]),
                "date": paid.date().isoformat(),
                "amount": money,
            }
        ],
    }

"""``POST [base]/Invoice/[id]/$pay``: open a checkout session at the payment processor for
paying a bill online (issue 20; an operation of this server, declared below and listed in
the CapabilityStatement; https://hl7.org/fhir/R4/operations.html).

In: ``amount`` (Money; default what is open on the Invoice) and ``returnUrl`` (url;
where the payer's browser returns, default ``FHIR_SERVER_PORTAL_URL``, else the server's
``/portal/``). Out: ``200`` with Parameters ``url`` (valueUrl, the processor's checkout
page) and ``session`` (valueString, the processor's session id). Nothing is recorded
here: the payment is recorded when the processor's signed webhook says it was made
(:mod:`fhir_server.payments.webhook`).

Refused, with no session created: an Invoice the caller may not read (``404``, as for
one that does not exist; a token without Invoice scopes: ``403``), one that is not
``issued`` (balanced, cancelled, draft, entered in error: ``422``), an amount ≤ 0, over
what is open, in another currency or finer than the currency's smallest unit (``422``).
Payments off: ``501``; the processor failing: ``502``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from fhir_server.access import GuardedStore
from fhir_server.operations.base import (
    Context,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
)
from fhir_server.payments.ledger import PAYABLE, Balance, balance, decimal_of
from fhir_server.payments.processor import (
    CheckoutRequest,
    ProcessorUnavailable,
    minor_units,
    payments_off,
    processor_for,
)
from fhir_server.storage.base import Store
from resources import fhir_json
from resources.errors import FhirError, gone, not_found

CANONICAL = "urn:fhir-server:OperationDefinition:Invoice-pay"


async def handle(ctx: Context, call: Invocation) -> FhirResponse:
    processor = processor_for(ctx.settings)
    if processor is None:
        raise payments_off()
    assert call.id is not None
    stored = await ctx.store.read("Invoice", call.id)
    if stored is None:
        raise not_found(f"Invoice/{call.id} is not known")
    if stored.deleted or stored.content is None:
        raise gone(f"Invoice/{call.id} was deleted")
    invoice = fhir_json.loads(stored.content)
    status = invoice.get("status")
    if status != PAYABLE:
        raise _refused(f"Invoice/{call.id} is {status}: only an issued invoice can be paid")
    due = await balance(_unguarded(ctx.store), invoice, stored.version)
    if due is None:
        raise _refused(f"Invoice/{call.id} has no total (totalGross or totalNet) to pay")
    if not due.patients:
        raise _refused(f"Invoice/{call.id} names no patient (subject) to pay for")
    if due.open <= 0:
        raise _refused(f"Nothing is open on Invoice/{call.id}: its payments cover it")
    amount = _amount(call, due)
    checkout = await _checkout(
        processor,
        CheckoutRequest(
            invoice=f"Invoice/{call.id}",
            amount=amount,
            currency=due.currency,
            description=_description(invoice),
            return_url=_return_url(ctx, call),
            patient=due.patients[0],
        ),
    )
    return FhirResponse(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "url", "valueUrl": checkout.url},
                {"name": "session", "valueString": checkout.session},
                {"name": "amount", "valueMoney": {"value": amount, "currency": due.currency}},
            ],
        },
    )


async def _checkout(processor: Any, request: CheckoutRequest) -> Any:
    try:
        return await processor.create_checkout(request)
    except ProcessorUnavailable as failure:
        raise FhirError(502, "transient", str(failure)) from None


def _amount(call: Invocation, due: Balance) -> Decimal:
    """The ``amount`` parameter (a Money), checked against what is open."""
    money = _money(call.body)
    if money is None:
        amount = due.open
    else:
        amount = decimal_of(money.get("value"))
        if amount is None:
            raise _refused("amount needs a value", "Parameters.parameter.valueMoney.value")
        currency = str(money.get("currency") or due.currency).upper()
        if currency != due.currency:
            raise _refused(
                f"amount is in {currency}; the invoice is in {due.currency}",
                "Parameters.parameter.valueMoney.currency",
            )
    where = "Parameters.parameter.valueMoney.value"
    if amount <= 0:
        raise _refused(f"amount must be more than 0 (got {amount})", where)
    if amount > due.open:
        raise _refused(f"amount {amount} is more than is open ({due.open} {due.currency})", where)
    if minor_units(amount, due.currency) is None:
        raise _refused(f"amount {amount} has more decimals than {due.currency} has", where)
    return amount


def _money(body: dict[str, Any] | None) -> dict[str, Any] | None:
    for parameter in (body or {}).get("parameter", []):
        if isinstance(parameter, dict) and parameter.get("name") == "amount":
            money = parameter.get("valueMoney")
            if not isinstance(money, dict):
                raise _refused("amount must be a valueMoney", "Parameters.parameter.valueMoney")
            return money
    return None


def _return_url(ctx: Context, call: Invocation) -> str:
    url = call.value("returnUrl")
    if url is None:
        if ctx.settings.portal_url:
            return ctx.settings.portal_url
        return ctx.base_url.removesuffix("/fhir") + "/portal/"
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _refused("returnUrl must be an absolute http(s) URL", "Parameters.parameter")
    return url


def _description(invoice: dict[str, Any]) -> str:
    for identifier in invoice.get("identifier") or []:
        if isinstance(identifier, dict) and isinstance(identifier.get("value"), str):
            return f"Invoice {identifier['value']}"
    return f"Invoice {invoice['id']}"


def _unguarded(store: Store) -> Store:
    """The store under the caller's access checks: what is paid on an Invoice counts
    every payment, whoever may read them."""
    while isinstance(store, GuardedStore):
        store = store.inner
    return store


def _refused(message: str, expression: str | None = None) -> FhirError:
    return FhirError(422, "business-rule", message, (expression,) if expression else ())


OPERATION = Operation(
    definitions=(
        OperationDefinition(
            "pay",
            CANONICAL,
            "instance",
            resource_types=("Invoice",),
            methods=("POST",),
            parameters=(
                OperationParameter(
                    "amount", "Money", documentation="What to pay (default: what is open)"
                ),
                OperationParameter(
                    "returnUrl",
                    "url",
                    documentation="Where the checkout returns (default: the portal)",
                ),
                OperationParameter("url", "url", 1, use="out"),
                OperationParameter("session", "string", 1, use="out"),
                OperationParameter("amount", "Money", 1, use="out"),
            ),
            scopes=("patient/Invoice.rs", "user/Invoice.rs", "system/Invoice.rs"),
            affects_state=True,
            documentation="Pay a bill online: opens a checkout session at the payment"
            " processor and answers its page (url) and id (session); the payment is"
            " recorded when the processor's webhook reports it",
        ),
    ),
    handler=handle,
)

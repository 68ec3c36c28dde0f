"""Stripe as the payment processor, through the official ``stripe`` library: a hosted
Checkout Session per payment (https://docs.stripe.com/api/checkout/sessions/create) and
its signed webhook events (https://docs.stripe.com/webhooks#verify-events), so card data
only ever reaches Stripe.

Settings: ``FHIR_SERVER_STRIPE_SECRET_KEY`` (the API key), ``FHIR_SERVER_STRIPE_WEBHOOK_SECRET``
(the signing secret of the endpoint ``/payments/webhook``), ``FHIR_SERVER_STRIPE_API_BASE``
(default ``https://api.stripe.com``; the tests point it at a local double).

Events: ``checkout.session.completed`` with ``payment_status`` ``paid`` (cards) and
``checkout.session.async_payment_succeeded`` (bank debits, paid later) record the
payment; every other verified event is acknowledged and ignored. A request whose
``Stripe-Signature`` does not verify with the signing secret, or was signed more than 5
minutes ago (Stripe's own tolerance against replays), is rejected.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import stripe

from fhir_server.config import Settings
from fhir_server.payments.processor import (
    Checkout,
    CheckoutRequest,
    IgnoredEvent,
    PaymentEvent,
    ProcessorUnavailable,
    WebhookRejected,
    from_minor_units,
    minor_units,
)
from resources.errors import FhirError

TOLERANCE_SECONDS = 300
"""Events signed longer ago than this are refused (replays)."""
PAID_EVENTS = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})


class StripeProcessor:
    """Checkout Sessions and webhook events of one Stripe account."""

    name = "stripe"

    def __init__(self, settings: Settings) -> None:
        self.secret_key = settings.stripe_secret_key
        self.webhook_secret = settings.stripe_webhook_secret
        self.api_base = settings.stripe_api_base.rstrip("/")

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        if not self.secret_key:
            raise FhirError(
                501, "not-supported", "FHIR_SERVER_STRIPE_SECRET_KEY is not set: no payments"
            )
        cents = minor_units(request.amount, request.currency)
        if cents is None:  # checked by the caller; never send a rounded amount
            raise ValueError(f"{request.amount} {request.currency} is not a whole minor unit")
        metadata = {"invoice": request.invoice}
        if request.patient is not None:
            metadata["patient"] = request.patient
        params: dict[str, Any] = {
            "mode": "payment",
            "line_items": [
                {
                    "quantity": 1,
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": cents,
                        "product_data": {"name": request.description[:250]},
                    },
                }
            ],
            "client_reference_id": request.invoice.replace("/", "-")[:200],
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
            "success_url": _with_query(
                request.return_url, payment="success", session="{CHECKOUT_SESSION_ID}"
            ),
            "cancel_url": _with_query(request.return_url, payment="cancelled"),
        }
        http = stripe.HTTPXClient(timeout=20)
        client = stripe.StripeClient(
            self.secret_key,
            base_addresses={"api": self.api_base},
            http_client=http,
            max_network_retries=2,
        )
        try:
            session = await client.v1.checkout.sessions.create_async(
                params,  # type: ignore[arg-type]
                {"idempotency_key": str(uuid.uuid4())},
            )
        except stripe.StripeError as error:
            raise ProcessorUnavailable(_describe(error)) from None
        finally:
            await http.close_async()
        if not session.id or not session.url:
            raise ProcessorUnavailable("Stripe answered a checkout session without id or url")
        return Checkout(session.id, session.url)

    def verify_event(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | IgnoredEvent:
        if not self.webhook_secret:
            raise WebhookRejected("FHIR_SERVER_STRIPE_WEBHOOK_SECRET is not set")
        signature = headers.get("stripe-signature")
        if not signature:
            raise WebhookRejected("The request has no Stripe-Signature header")
        try:
            stripe.Webhook.construct_event(
                body, signature, self.webhook_secret, tolerance=TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError as error:
            raise WebhookRejected(f"The Stripe signature does not verify: {error}") from None
        except ValueError as error:
            raise WebhookRejected(f"The body is not a Stripe event: {error}") from None
        return _event(json.loads(body, parse_float=Decimal))


def _event(data: dict[str, Any]) -> PaymentEvent | IgnoredEvent:
    event_id, kind = str(data.get("id", "")), str(data.get("type", ""))
    session = (data.get("data") or {}).get("object") or {}
    if kind not in PAID_EVENTS or session.get("payment_status") != "paid":
        return IgnoredEvent(event_id, kind)
    metadata = session.get("metadata") or {}
    invoice = metadata.get("invoice")
    amount, currency = session.get("amount_total"), session.get("currency")
    if not isinstance(invoice, str) or not isinstance(amount, int) or not currency:
        return IgnoredEvent(event_id, kind)  # a checkout this server did not open
    payment = session.get("payment_intent")
    if isinstance(payment, dict):
        payment = payment.get("id")
    return PaymentEvent(
        event=event_id,
        session=str(session["id"]),
        payment=str(payment or session["id"]),
        invoice=invoice,
        amount=from_minor_units(amount, currency),
        currency=str(currency).upper(),
        created=int(data.get("created") or 0),
    )


def _with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to its query (before any fragment)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    text = urlencode(query, safe="{}")
    return urlunsplit(parts._replace(query=text))


def _describe(error: stripe.StripeError) -> str:
    message = getattr(error, "user_message", None) or str(error) or type(error).__name__
    return f"Stripe refused or did not answer the checkout request: {message}"

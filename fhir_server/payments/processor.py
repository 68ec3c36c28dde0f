"""The payment processor interface: what the server asks of a processor (a hosted
checkout page for an amount, and the verified events of its webhook), so that card data
never reaches the server (https://docs.stripe.com/payments/checkout is the model).

A processor is chosen by ``FHIR_SERVER_PAYMENTS``: ``off`` (the default), ``stripe``
(:mod:`fhir_server.payments.stripe_processor`), or ``package.module:factory`` for one of
your own: ``factory(settings)`` returns an object with the methods of
:class:`PaymentProcessor`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from fhir_server.config import Settings
from resources.errors import FhirError


@dataclass(frozen=True)
class CheckoutRequest:
    """A checkout page to open for paying ``amount`` of an Invoice."""

    invoice: str
    """``Invoice/[id]``: recorded with the session, handed back by its events."""
    amount: Decimal
    currency: str
    """ISO 4217, upper case (``USD``)."""
    description: str
    return_url: str
    """Where the payer's browser goes when the checkout ends (paid or not)."""
    patient: str | None = None
    """``Patient/[id]`` of the Invoice (for the processor's records)."""


@dataclass(frozen=True)
class Checkout:
    """A checkout session opened at the processor."""

    session: str
    url: str


@dataclass(frozen=True)
class PaymentEvent:
    """A verified webhook event that says money was received for a checkout session."""

    event: str
    """The processor's id of the event (``evt_…``)."""
    session: str
    """The checkout session it is about: a session is paid at most once."""
    payment: str
    """The processor's id of the payment (``pi_…``): ``PaymentReconciliation.paymentIdentifier``."""
    invoice: str
    amount: Decimal
    currency: str
    created: int
    """Unix time the event happened."""


@dataclass(frozen=True)
class IgnoredEvent:
    """A verified event that records nothing (another type, a checkout not yet paid)."""

    event: str
    kind: str


class WebhookRejected(Exception):
    """The webhook request is not an authentic, fresh event of the processor (bad or
    missing signature, too old, malformed): 400, nothing changes."""


class ProcessorUnavailable(Exception):
    """The processor did not answer or refused the request (502)."""


class PaymentProcessor(Protocol):
    """What the server needs of a payment processor."""

    name: str
    """Short name, used in identifier systems (``stripe``)."""

    async def create_checkout(self, request: CheckoutRequest) -> Checkout:
        """Open a hosted checkout page; raises :class:`ProcessorUnavailable`."""
        ...

    def verify_event(self, body: bytes, headers: Mapping[str, str]) -> PaymentEvent | IgnoredEvent:
        """The event of a webhook request, verified (signature, age); raises
        :class:`WebhookRejected`."""
        ...


_BUILT_IN: dict[str, str] = {"stripe": "fhir_server.payments.stripe_processor:StripeProcessor"}


def processor_for(settings: Settings) -> PaymentProcessor | None:
    """The processor ``settings`` configure (None: payments are off). The same object
    for the same settings."""
    choice = settings.payments.strip()
    if choice.lower() in ("", "off"):
        return None
    key = settings.model_dump_json()
    found = _PROCESSORS.get(key)
    if found is None:
        found = _PROCESSORS[key] = _factory(choice)(settings)
    return found


_PROCESSORS: dict[str, Any] = {}
"""Processors by the settings they were made of (a few: one a configuration)."""


def _factory(choice: str) -> Callable[[Settings], PaymentProcessor]:
    target = _BUILT_IN.get(choice.lower(), choice)
    module_name, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(
            f"FHIR_SERVER_PAYMENTS={choice!r}: expected off, stripe or package.module:factory"
        )
    factory = getattr(importlib.import_module(module_name), attribute)
    return factory  # type: ignore[no-any-return]


def payments_off() -> FhirError:
    return FhirError(
        501,
        "not-supported",
        "Online payment is not configured on this server (FHIR_SERVER_PAYMENTS)",
    )


_ZERO_DECIMAL = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA"}
    | {"PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"}
)
_THREE_DECIMAL = frozenset({"BHD", "JOD", "KWD", "OMR", "TND"})


def minor_units(amount: Decimal, currency: str) -> int | None:
    """``amount`` in the currency's smallest unit (cents), None when it has more
    decimals than the currency (https://docs.stripe.com/currencies#zero-decimal)."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        return None
    return int(scaled)


def from_minor_units(value: int, currency: str) -> Decimal:
    """The amount of ``value`` smallest units (cents) of ``currency``."""
    places = exponent(currency)
    return Decimal(value).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def exponent(currency: str) -> int:
    code = currency.upper()
    if code in _ZERO_DECIMAL:
        return 0
    return 3 if code in _THREE_DECIMAL else 2

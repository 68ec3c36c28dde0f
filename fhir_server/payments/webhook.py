"""``POST /payments/webhook``: the payment processor's events (outside ``/fhir``: the
processor signs its requests, it has no SMART token), e.g. Stripe's
(https://docs.stripe.com/webhooks).

The body is verified by the processor (signature with the endpoint's secret, signed
within the last 5 minutes) before anything is read from it: a forged, altered, unsigned
or stale request is ``400`` and changes nothing. A verified payment event is recorded by
:func:`fhir_server.payments.ledger.record_payment` (a PaymentReconciliation and the
Invoice's status, in one transaction, once per checkout session); the answer is ``200``
with an OperationOutcome saying what was done, also for events that record nothing (a
processor retries anything else for days).
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import Response

from fhir_server.config import Settings
from fhir_server.interactions.context import FhirResponse
from fhir_server.payments.ledger import record_payment, settle
from fhir_server.payments.processor import (
    IgnoredEvent,
    WebhookRejected,
    payments_off,
    processor_for,
)
from fhir_server.routes import _bounded_body, error_response, render
from fhir_server.storage.base import TransactionsUnavailable
from fhir_server.workflows import Caller, WorkflowStore
from resources.errors import FhirError, Issue, operation_outcome

PATH = "/payments/webhook"
_MAX_EVENT_BYTES = 512 * 1024
"""Stripe's events are a few kilobytes; anything much larger is not one."""

log = logging.getLogger("fhir_server.payments")
router = APIRouter()


@router.post(PATH, include_in_schema=False)
async def webhook(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    try:
        processor = processor_for(settings)
        if processor is None:
            raise payments_off()
        body = await _bounded_body(request, min(settings.max_body_bytes, _MAX_EVENT_BYTES))
        try:
            event = processor.verify_event(body, request.headers)
        except WebhookRejected as rejected:
            log.warning("payment webhook refused: %s", rejected)
            raise FhirError(400, "security", str(rejected)) from None
        if isinstance(event, IgnoredEvent):
            return _done(f"Event {event.event} ({event.kind}) records nothing")
        # the server's own write, through the workflow rules (billing: the Invoice)
        store = WorkflowStore(request.app.state.store, Caller.system(), settings=settings)
        try:
            recorded = await record_payment(store, processor.name, event)
        except TransactionsUnavailable as failure:  # a standalone MongoDB
            raise FhirError(
                503, "transient", f"The payment cannot be recorded: {failure}"
            ) from None
        if recorded.payment is None:
            log.warning("payment event %s not recorded: %s", event.event, recorded.message)
            return _done(f"Event {event.event} records nothing: {recorded.message}", "warning")
        if recorded.created:
            await settle(store, event.invoice.partition("/")[2])
        verb = "Recorded" if recorded.created else "Already recorded"
        log.info("payment event %s: %s %s", event.event, verb.lower(), recorded.payment)
        return _done(f"{verb}: {recorded.payment} for {event.invoice}")
    except FhirError as error:
        return error_response(error)


def _done(message: str, severity: str = "information") -> Response:
    issue = Issue("informational", message, severity=severity)
    return render(FhirResponse(200, operation_outcome([issue])), "application/fhir+json", False)

"""``POST /payments/webhook``: a payment the processor (the Stripe double, signing its
events itself) reports is recorded once as a PaymentReconciliation with the Invoice's
new status; replays, concurrent deliveries and forged or stale events change nothing.
On SQLite and the MongoDB stand-in."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

from tests.test_payments.support import Portal


async def test_a_paid_checkout_records_the_payment_and_balances_the_invoice(
    portal: Portal,
) -> None:
    session = await portal.checkout("inv-alice", portal.alice)
    event = portal.stripe.pay(session)
    response = await portal.deliver(event)
    assert response.status_code == 200, response.text
    [payment] = await portal.payments(portal.alice)
    intent = portal.stripe.sessions[session]["payment_intent"]
    assert payment["paymentIdentifier"]["value"] == intent
    assert payment["paymentAmount"] == {"value": 120.0, "currency": "USD"}
    assert payment["detail"][0]["request"] == {"reference": "Invoice/inv-alice"}
    assert payment["identifier"][0]["value"] == session
    invoice = await portal.invoice("inv-alice")
    assert invoice["status"] == "balanced"
    assert invoice["meta"]["versionId"] == "2"
    # paid: nothing more to pay
    assert (await portal.pay("inv-alice", portal.alice)).status_code == 422


async def test_a_part_payment_leaves_the_rest_open(portal: Portal) -> None:
    first = await portal.checkout("inv-alice", portal.alice, value=45.5, currency="USD")
    assert (await portal.deliver(portal.stripe.pay(first))).status_code == 200
    assert (await portal.invoice("inv-alice"))["status"] == "issued"
    # the default amount is now what is open: 74.50
    second = await portal.checkout("inv-alice", portal.alice)
    assert portal.stripe.sessions[second]["amount_total"] == 7450
    over = {"name": "amount", "valueMoney": {"value": 74.51, "currency": "USD"}}
    assert (await portal.pay("inv-alice", portal.alice, over)).status_code == 422
    assert (await portal.deliver(portal.stripe.pay(second))).status_code == 200
    assert (await portal.invoice("inv-alice"))["status"] == "balanced"
    amounts = sorted(
        Decimal(str(p["paymentAmount"]["value"])) for p in await portal.payments(portal.alice)
    )
    assert amounts == [Decimal("45.5"), Decimal("74.5")]


async def test_a_replayed_event_does_not_pay_twice(portal: Portal) -> None:
    session = await portal.checkout("inv-alice", portal.alice, value=20, currency="USD")
    event = portal.stripe.pay(session)
    for _ in range(3):
        response = await portal.deliver(event)
        assert response.status_code == 200, response.text
    # the same session again, as another event (a bank debit confirmed later)
    again = portal.stripe.pay(session, event_type="checkout.session.async_payment_succeeded")
    assert (await portal.deliver(again)).status_code == 200
    assert len(await portal.payments(portal.alice)) == 1
    assert (await portal.invoice("inv-alice"))["meta"]["versionId"] == "1"


async def test_concurrent_deliveries_record_one_payment(portal: Portal) -> None:
    session = await portal.checkout("inv-alice", portal.alice)
    event = portal.stripe.pay(session)
    other = portal.stripe.pay(session, event_type="checkout.session.async_payment_succeeded")
    responses = await asyncio.gather(*(portal.deliver(e) for e in [event] * 6 + [other] * 2))
    assert [r.status_code for r in responses] == [200] * 8
    assert len(await portal.payments(portal.admin)) == 1
    invoice = await portal.invoice("inv-alice")
    assert (invoice["status"], invoice["meta"]["versionId"]) == ("balanced", "2")


async def test_concurrent_part_payments_that_add_up_balance_the_invoice(portal: Portal) -> None:
    sessions = [
        await portal.checkout("inv-alice", portal.alice, value=60, currency="USD") for _ in "ab"
    ]
    events = [portal.stripe.pay(s) for s in sessions]
    responses = await asyncio.gather(*(portal.deliver(e) for e in events))
    assert [r.status_code for r in responses] == [200, 200]
    assert len(await portal.payments(portal.alice)) == 2
    assert (await portal.invoice("inv-alice"))["status"] == "balanced"


async def test_a_forged_or_stale_event_changes_nothing(portal: Portal) -> None:
    session = await portal.checkout("inv-alice", portal.alice)
    genuine = portal.stripe.pay(session)
    forged = portal.stripe.pay(session, secret="whsec_someone_else")
    stale = portal.stripe.pay(session, signed_at=time.time() - 6 * 60)
    tampered_event = json.loads(genuine.body)
    tampered_event["data"]["object"]["amount_total"] = 1
    tampered = genuine.body.replace(b'"amount_total": 12000', b'"amount_total": 1')
    assert tampered != genuine.body
    attempts = [
        (forged.body, forged.headers),
        (stale.body, stale.headers),
        (tampered, genuine.headers),
        (genuine.body, {"Content-Type": "application/json"}),
        (b"not json", portal.stripe.signature_headers(b"not json")),
    ]
    for body, headers in attempts:
        response = await portal.http.post(portal.webhook_url, content=body, headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["resourceType"] == "OperationOutcome"
    assert await portal.payments(portal.admin) == []
    invoice = await portal.invoice("inv-alice")
    assert (invoice["status"], invoice["meta"]["versionId"]) == ("issued", "1")
    # the genuine one still counts
    assert (await portal.deliver(genuine)).status_code == 200
    assert len(await portal.payments(portal.admin)) == 1


async def test_other_events_are_acknowledged_and_ignored(portal: Portal) -> None:
    event = portal.stripe.sign(
        {
            "id": "evt_x",
            "object": "event",
            "type": "customer.created",
            "created": 1,
            "data": {"object": {"id": "cus_1", "object": "customer"}},
        }
    )
    assert (await portal.deliver(event)).status_code == 200
    assert await portal.payments(portal.admin) == []

"""``Invoice/[id]/$pay`` opens a checkout session at the processor (the Stripe double),
for the caller's own issued bills and sensible amounts only; every refusal creates no
session. On SQLite and the MongoDB stand-in, with SMART tokens."""

from __future__ import annotations

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE
from tests.patient_data.support import bearer, issuer
from tests.test_payments.support import WEBHOOK, Portal


def _parameters(response: httpx.Response) -> dict[str, dict]:
    return {p["name"]: p for p in response.json()["parameter"]}


async def test_pay_opens_a_checkout_for_what_is_open(portal: Portal) -> None:
    before = len(portal.stripe.sessions)
    response = await portal.pay("inv-alice", portal.alice)
    assert response.status_code == 200, response.text
    found = _parameters(response)
    session = found["session"]["valueString"]
    assert found["url"]["valueUrl"] == f"{portal.stripe.api_base}/pay/{session}"
    assert len(portal.stripe.sessions) == before + 1
    opened = portal.stripe.sessions[session]
    assert (opened["amount_total"], opened["currency"]) == (12000, "usd")
    assert opened["metadata"] == {"invoice": "Invoice/inv-alice", "patient": "Patient/alice"}
    # the return URL defaults to FHIR_SERVER_PORTAL_URL
    assert opened["success_url"].startswith("https://portal.example/bills?payment=success")
    assert "{CHECKOUT_SESSION_ID}" in opened["success_url"]


async def test_pay_a_part_with_a_return_url(portal: Portal) -> None:
    response = await portal.pay(
        "inv-alice",
        portal.alice,
        {"name": "amount", "valueMoney": {"value": 20.5, "currency": "USD"}},
        {"name": "returnUrl", "valueUrl": "https://app.example/done#bills"},
    )
    assert response.status_code == 200, response.text
    opened = portal.stripe.sessions[_parameters(response)["session"]["valueString"]]
    assert opened["amount_total"] == 2050
    assert opened["cancel_url"] == "https://app.example/done?payment=cancelled#bills"


async def test_a_patient_cannot_pay_another_patients_bill(portal: Portal) -> None:
    sessions = len(portal.stripe.sessions)
    response = await portal.pay("inv-bob", portal.alice)
    assert response.status_code == 404, response.text
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await portal.pay("no-such-invoice", portal.alice)).status_code == 404
    assert len(portal.stripe.sessions) == sessions


async def test_refusals_create_no_session(portal: Portal) -> None:
    sessions = len(portal.stripe.sessions)
    refused = [
        ("inv-alice-paid", []),
        ("inv-alice-cancelled", []),
        ("inv-alice", [{"name": "amount", "valueMoney": {"value": 0, "currency": "USD"}}]),
        ("inv-alice", [{"name": "amount", "valueMoney": {"value": -5, "currency": "USD"}}]),
        ("inv-alice", [{"name": "amount", "valueMoney": {"value": 120.01, "currency": "USD"}}]),
        ("inv-alice", [{"name": "amount", "valueMoney": {"value": 10, "currency": "EUR"}}]),
        ("inv-alice", [{"name": "amount", "valueMoney": {"value": 10.001}}]),
        ("inv-alice", [{"name": "amount", "valueString": "10"}]),
        ("inv-alice", [{"name": "returnUrl", "valueUrl": "javascript:alert(1)"}]),
    ]
    for invoice_id, parameters in refused:
        response = await portal.pay(invoice_id, portal.alice, *parameters)
        assert response.status_code == 422, (invoice_id, parameters, response.text)
        assert response.json()["issue"][0]["code"] == "business-rule"
    assert len(portal.stripe.sessions) == sessions


async def test_pay_is_post_only_and_listed(portal: Portal) -> None:
    assert (await portal.http.get("Invoice/inv-alice/$pay", headers=portal.alice)).status_code in (
        404,
        405,
    )
    statement = (await portal.http.get("metadata")).json()
    invoice = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Invoice")
    assert [op["name"] for op in invoice.get("operation", [])] == ["pay"]


async def test_payments_off_is_not_supported(settings: Settings) -> None:
    off = settings.model_copy(update={"payments": "off"})
    app = create_app(off)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            admin = bearer(issuer(app)("system/*.cruds"))
            response = await http.post("Invoice/any/$pay", headers=admin)
            assert response.status_code == 501, response.text
            response = await http.post(WEBHOOK, content=b"{}")
            assert response.status_code == 501, response.text
            assert response.json()["issue"][0]["code"] == "not-supported"

"""Attacks on the new operations with ids of another patient's resources: Alice's app
(``patient/*.cruds`` for Alice) and Alice's caregiver ask for Bob's summary, records,
visit summary, education, record ($everything), export, find and book for him, and pay
his bill. Each must answer as for a resource that does not exist (404) or refuse (403),
and never put a byte of Bob's data in the answer."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.patient_data.support import bearer

PARAMS = {"resourceType": "Parameters", "parameter": []}
WEBHOOK = "http://testserver/payments/webhook"
BOB_SECRETS = ("REASON-bob", "VACCINE-bob", "CONDITION-bob", "TOPIC-bob", "Bravo", "SGl2IHJlc3VsdA")


def _clean(response: httpx.Response) -> None:
    body = response.content
    for secret in BOB_SECRETS:
        assert secret.encode() not in body, (secret, response.text[:500])


DOCUMENTS_OF_BOB = (
    ("GET", "Patient/bob/$summary"),
    ("POST", "Patient/bob/$summary"),
    ("GET", "Patient/bob/$summary?_format=pdf"),
    ("GET", "Patient/bob/$immunization-record"),
    ("POST", "Patient/bob/$immunization-record"),
    ("GET", "Encounter/b-enc/$visit-summary"),
    ("GET", "Encounter/b-enc/$visit-summary?_format=json"),
    ("POST", "Encounter/b-enc/$visit-summary"),
    ("GET", "Patient/bob/$education"),
    ("GET", "Patient/bob/$everything"),
    ("POST", "Patient/bob/$everything"),
    ("GET", "Patient/bob/$everything?_type=Task,PaymentReconciliation,Communication"),
)


async def test_documents_of_another_patient_are_not_found(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for method, path in DOCUMENTS_OF_BOB:
        for who in (alice, mum):
            body = PARAMS if method == "POST" else None
            response = await http.request(method, path, json=body, headers=who)
            assert response.status_code == 404, (path, response.text[:300])
            _clean(response)


async def test_pdf_by_accept_of_another_patient_is_not_found(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for path in ("Patient/bob/$summary", "Patient/bob/$immunization-record"):
        response = await http.get(path, headers={**alice, "accept": "application/pdf"})
        assert response.status_code == 404
        assert not response.content.startswith(b"%PDF")


async def test_own_record_holds_nothing_of_bob(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for path in (
        "Patient/alice/$everything",
        "Patient/$everything",
        "Patient/alice/$summary",
        "Patient/alice/$education",
        "Encounter/a-enc/$visit-summary?_format=json",
    ):
        response = await http.get(path, headers=alice)
        assert response.status_code == 200, (path, response.text[:300])
        _clean(response)


async def test_export_of_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    prefer = {**alice, "prefer": "respond-async", "accept": "application/fhir+json"}
    for path in ("Patient/bob/$export", "$export", "Group/anything/$export"):
        response = await http.get(path, headers=prefer)
        assert response.status_code in (403, 404), (path, response.status_code, response.text)
    own = await http.get("Patient/$export?_type=Observation,Task", headers=prefer)
    # a patient token exports its own compartment at most (202), never a 5xx
    assert own.status_code in (202, 400, 403), own.text


async def test_find_for_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    response = await http.get(
        "Appointment/$find?start=2031-03-01&end=2031-03-10&patient=Patient/bob", headers=alice
    )
    assert response.status_code == 403, response.text
    own = await http.get("Appointment/$find?start=2031-03-01&end=2031-03-10", headers=alice)
    assert own.status_code == 200, own.text
    assert "Patient/bob" not in own.text


def _book_body(slot_id: str, *actors: str) -> dict[str, Any]:
    """The Parameters of a ``$book`` of ``slot_id`` for ``actors``."""
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": a}, "status": "needs-action"} for a in actors],
    }
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": appointment}],
    }


async def test_book_for_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    body = _book_body("free-slot", "Patient/bob", "Practitioner/dr")
    response = await http.post("Appointment/$book", json=body, headers=alice)
    assert response.status_code == 403, response.text
    slot = await http.get("Slot/free-slot", headers=admin)
    assert slot.json()["status"] == "free"


async def test_book_a_taken_slot_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Bob's slot is busy: Alice cannot take it over (no double booking)."""
    body = _book_body("b-slot", "Patient/alice")
    response = await http.post("Appointment/$book", json=body, headers=alice)
    assert response.status_code == 409, response.text
    bob = await http.get("Appointment/b-appt", headers=admin)
    assert bob.json()["status"] == "booked"


async def test_booking_error_names_no_other_patient(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    appointment = {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": "Slot/bob-own-slot"}],
        "start": "2031-03-06T10:00:00Z",
        "end": "2031-03-06T10:30:00Z",
        "participant": [
            {"actor": {"reference": "Patient/alice"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr"}, "status": "accepted"},
        ],
    }
    response = await http.post("Appointment", json=appointment, headers=alice)
    assert response.status_code in (403, 404, 422), response.text
    assert "Patient/bob" not in response.text and "bob-schedule" not in response.text


async def test_a_slot_of_another_patients_schedule_is_not_bookable(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    """Without a practitioner to match the Schedule against, Bob's own Schedule's Slot is
    still not Alice's to take: answered as a Slot that does not exist."""
    for who in (alice, mum):
        answers = []
        for slot_id in ("bob-own-slot", "no-such-slot"):
            body = _book_body(slot_id, "Patient/alice")
            response = await http.post("Appointment/$book", json=body, headers=who)
            assert response.status_code == 422, response.text
            answers.append(response.json()["issue"][0]["diagnostics"].replace(slot_id, "X"))
            assert "Patient/bob" not in response.text and "bob-schedule" not in response.text
        assert answers[0] == answers[1]
    slot = await http.get("Slot/bob-own-slot", headers=admin)
    assert slot.json()["status"] == "free"


async def test_pay_another_patients_invoice_is_not_found(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], stripe_double
) -> None:
    before = len(stripe_double.sessions)
    for who in (alice, mum):
        response = await http.post("Invoice/b-inv/$pay", json=PARAMS, headers=who)
        assert response.status_code == 404, response.text
    assert len(stripe_double.sessions) == before  # no checkout session opened


async def test_pay_own_invoice_never_more_than_is_open(
    http: httpx.AsyncClient, alice: dict[str, str], stripe_double
) -> None:
    for value in (0, -5, 100.001, 1e9):
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "amount", "valueMoney": {"value": value, "currency": "USD"}}],
        }
        response = await http.post("Invoice/a-inv/$pay", json=body, headers=alice)
        assert response.status_code == 422, (value, response.text)


async def test_forged_or_replayed_webhook_changes_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str], stripe_double
) -> None:
    opened = await http.post("Invoice/a-inv/$pay", json=PARAMS, headers=alice)
    assert opened.status_code == 200, opened.text
    session = {p["name"]: p for p in opened.json()["parameter"]}["session"]["valueString"]
    # the attacker signs with a secret of its own, and says it was Bob's invoice too
    forged = stripe_double.pay(session, secret="whsec_attacker")
    response = await http.post(WEBHOOK, content=forged.body, headers=forged.headers)
    assert response.status_code == 400
    event = stripe_double.pay(session)
    tampered = event.body.replace(b"Invoice/a-inv", b"Invoice/b-inv")
    response = await http.post(WEBHOOK, content=tampered, headers=event.headers)
    assert response.status_code == 400
    stale = stripe_double.pay(session, signed_at=1_600_000_000)
    response = await http.post(WEBHOOK, content=stale.body, headers=stale.headers)
    assert response.status_code == 400
    payments = await http.get("PaymentReconciliation", headers=admin)
    assert all(
        "b-inv" not in e["resource"].get("detail", [{}])[0].get("request", {}).get("reference", "")
        for e in payments.json().get("entry", [])
    )
    bill = await http.get("Invoice/b-inv", headers=admin)
    assert bill.json()["status"] == "issued"
    # the genuine event pays Alice's bill once, replayed or not
    for _ in range(2):
        done = await http.post(WEBHOOK, content=event.body, headers=event.headers)
        assert done.status_code == 200, done.text
    mine = await http.get("PaymentReconciliation", headers=alice)
    assert len(mine.json().get("entry", [])) == 1


async def test_export_job_of_one_user_is_not_anothers(http: httpx.AsyncClient, token: Any) -> None:
    """Two users of the same app: Bob's token cannot poll or download Alice's export."""
    alice = bearer(token("patient/*.rs", patient="alice", subject="u-alice"))
    bob = bearer(token("patient/*.rs", patient="bob", subject="u-bob"))
    prefer = {"prefer": "respond-async", "accept": "application/fhir+json"}
    kicked = await http.get("Patient/$export?_type=Observation", headers={**alice, **prefer})
    assert kicked.status_code == 202, kicked.text
    status_url = kicked.headers["content-location"]
    for _ in range(100):
        polled = await http.get(status_url, headers=alice)
        if polled.status_code != 202:
            break
        await asyncio.sleep(0.05)
    assert polled.status_code == 200, polled.text
    assert (await http.get(status_url, headers=bob)).status_code == 404
    assert (await http.delete(status_url, headers=bob)).status_code == 404
    for output in polled.json()["output"]:
        assert (await http.get(output["url"], headers=bob)).status_code == 404
        mine = await http.get(output["url"], headers=alice)
        assert mine.status_code == 200 and b"b-obs" not in mine.content


async def test_pay_return_url_is_an_http_url(
    http: httpx.AsyncClient, alice: dict[str, str], stripe_double: Any
) -> None:
    before = len(stripe_double.sessions)
    for url in ("javascript:alert(1)", "data:text/html,x", "//evil.example/", "file:///etc/passwd"):
        body = {
            "resourceType": "Parameters",
            "parameter": [{"name": "returnUrl", "valueUrl": url}],
        }
        response = await http.post("Invoice/a-inv/$pay", json=body, headers=alice)
        assert response.status_code == 422, (url, response.text)
    assert len(stripe_double.sessions) == before


async def test_a_patient_cannot_publish_education_to_other_patients(
    http: httpx.AsyncClient, alice: dict[str, str], token: Any
) -> None:
    planted = {
        "resourceType": "DocumentReference",
        "status": "current",
        "author": [{"reference": "Patient/alice"}],
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "311401005"}]}],
        "context": {
            "event": [{"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}]
        },
        "description": "Cure diabetes today",
        "content": [
            {
                "attachment": {
                    "contentType": "text/html",
                    "url": "https://phish.example/login",
                    "title": "Diabetes: your new treatment",
                }
            }
        ],
    }
    written = await http.post("DocumentReference", json=planted, headers=alice)
    if written.status_code != 201:
        assert written.status_code in (403, 422), written.text
        return
    bob = bearer(token("patient/*.rs", patient="bob", fhir_user="Patient/bob"))
    education = await http.get("Patient/bob/$education", headers=bob)
    assert education.status_code == 200, education.text
    assert "phish.example" not in education.text and "Patient/alice" not in education.text

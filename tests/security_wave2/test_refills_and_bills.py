"""Attacks on the refill and billing workflows (fhir_server/workflows refills, billing)
by Alice's app and her caregiver: Bob's prescriptions and refill Tasks, a patient deciding
her own refill, marking a bill paid or recording a payment, Bob's payments; and a rule
that refuses patients holds on every write path. Each is refused (403) or answered as
for a resource that does not exist (404), and changes nothing."""

from __future__ import annotations

from typing import Any

import httpx

from tests.patient_data.support import ids
from tests.security_wave2.calls import JSON_PATCH, current, transaction


def _refill(focus: str, patient: str = "Patient/alice") -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": {
            "coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]
        },
        "focus": {"reference": focus},
        "for": {"reference": patient},
    }


async def test_refill_of_another_patients_prescription_by_every_path(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    for who in (alice, mum):
        for body in (
            _refill("MedicationRequest/b-mr"),
            _refill("MedicationRequest/b-mr", "Patient/bob"),
            _refill("http://testserver/fhir/MedicationRequest/b-mr"),
        ):
            response = await http.post("Task", json=body, headers=who)
            assert response.status_code in (403, 404), response.text
        as_create = {**_refill("MedicationRequest/b-mr"), "id": "new-one"}
        put = await http.put("Task/new-one", json=as_create, headers=who)
        assert put.status_code in (403, 404), put.text
        bundle = transaction(
            {
                "resource": _refill("MedicationRequest?_id=b-mr"),
                "request": {"method": "POST", "url": "Task"},
            }
        )
        conditional = await http.post("", json=bundle, headers=who)
        assert conditional.status_code in (400, 403, 404, 412), conditional.text
    tasks = await http.get("Task?focus=MedicationRequest/b-mr", headers=admin)
    assert not tasks.json().get("entry")
    # Bob's own request still goes through: nobody blocked his prescription
    bob = await http.post(
        "Task", json=_refill("MedicationRequest/b-mr", "Patient/bob"), headers=admin
    )
    assert bob.status_code == 201, bob.text


async def test_patient_cannot_decide_her_own_refill(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    made = await http.post("Task", json=_refill("MedicationRequest/a-mr"), headers=alice)
    assert made.status_code == 201, made.text
    task = made.json()
    for status in ("accepted", "completed"):
        changed = {**task, "status": status}
        response = await http.put(f"Task/{task['id']}", json=changed, headers=alice)
        assert response.status_code == 403, response.text
    refocus = {**task, "focus": {"reference": "MedicationRequest/b-mr"}}
    response = await http.put(f"Task/{task['id']}", json=refocus, headers=alice)
    assert response.status_code in (403, 422), response.text


async def test_another_patients_refill_task_is_invisible_and_unchangeable(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    made = await http.post(
        "Task", json=_refill("MedicationRequest/b-mr", "Patient/bob"), headers=admin
    )
    assert made.status_code == 201, made.text
    task = made.json()
    assert (await http.get(f"Task/{task['id']}", headers=alice)).status_code == 404
    cancel = {**task, "status": "cancelled"}
    assert (await http.put(f"Task/{task['id']}", json=cancel, headers=alice)).status_code in (
        403,
        404,
    )
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    patched = await http.patch(f"Task/{task['id']}", json=patch, headers={**alice, **JSON_PATCH})
    assert patched.status_code == 404, patched.text
    assert (await current(http, admin, f"Task/{task['id']}"))["status"] == "requested"
    for query in (
        "Task",
        "MedicationRequest?_revinclude=Task:focus",
        "Patient?_id=alice&_revinclude=Task:patient",
        "Task?focus=MedicationRequest/b-mr",
        "Task?_include=Task:focus",
    ):
        found = await ids(http, query, alice)
        assert not found & {f"Task/{task['id']}", "MedicationRequest/b-mr", "Task/b-task"}, query


async def test_patient_cannot_mark_paid_or_record_a_payment(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bill = await current(http, admin, "Invoice/a-inv")
    bill.pop("meta")
    assert (
        await http.put("Invoice/a-inv", json={**bill, "status": "balanced"}, headers=alice)
    ).status_code == 403
    patch = [{"op": "replace", "path": "/status", "value": "balanced"}]
    assert (
        await http.patch("Invoice/a-inv", json=patch, headers={**alice, **JSON_PATCH})
    ).status_code == 403
    payment = {
        "resourceType": "PaymentReconciliation",
        "status": "active",
        "created": "2026-12-06",
        "paymentDate": "2026-12-06",
        "paymentAmount": {"value": 100, "currency": "USD"},
        "detail": [
            {
                "type": {"text": "payment"},
                "request": {"reference": "Invoice/a-inv"},
                "submitter": {"reference": "Patient/alice"},
                "amount": {"value": 100, "currency": "USD"},
            }
        ],
    }
    assert (
        await http.post("PaymentReconciliation", json=payment, headers=alice)
    ).status_code == 403
    bundle = transaction(
        {"resource": payment, "request": {"method": "POST", "url": "PaymentReconciliation"}}
    )
    assert (await http.post("", json=bundle, headers=alice)).status_code == 403
    assert (await current(http, admin, "Invoice/a-inv"))["status"] == "issued"
    assert (await current(http, admin, "Invoice/b-inv"))["status"] == "issued"


async def test_another_patients_payments_are_invisible(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for query in (
        "PaymentReconciliation",
        "Invoice?_revinclude=PaymentReconciliation:request",
        "PaymentReconciliation/b-payment",
        "Invoice/b-inv",
    ):
        response = await http.get(query, headers=alice)
        assert response.status_code in (200, 404), (query, response.text)
        if response.status_code == 200:
            assert "b-payment" not in response.text and "b-inv" not in response.text, query


async def test_every_write_path_knows_the_caller_is_a_patient(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """A rule that refuses patients (an Invoice is written by staff) holds on every path:
    a path that built the rules' store without the caller would treat her as staff."""
    bill = {
        "resourceType": "Invoice",
        "status": "balanced",
        "identifier": [{"system": "urn:x", "value": "forged"}],
        "subject": {"reference": "Patient/alice"},
        "totalGross": {"value": 0, "currency": "USD"},
    }
    attempts = [
        ("POST", "Invoice", bill, {}),
        ("POST", "Invoice", bill, {"if-none-exist": "identifier=urn:x|forged"}),
        ("POST", "Invoice?identifier=urn:x|forged", bill, {}),
        ("PUT", "Invoice/forged", {**bill, "id": "forged"}, {}),
        ("PUT", "Invoice?identifier=urn:x|forged", bill, {}),
    ]
    for method, path, body, extra in attempts:
        response = await http.request(method, path, json=body, headers={**alice, **extra})
        assert response.status_code == 403, (method, path, response.text)
    for kind in ("batch", "transaction"):
        bundle = {
            "resourceType": "Bundle",
            "type": kind,
            "entry": [{"resource": bill, "request": {"method": "POST", "url": "Invoice"}}],
        }
        response = await http.post("", json=bundle, headers=alice)
        if kind == "transaction":
            assert response.status_code == 403, response.text
        else:
            assert response.status_code == 200, response.text
            assert response.json()["entry"][0]["response"]["status"].startswith("403")
    merge = {"status": "balanced"}
    patched = await http.patch(
        "Invoice/a-inv",
        json=merge,
        headers={**alice, "content-type": "application/merge-patch+json"},
    )
    assert patched.status_code == 403, patched.text
    found = await http.get("Invoice?identifier=urn:x|forged", headers=admin)
    assert not found.json().get("entry")
    assert (await current(http, admin, "Invoice/a-inv"))["status"] == "issued"

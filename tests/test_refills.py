"""Prescription refill requests through the HTTP API with SMART tokens, on every store
(issue 19, ``fhir_server.workflows.refills``): who may ask, what may be refilled, one
open request per prescription (also under concurrency), the staff's decisions and the
server's update of the old prescription, and who may read a refill Task."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.test_messaging import conftest as fixtures
from tests.test_messaging.support import People, prescription, ref

# the app, the seeded data and the people of the messaging tests
settings, people, http = fixtures.settings, fixtures.people, fixtures.http

FULFILL = {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]}


def refill(rx: str, patient: str = "Patient/alice", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "status": "requested",
        "intent": "order",
        "code": FULFILL,
        "focus": ref(f"MedicationRequest/{rx}"),
        "for": ref(patient),
        "note": [{"text": "Running low, 3 tablets left"}],
        "location": ref("Location/corner-pharmacy"),
        **extra,
    }


async def _request(
    http: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], status: int = 201
) -> dict[str, Any]:
    response = await http.post("Task", json=body, headers=headers)
    assert response.status_code == status, response.text
    return response.json()


async def _put(
    http: httpx.AsyncClient, headers: dict[str, str], task: dict[str, Any], **changes: Any
) -> httpx.Response:
    return await http.put(f"Task/{task['id']}", json={**task, **changes}, headers=headers)


async def _tasks(http: httpx.AsyncClient, people: People, rx: str) -> list[str]:
    response = await http.get(f"Task?focus=MedicationRequest/{rx}", headers=people.admin)
    return [e["resource"]["id"] for e in response.json().get("entry", [])]


async def test_a_patient_requests_a_refill_once(http: httpx.AsyncClient, people: People) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    assert task["status"] == "requested"
    second = await http.post("Task", json=refill("alice-rx"), headers=people.mum)
    assert second.status_code == 409
    assert f"Task/{task['id']}" in second.text
    # a caregiver requests for the patient, another prescription
    await _request(http, people.mum, refill("alice-rx2"))
    assert await _tasks(http, people, "alice-rx") == [task["id"]]


async def test_two_concurrent_requests_leave_one_task(
    http: httpx.AsyncClient, people: People
) -> None:
    responses = await asyncio.gather(
        *(http.post("Task", json=refill("alice-rx"), headers=people.alice) for _ in range(2))
    )
    assert sorted(r.status_code for r in responses) == [201, 409], [r.text for r in responses]
    tasks = await _tasks(http, people, "alice-rx")
    assert len(tasks) == 1
    refused = next(r for r in responses if r.status_code == 409)
    assert f"Task/{tasks[0]}" in refused.text


async def test_what_cannot_be_refilled(http: httpx.AsyncClient, people: People) -> None:
    # another patient's prescription: not hers to name
    response = await http.post("Task", json=refill("bob-rx"), headers=people.alice)
    assert response.status_code in (403, 404)
    for_bob = await http.post("Task", json=refill("bob-rx", "Patient/bob"), headers=people.alice)
    assert for_bob.status_code in (403, 404)
    # staff naming the wrong patient
    mixed = await http.post("Task", json=refill("bob-rx"), headers=people.dr)
    assert mixed.status_code == 422
    # not active, or a one-off course without refills
    done = await http.post("Task", json=refill("alice-old"), headers=people.alice)
    assert done.status_code == 422 and "completed, not active" in done.text
    acute = await http.post("Task", json=refill("alice-acute"), headers=people.alice)
    assert acute.status_code == 422 and "no refills left" in acute.text
    # a new request is requested, an order
    accepted = await http.post(
        "Task", json=refill("alice-rx", status="accepted"), headers=people.alice
    )
    assert accepted.status_code == 422
    assert (await _tasks(http, people, "alice-rx")) == []
    assert (await _tasks(http, people, "bob-rx")) == []


async def test_patients_only_cancel(http: httpx.AsyncClient, people: People) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    for status in ("accepted", "completed", "rejected"):
        assert (await _put(http, people.alice, task, status=status)).status_code == 403
    edited = await _put(http, people.alice, task, focus=ref("MedicationRequest/alice-rx2"))
    assert edited.status_code == 422
    assert (await http.delete(f"Task/{task['id']}", headers=people.alice)).status_code == 403
    cancelled = await _put(http, people.mum, task, status="cancelled")
    assert cancelled.status_code == 200, cancelled.text
    # the prescription is free for a new request; the cancelled one stays cancelled
    await _request(http, people.alice, refill("alice-rx"))
    reopened = await _put(http, people.dr, cancelled.json(), status="accepted")
    assert reopened.status_code == 409


async def test_staff_complete_a_refill(http: httpx.AsyncClient, people: People) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    accepted = await _put(http, people.dr, task, status="accepted")
    assert accepted.status_code == 200, accepted.text
    task = accepted.json()
    # completed names the new prescription, which names the old one
    assert (await _put(http, people.dr, task, status="completed")).status_code == 422
    renewal = prescription("alice-rx-new", "Patient/alice")
    await http.put("MedicationRequest/alice-rx-new", json=renewal, headers=people.dr)
    output = [{"type": {"text": "new prescription"}, "valueReference": ref(renewal["id"])}]
    output[0]["valueReference"] = ref("MedicationRequest/alice-rx-new")
    unlinked = await _put(http, people.dr, task, status="completed", output=output)
    assert unlinked.status_code == 422 and "priorPrescription" in unlinked.text
    renewal["priorPrescription"] = ref("MedicationRequest/alice-rx")
    await http.put("MedicationRequest/alice-rx-new", json=renewal, headers=people.dr)
    done = await _put(http, people.dr, task, status="completed", output=output)
    assert done.status_code == 200, done.text
    old = (await http.get("MedicationRequest/alice-rx", headers=people.alice)).json()
    assert old["status"] == "completed"
    assert old["meta"]["versionId"] == "2"
    # the patient sees the decision and the new prescription
    mine = (await http.get(f"Task/{task['id']}", headers=people.alice)).json()
    assert mine["status"] == "completed"
    current = await http.get("MedicationRequest?patient=alice&status=active", headers=people.alice)
    ids = {e["resource"]["id"] for e in current.json()["entry"]}
    assert "alice-rx-new" in ids and "alice-rx" not in ids
    # a decided request does not change
    assert (await _put(http, people.dr, done.json(), status="rejected")).status_code == 409


async def test_staff_reject_with_a_reason(http: httpx.AsyncClient, people: People) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    assert (await _put(http, people.dr, task, status="rejected")).status_code == 422
    assert (await _put(http, people.dr, task, status="completed")).status_code == 422
    reason = {"text": "Please book a visit first: blood pressure check due"}
    rejected = await _put(http, people.dr, task, status="rejected", statusReason=reason)
    assert rejected.status_code == 200, rejected.text
    old = (await http.get("MedicationRequest/alice-rx", headers=people.alice)).json()
    assert old["status"] == "active"


async def test_a_superseded_prescription_is_not_refilled(
    http: httpx.AsyncClient, people: People
) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    stopped = prescription("alice-rx", "Patient/alice", status="stopped")
    await http.put("MedicationRequest/alice-rx", json=stopped, headers=people.dr)
    response = await _put(http, people.dr, task, status="accepted")
    assert response.status_code == 422 and "superseded" in response.text


async def test_who_reads_a_refill_request(http: httpx.AsyncClient, people: People) -> None:
    task = await _request(http, people.alice, refill("alice-rx"))
    path = f"Task/{task['id']}"
    for who in (people.alice, people.mum, people.dr, people.nurse):
        assert (await http.get(path, headers=who)).status_code == 200
    assert (await http.get(path, headers=people.bob)).status_code == 404
    found = await http.get("Task?code=fulfill", headers=people.bob)
    assert found.json().get("entry") is None


async def test_the_medication_list(http: httpx.AsyncClient, people: People) -> None:
    """The patient's current medications: one query, plus what she reports taking."""
    response = await http.get(
        "MedicationRequest?patient=alice&status=active&_include=MedicationRequest:medication",
        headers=people.alice,
    )
    assert response.status_code == 200, response.text
    ids = {e["resource"]["id"] for e in response.json()["entry"]}
    assert ids == {"alice-rx", "alice-rx2", "alice-acute"}
    reported = {
        "resourceType": "MedicationStatement",
        "status": "active",
        "medicationCodeableConcept": {"text": "vitamin D 1000 IU"},
        "subject": ref("Patient/alice"),
        "informationSource": ref("Patient/alice"),
    }
    created = await http.post("MedicationStatement", json=reported, headers=people.alice)
    assert created.status_code == 201, created.text
    bobs = {**reported, "subject": ref("Patient/bob")}
    assert (
        await http.post("MedicationStatement", json=bobs, headers=people.alice)
    ).status_code == 403


async def test_staff_complete_in_one_transaction(http: httpx.AsyncClient, people: People) -> None:
    """The new prescription and the completed request in one transaction Bundle."""
    task = await _request(http, people.alice, refill("alice-rx"))
    skipped = await _put(http, people.dr, task, status="completed")
    assert skipped.status_code == 422  # accepted first
    task = (await _put(http, people.dr, task, status="accepted")).json()
    renewal = prescription(
        "x", "Patient/alice", priorPrescription=ref("MedicationRequest/alice-rx")
    )
    del renewal["id"]
    output = [
        {
            "type": {"text": "new prescription"},
            "valueReference": ref("urn:uuid:11111111-2222-3333-4444-555555555555"),
        }
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:11111111-2222-3333-4444-555555555555",
                "resource": renewal,
                "request": {"method": "POST", "url": "MedicationRequest"},
            },
            {
                "resource": {**task, "status": "completed", "output": output},
                "request": {"method": "PUT", "url": f"Task/{task['id']}"},
            },
        ],
    }
    response = await http.post("", json=bundle, headers=people.dr)
    assert response.status_code == 200, response.text
    old = (await http.get("MedicationRequest/alice-rx", headers=people.alice)).json()
    assert old["status"] == "completed"
    done = (await http.get(f"Task/{task['id']}", headers=people.alice)).json()
    new_id = done["output"][0]["valueReference"]["reference"]
    assert (await http.get(new_id, headers=people.alice)).json()["status"] == "active"

"""Attacks on the workflow rules (fhir_server/workflows) and on the types they keep
patient data in, by Alice's app (``patient/*.cruds`` for Alice) and her caregiver:
Bob's appointments, messages, refills, bills, audit trail and documents, by every write
path (create, update, update-as-create, PATCH, transaction with conditional references).
Each must be refused (403), or answered as for a resource that does not exist (404),
and leave Bob's data as it was."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx

from tests.patient_data.support import bearer, ids

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def _current(http: httpx.AsyncClient, admin: dict[str, str], path: str) -> dict[str, Any]:
    response = await http.get(path, headers=admin)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


# -- appointments ---------------------------------------------------------------------------


async def test_cancel_another_patients_appointment_by_every_path(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    before = await _current(http, admin, "Appointment/b-appt")
    cancelled = {
        **before,
        "status": "cancelled",
        "cancelationReason": {"text": "spite"},
        "participant": [{"actor": {"reference": "Patient/alice"}, "status": "accepted"}],
    }
    cancelled.pop("meta", None)
    for who in (alice, mum):
        put = await http.put("Appointment/b-appt", json=cancelled, headers=who)
        assert put.status_code in (403, 404), put.text
        patch = [
            {"op": "replace", "path": "/status", "value": "cancelled"},
            {"op": "add", "path": "/cancelationReason", "value": {"text": "spite"}},
        ]
        patched = await http.patch("Appointment/b-appt", json=patch, headers={**who, **JSON_PATCH})
        assert patched.status_code == 404, patched.text
        deleted = await http.delete("Appointment/b-appt", headers=who)
        assert deleted.status_code in (200, 204, 404)
        bundle = _transaction(
            {
                "resource": cancelled,
                "request": {"method": "PUT", "url": "Appointment?_id=b-appt"},
            }
        )
        conditional = await http.post("", json=bundle, headers=who)
        assert conditional.status_code in (400, 403, 404, 412), conditional.text
    after = await _current(http, admin, "Appointment/b-appt")
    assert after["status"] == "booked" and after["meta"] == before["meta"]
    slot = await _current(http, admin, "Slot/b-slot")
    assert slot["status"] == "busy"


async def test_own_appointment_cannot_release_another_slot(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Alice moves her appointment onto Bob's (busy) slot, then cancels it: Bob's slot
    stays busy."""
    mine = await _current(http, admin, "Appointment/a-appt")
    mine.pop("meta", None)
    moved = {
        **mine,
        "slot": [{"reference": "Slot/b-slot"}],
        "start": "2031-03-03T10:00:00Z",
        "end": "2031-03-03T10:30:00Z",
    }
    response = await http.put("Appointment/a-appt", json=moved, headers=alice)
    assert response.status_code == 409, response.text
    proposed = {**mine, "status": "proposed", "slot": [{"reference": "Slot/b-slot"}]}
    proposed.pop("start"), proposed.pop("end")
    created = await http.post("Appointment", json=proposed, headers=alice)
    assert created.status_code == 201, created.text
    cancel = {**created.json(), "status": "cancelled", "cancelationReason": {"text": "x"}}
    done = await http.put(f"Appointment/{cancel['id']}", json=cancel, headers=alice)
    assert done.status_code == 200, done.text
    assert (await _current(http, admin, "Slot/b-slot"))["status"] == "busy"


async def test_patient_cannot_free_a_slot_directly(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    slot = await _current(http, admin, "Slot/b-slot")
    slot.pop("meta", None)
    response = await http.put("Slot/b-slot", json={**slot, "status": "free"}, headers=alice)
    assert response.status_code == 403, response.text
    patch = [{"op": "replace", "path": "/status", "value": "free"}]
    patched = await http.patch("Slot/b-slot", json=patch, headers={**alice, **JSON_PATCH})
    assert patched.status_code == 403, patched.text


# -- messages -------------------------------------------------------------------------------


def _message(to: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Communication",
        "status": "in-progress",
        "subject": {"reference": "Patient/alice"},
        "sender": {"reference": "Patient/alice"},
        "topic": {"text": "hello"},
        "recipient": [{"reference": to}],
        "payload": [{"contentString": "buy my stuff"}],
        **extra,
    }


async def test_message_to_a_stranger_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    for to in (
        "Practitioner/stranger",
        "Organization/other-org",
        "Patient/bob",
        "RelatedPerson/mum",
    ):
        response = await http.post("Communication", json=_message(to), headers=alice)
        assert response.status_code == 403, (to, response.text)
    ok = await http.post("Communication", json=_message("Practitioner/dr"), headers=alice)
    assert ok.status_code == 201, ok.text


async def test_message_as_someone_else_or_about_someone_else_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    as_dr = _message("Practitioner/dr", sender={"reference": "Practitioner/dr"})
    assert (await http.post("Communication", json=as_dr, headers=alice)).status_code == 403
    as_alice = _message("Practitioner/dr")  # the caregiver sends as herself, not as Alice
    assert (await http.post("Communication", json=as_alice, headers=mum)).status_code == 403
    about_bob = _message("Practitioner/dr", subject={"reference": "Patient/bob"})
    assert (await http.post("Communication", json=about_bob, headers=alice)).status_code == 403


async def test_a_patient_cannot_make_a_stranger_her_care_team(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Each way in turn (what one way wrote is undone by staff before the next)."""
    team = {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": "Patient/alice"},
        "participant": [{"member": {"reference": "Practitioner/stranger"}}],
    }
    me = {
        "resourceType": "Patient",
        "id": "alice",
        "name": [{"family": "Liddell"}],
        "generalPractitioner": [{"reference": "Practitioner/stranger"}],
    }
    visit = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": "Patient/alice"},
        "participant": [{"individual": {"reference": "Practitioner/stranger"}}],
    }
    refused: list[str] = []
    for how, method, path, body in (
        ("care team", "POST", "CareTeam", team),
        ("general practitioner", "PUT", "Patient/alice", me),
        ("encounter", "POST", "Encounter", visit),
    ):
        written = await http.request(method, path, json=body, headers=alice)
        if written.status_code not in (200, 201):
            assert written.status_code in (403, 422), written.text
            refused.append(how)
            continue
        message = _message("Practitioner/stranger")
        response = await http.post("Communication", json=message, headers=alice)
        if response.status_code == 403:
            refused.append(how)
        undo = written.json()
        if how == "general practitioner":
            restore = {**undo, "generalPractitioner": [{"reference": "Practitioner/dr"}]}
            await http.put("Patient/alice", json=restore, headers=admin)
        else:
            await http.delete(f"{undo['resourceType']}/{undo['id']}", headers=admin)
    assert refused == ["care team", "general practitioner", "encounter"], refused


async def test_thread_of_another_patient_is_invisible(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    for who in (alice, mum):
        assert (await http.get("Communication/b-msg", headers=who)).status_code == 404
        thread = await http.get("Communication?part-of=Communication/b-msg", headers=who)
        assert thread.status_code == 200 and not thread.json().get("entry")
        inbox = await http.get("Communication?_query=inbox", headers=who)
        assert "TOPIC-bob" not in inbox.text
        reply = _message("Practitioner/dr", inResponseTo=[{"reference": "Communication/b-msg"}])
        reply.pop("topic")
        answered = await http.post("Communication", json=reply, headers=who)
        assert answered.status_code in (403, 404), answered.text
        read = await http.get("Communication/b-msg", headers=admin)
        receipt = {**read.json(), "status": "completed", "received": "2026-12-06T09:00:00Z"}
        receipt.pop("meta")
        marked = await http.put("Communication/b-msg", json=receipt, headers=who)
        assert marked.status_code in (403, 404), marked.text
        patch = [{"op": "add", "path": "/received", "value": "2026-12-06T09:00:00Z"}]
        patched = await http.patch("Communication/b-msg", json=patch, headers={**who, **JSON_PATCH})
        assert patched.status_code == 404, patched.text
    assert "received" not in await _current(http, admin, "Communication/b-msg")


async def test_own_message_cannot_be_rewritten_or_deleted(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    received = await _current(http, admin, "Communication/a-msg")
    received.pop("meta")
    rewritten = {**received, "payload": [{"contentString": "the doctor said yes"}]}
    assert (await http.put("Communication/a-msg", json=rewritten, headers=alice)).status_code == 422
    sender = {**received, "sender": {"reference": "Practitioner/stranger"}}
    assert (await http.put("Communication/a-msg", json=sender, headers=alice)).status_code == 422
    assert (await http.delete("Communication/a-msg", headers=alice)).status_code == 403


# -- refills --------------------------------------------------------------------------------


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
        bundle = _transaction(
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
    assert (await _current(http, admin, f"Task/{task['id']}"))["status"] == "requested"
    for query in (
        "Task",
        "MedicationRequest?_revinclude=Task:focus",
        "Patient?_id=alice&_revinclude=Task:patient",
        "Task?focus=MedicationRequest/b-mr",
        "Task?_include=Task:focus",
    ):
        found = await ids(http, query, alice)
        assert not found & {f"Task/{task['id']}", "MedicationRequest/b-mr", "Task/b-task"}, query


# -- bills ----------------------------------------------------------------------------------


async def test_patient_cannot_mark_paid_or_record_a_payment(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bill = await _current(http, admin, "Invoice/a-inv")
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
    bundle = _transaction(
        {"resource": payment, "request": {"method": "POST", "url": "PaymentReconciliation"}}
    )
    assert (await http.post("", json=bundle, headers=alice)).status_code == 403
    assert (await _current(http, admin, "Invoice/a-inv"))["status"] == "issued"
    assert (await _current(http, admin, "Invoice/b-inv"))["status"] == "issued"


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


# -- audit trail ----------------------------------------------------------------------------


async def test_audit_events_about_another_patient_are_invisible(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    bob_audit = http.headers["x-bob-audit"]
    for who in (alice, mum):
        assert (await http.get(f"AuditEvent/{bob_audit}", headers=who)).status_code == 404
        for query in (
            "AuditEvent?patient=Patient/bob",
            "AuditEvent?entity=Patient/bob",
            "AuditEvent",
            "Patient?_id=alice&_revinclude=AuditEvent:patient",
            "AuditEvent?agent=Practitioner/dr",
        ):
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 400, 403), (query, response.text)
            assert bob_audit not in response.text and "Patient/bob" not in response.text, query


async def test_audit_events_are_append_only(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    bob_audit = http.headers["x-bob-audit"]
    stored = await _current(http, admin, f"AuditEvent/{bob_audit}")
    for who in (alice, admin):
        put = await http.put(f"AuditEvent/{bob_audit}", json=stored, headers=who)
        assert put.status_code in (403, 404, 405), put.text
        assert (await http.delete(f"AuditEvent/{bob_audit}", headers=who)).status_code in (404, 405)


async def test_patient_cannot_forge_audit_events(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    forged = {
        "resourceType": "AuditEvent",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "action": "R",
        "recorded": "2026-12-06T03:00:00Z",
        "outcome": "0",
        "agent": [{"who": {"reference": "Practitioner/dr"}, "requestor": True}],
        "source": {"observer": {"display": "FHIR server"}},
        "entity": [{"what": {"reference": "Patient/alice"}}],
    }
    response = await http.post("AuditEvent", json=forged, headers=alice)
    assert response.status_code == 403, response.text


# -- documents and Binary -------------------------------------------------------------------


async def test_another_patients_document_cannot_be_downloaded(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for who in (alice, mum):
        for accept in ("application/fhir+json", "text/plain", "*/*", "text/*"):
            response = await http.get("Binary/b-bin", headers={**who, "accept": accept})
            assert response.status_code == 404, (accept, response.status_code)
            assert b"HIV" not in response.content
        for query in (
            "Binary?_id=b-bin",
            "DocumentReference?_id=b-doc",
            "Binary/b-bin/_history/1",
            "Binary/b-bin/_history",
        ):
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 404), (query, response.text)
            assert "SGl2IHJlc3VsdA" not in response.text, query
            if response.status_code == 200:
                assert not response.json().get("entry"), query


async def test_pointing_an_own_document_at_anothers_binary_gains_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    mine = {
        "resourceType": "DocumentReference",
        "status": "current",
        "subject": {"reference": "Patient/alice"},
        "content": [{"attachment": {"contentType": "text/plain", "url": "Binary/b-bin"}}],
    }
    made = await http.post("DocumentReference", json=mine, headers=alice)
    assert made.status_code in (201, 403), made.text
    # re-securing Bob's Binary by her own document, in one transaction
    hijack = {
        "resourceType": "Binary",
        "id": "b-bin",
        "contentType": "text/plain",
        "securityContext": {"reference": "Patient/alice"},
        "data": "eA==",
    }
    bundle = _transaction(
        {"resource": hijack, "request": {"method": "PUT", "url": "Binary/b-bin"}},
        {
            "fullUrl": "urn:uuid:0d7a3c55-8f0b-4a4e-9b3b-2f1f9d6a1c11",
            "resource": mine,
            "request": {"method": "POST", "url": "DocumentReference"},
        },
    )
    response = await http.post("", json=bundle, headers=alice)
    assert response.status_code in (403, 404), response.text
    assert (await http.get("Binary/b-bin", headers=alice)).status_code == 404
    stored = await _current(http, admin, "Binary/b-bin")
    assert stored["securityContext"] == {"reference": "DocumentReference/b-doc"}


async def test_uploads_of_active_content_are_refused(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    html = "PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg=="
    for kind in ("text/html", "image/svg+xml", "application/javascript", "text/plain\r\nX-A: b"):
        binary = {
            "resourceType": "Binary",
            "contentType": kind,
            "securityContext": {"reference": "Patient/alice"},
            "data": html,
        }
        response = await http.post("Binary", json=binary, headers=alice)
        assert response.status_code in (400, 415), (kind, response.text)
        document = {
            "resourceType": "DocumentReference",
            "status": "current",
            "subject": {"reference": "Patient/alice"},
            "content": [{"attachment": {"contentType": kind, "data": html}}],
        }
        response = await http.post("DocumentReference", json=document, headers=alice)
        assert response.status_code in (400, 415), (kind, response.text)
    raw = await http.post(
        "Binary",
        content=b"<script>alert(1)</script>",
        headers={**alice, "content-type": "text/html", "x-security-context": "Patient/alice"},
    )
    assert raw.status_code in (400, 403, 415), raw.text


# -- includes, reverse includes, chains and _has over the new types ---------------------------

BOB_IDS = {
    "Appointment/b-appt",
    "Communication/b-msg",
    "Task/b-task",
    "Task/both-task",
    "PaymentReconciliation/b-payment",
    "Invoice/b-inv",
    "DocumentReference/b-doc",
    "Binary/b-bin",
    "MedicationRequest/b-mr",
    "Encounter/b-enc",
    "Immunization/b-imm",
    "Condition/b-cond",
    "Patient/bob",
    "Schedule/bob-schedule",
}


async def test_includes_and_reverse_chains_reach_no_other_patient(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    queries = (
        "Slot?_revinclude=Appointment:slot",
        "Slot?_has:Appointment:slot:patient=Patient/bob",
        "Slot?_has:Appointment:slot:actor=Patient/bob",
        "Slot?status=busy&_revinclude=Appointment:slot",
        "Schedule?_revinclude=Slot:schedule&_revinclude:iterate=Appointment:slot",
        "Practitioner?_revinclude=Communication:recipient",
        "Practitioner?_revinclude=Communication:sender",
        "Practitioner?_has:Communication:recipient:subject=Patient/bob",
        "Practitioner?_revinclude=Appointment:actor",
        "Practitioner?_revinclude=Encounter:participant",
        "MedicationRequest?_revinclude=Task:focus",
        "Invoice?_revinclude=PaymentReconciliation:request",
        "Patient?_revinclude=AuditEvent:patient",
        "Practitioner?_revinclude=AuditEvent:agent",
        "DocumentReference?_include=DocumentReference:subject",
        "Communication?_include=Communication:part-of&_include=Communication:based-on",
        "Appointment?slot.status=busy",
        "Appointment?actor=Practitioner/dr&_include=Appointment:slot",
        "Task?_include=Task:focus&_include=Task:patient",
        "Task?patient=Patient/bob",
        "Communication?subject=Patient/bob",
        "Appointment?patient=Patient/bob",
    )
    for who in (alice, mum):
        for query in queries:
            response = await http.get(query, headers=who)
            assert response.status_code in (200, 400, 403), (query, response.text)
            if response.status_code == 200:
                found = {
                    f"{e['resource']['resourceType']}/{e['resource']['id']}"
                    for e in response.json().get("entry", [])
                }
                assert not found & BOB_IDS, (query, found & BOB_IDS)


async def test_access_report_names_no_other_patient(
    app: Any, http: httpx.AsyncClient, alice: dict[str, str], dr: dict[str, str]
) -> None:
    searched = await http.get("Observation?patient=Patient/alice,Patient/bob", headers=dr)
    assert searched.status_code == 200, searched.text
    await app.state.audit.flush()
    report = await http.get("AuditEvent?patient=Patient/alice&_sort=-date", headers=alice)
    assert report.status_code == 200, report.text
    events = [e["resource"] for e in report.json().get("entry", [])]
    assert any("Observation" in str(e) for e in events), "the staff search is in her report"
    for event in events:
        text = str(event)
        for entity in event.get("entity", []):
            if isinstance(entity.get("query"), str):
                text += base64.b64decode(entity["query"]).decode()
        assert "bob" not in text, text


async def test_raw_upload_secured_by_another_patient_is_refused(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for who in (alice, mum):
        for context in ("Patient/bob", "DocumentReference/b-doc", "Communication/b-msg"):
            raw = await http.post(
                "Binary",
                content=b"hello",
                headers={**who, "content-type": "text/plain", "x-security-context": context},
            )
            assert raw.status_code in (403, 404), (context, raw.text)
            as_json = {
                "resourceType": "Binary",
                "contentType": "text/plain",
                "securityContext": {"reference": context},
                "data": "aGVsbG8=",
            }
            response = await http.post("Binary", json=as_json, headers=who)
            assert response.status_code in (403, 404), (context, response.text)


async def test_a_staff_read_of_pretty_printed_data_is_in_the_patients_report(
    app: Any, http: httpx.AsyncClient, admin: dict[str, str], dr: dict[str, str], token: Any
) -> None:
    """An EHR pushes JSON as json.dumps writes it ("reference": "Patient/bob", with a
    space): a staff read of it is still in Bob's access report."""
    body = json.dumps(
        {
            "resourceType": "Observation",
            "id": "pretty",
            "status": "final",
            "code": {"text": "HIV viral load"},
            "subject": {"reference": "Patient/bob"},
        },
        indent=2,
    ).encode()
    written = await http.put(
        "Observation/pretty",
        content=body,
        headers={**admin, "content-type": "application/fhir+json"},
    )
    assert written.status_code == 201, written.text
    await app.state.audit.flush()
    read = await http.get("Observation/pretty", headers=dr)
    assert read.status_code == 200
    found = await http.get("Observation?code:text=HIV", headers=dr)
    assert found.status_code == 200 and found.json()["entry"]
    await app.state.audit.flush()
    bob = bearer(token("patient/*.rs", patient="bob", fhir_user="Patient/bob"))
    report = await http.get("AuditEvent?patient=Patient/bob", headers=bob)
    assert report.status_code == 200, report.text
    seen = [
        e["resource"]
        for e in report.json().get("entry", [])
        if e["resource"].get("agent", [{}])[0].get("who", {}).get("reference") == "Practitioner/dr"
        and (
            "Observation/pretty" in json.dumps(e["resource"]) or "HIV" in json.dumps(e["resource"])
        )
    ]
    kinds = {e["subtype"][0]["code"] for e in seen}
    assert {"read", "search-type"} <= kinds, kinds


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
    assert (await _current(http, admin, "Invoice/a-inv"))["status"] == "issued"

"""Attacks on the workflow rules of appointments and messages (fhir_server/workflows), by
Alice's app (``patient/*.cruds`` for Alice) and her caregiver: Bob's appointments and
Slots, messages to strangers or about others, Bob's threads, by every write path (create,
update, update-as-create, PATCH, transaction with conditional references). Each must be
refused (403), or answered as for a resource that does not exist (404), and leave Bob's
data as it was. Refills and bills: ``test_refills_and_bills``; the audit trail:
``test_audit_trail``; documents: ``test_documents``; searches: ``test_searches``."""

from __future__ import annotations

from typing import Any

import httpx

from tests.security_wave2.calls import JSON_PATCH, current, transaction


async def test_cancel_another_patients_appointment_by_every_path(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    before = await current(http, admin, "Appointment/b-appt")
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
        bundle = transaction(
            {
                "resource": cancelled,
                "request": {"method": "PUT", "url": "Appointment?_id=b-appt"},
            }
        )
        conditional = await http.post("", json=bundle, headers=who)
        assert conditional.status_code in (400, 403, 404, 412), conditional.text
    after = await current(http, admin, "Appointment/b-appt")
    assert after["status"] == "booked" and after["meta"] == before["meta"]
    slot = await current(http, admin, "Slot/b-slot")
    assert slot["status"] == "busy"


async def test_own_appointment_cannot_release_another_slot(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Alice moves her appointment onto Bob's (busy) slot, then cancels it: Bob's slot
    stays busy."""
    mine = await current(http, admin, "Appointment/a-appt")
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
    assert (await current(http, admin, "Slot/b-slot"))["status"] == "busy"


async def test_patient_cannot_free_a_slot_directly(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    slot = await current(http, admin, "Slot/b-slot")
    slot.pop("meta", None)
    response = await http.put("Slot/b-slot", json={**slot, "status": "free"}, headers=alice)
    assert response.status_code == 403, response.text
    patch = [{"op": "replace", "path": "/status", "value": "free"}]
    patched = await http.patch("Slot/b-slot", json=patch, headers={**alice, **JSON_PATCH})
    assert patched.status_code == 403, patched.text


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
    assert "received" not in await current(http, admin, "Communication/b-msg")


async def test_own_message_cannot_be_rewritten_or_deleted(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    received = await current(http, admin, "Communication/a-msg")
    received.pop("meta")
    rewritten = {**received, "payload": [{"contentString": "the doctor said yes"}]}
    assert (await http.put("Communication/a-msg", json=rewritten, headers=alice)).status_code == 422
    sender = {**received, "sender": {"reference": "Practitioner/stranger"}}
    assert (await http.put("Communication/a-msg", json=sender, headers=alice)).status_code == 422
    assert (await http.delete("Communication/a-msg", headers=alice)).status_code == 403

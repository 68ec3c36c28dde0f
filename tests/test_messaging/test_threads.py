"""Secure messaging through the HTTP API with SMART tokens, on every store (issue 19):
who may write to whom, server-set fields, the thread model, read receipts and the
immutability of sent messages (``fhir_server.workflows.messaging``)."""

from __future__ import annotations

import httpx

from tests.patient_data.support import JSON_PATCH
from tests.test_messaging.support import People, message, ref, send


async def _count(http: httpx.AsyncClient, people: People) -> int:
    response = await http.get("Communication?_summary=count", headers=people.admin)
    return int(response.json()["total"])


async def test_a_patient_writes_to_her_care_relations(
    http: httpx.AsyncClient, people: People
) -> None:
    care = [
        "Practitioner/dr",  # general practitioner
        "PractitionerRole/dr-role",  # a role of her general practitioner
        "CareTeam/alice-team",  # her care team
        "Practitioner/nurse",  # a member of her care team
        "Practitioner/surgeon",  # a practitioner of one of her encounters
        "Organization/clinic",  # her managing organization
        "Organization/billing",  # FHIR_SERVER_ORGANIZATION_INBOXES
    ]
    body = message("Patient/alice", care, "Can I take ibuprofen?")
    body.update(sent="2001-01-01T00:00:00Z", received="2001-01-01T00:00:00Z", status="completed")
    sent = await send(http, people.alice, body)
    assert sent["status"] == "in-progress"
    assert "received" not in sent
    assert sent["sent"] != "2001-01-01T00:00:00Z"
    assert [r["reference"] for r in sent["recipient"]] == care


async def test_a_patient_cannot_message_a_stranger(http: httpx.AsyncClient, people: People) -> None:
    for stranger in (
        "Practitioner/bobs-dr",
        "PractitionerRole/bobs-dr-role",
        "Organization/elsewhere",
        "Patient/bob",
    ):
        body = message("Patient/alice", ["Practitioner/dr", stranger], "hello")
        response = await http.post("Communication", json=body, headers=people.alice)
        assert response.status_code == 403, (stranger, response.text)
    refused = await http.post(
        "Communication",
        json=message("Patient/alice", ["Practitioner/bobs-dr"], "hi"),
        headers=people.alice,
    )
    assert "not in the care team of Patient/alice" in refused.text
    # another patient's care team: not even readable
    team = message("Patient/alice", ["CareTeam/bob-team"], "hi")
    assert (await http.post("Communication", json=team, headers=people.alice)).status_code == 403
    assert await _count(http, people) == 0


async def test_the_sender_is_the_signed_in_user(http: httpx.AsyncClient, people: People) -> None:
    for sender in ("Practitioner/dr", "RelatedPerson/mum", "Patient/bob"):
        body = message(sender, ["Practitioner/dr"], "forged")
        response = await http.post("Communication", json=body, headers=people.alice)
        assert response.status_code == 403, (sender, response.text)
    as_alice = message("Patient/alice", ["Practitioner/dr"], "forged")
    assert (await http.post("Communication", json=as_alice, headers=people.mum)).status_code == 403
    # a caregiver writes as their RelatedPerson, about the patient
    mine = await send(http, people.mum, message("RelatedPerson/mum", ["Practitioner/dr"], "ok"))
    assert mine["sender"] == ref("RelatedPerson/mum")
    # staff send as themselves or one of their roles
    to_alice = message("PractitionerRole/dr-role", ["Patient/alice"], "Results are fine")
    await send(http, people.dr, to_alice)
    forged = message("Practitioner/nurse", ["Patient/alice"], "forged")
    assert (await http.post("Communication", json=forged, headers=people.dr)).status_code == 403
    # a message about another patient is not Alice's to send
    about_bob = message("Patient/alice", ["Practitioner/dr"], "x", subject="Patient/bob")
    response = await http.post("Communication", json=about_bob, headers=people.alice)
    assert response.status_code == 403
    assert await _count(http, people) == 2


async def test_a_thread_and_who_reads_it(http: httpx.AsyncClient, people: People) -> None:
    first = await send(http, people.alice, message("Patient/alice", ["Practitioner/dr"], "Rash"))
    assert first["topic"] == {"text": "A question"}
    answer = message(
        "Practitioner/dr",
        ["Patient/alice"],
        "Send a photo",
        inResponseTo=[ref(f"Communication/{first['id']}")],
    )
    reply = await send(http, people.dr, answer)
    assert reply["partOf"] == [ref(f"Communication/{first['id']}")]  # filled in
    # Alice answers the reply: the thread is still the first message's
    wrong = message(
        "Patient/alice",
        ["Practitioner/dr"],
        "Here",
        inResponseTo=[ref(f"Communication/{reply['id']}")],
        partOf=[ref(f"Communication/{reply['id']}")],
    )
    assert (await http.post("Communication", json=wrong, headers=people.alice)).status_code == 422
    right = {**wrong, "partOf": [ref(f"Communication/{first['id']}")]}
    third = await send(http, people.alice, right)
    thread = await http.get(
        f"Communication?part-of=Communication/{first['id']}&_sort=sent", headers=people.alice
    )
    assert [e["resource"]["id"] for e in thread.json()["entry"]] == [reply["id"], third["id"]]
    # a new thread names its subject line
    untitled = message("Patient/alice", ["Practitioner/dr"], "no topic")
    del untitled["topic"]
    assert (
        await http.post("Communication", json=untitled, headers=people.alice)
    ).status_code == 422
    # Bob is in none of it: not readable, not searchable, no reply into it
    for id_ in (first["id"], reply["id"], third["id"]):
        assert (await http.get(f"Communication/{id_}", headers=people.bob)).status_code == 404
    found = await http.get(f"Communication?part-of=Communication/{first['id']}", headers=people.bob)
    assert found.json().get("entry") is None
    intruder = message(
        "Patient/bob",
        ["Practitioner/dr"],
        "me too",
        subject="Patient/bob",
        inResponseTo=[ref(f"Communication/{first['id']}")],
    )
    assert (await http.post("Communication", json=intruder, headers=people.bob)).status_code == 403
    # Alice's caregiver reads it, and so do staff
    assert (await http.get(f"Communication/{reply['id']}", headers=people.mum)).status_code == 200
    assert (await http.get(f"Communication/{first['id']}", headers=people.nurse)).status_code == 200


async def test_read_receipts(http: httpx.AsyncClient, people: People) -> None:
    sent = await send(http, people.alice, message("Patient/alice", ["Practitioner/dr"], "Hi"))
    path = f"Communication/{sent['id']}"
    mark = [{"op": "add", "path": "/received", "value": "2030-01-01T10:00:00Z"}]
    headers = {**JSON_PATCH}
    # only the recipient marks it read: not the sender, not another practitioner
    for who in (people.alice, people.nurse, people.mum):
        response = await http.patch(path, json=mark, headers={**who, **headers})
        assert response.status_code == 403, response.text
    unread = await http.get(
        "Communication?recipient=Practitioner/dr&received:missing=true&_summary=count",
        headers=people.dr,
    )
    assert unread.json()["total"] == 1
    read = await http.patch(path, json=mark, headers={**people.dr, **headers})
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "completed"
    assert read.json()["received"] == "2030-01-01T10:00:00Z"
    # the sender sees it
    seen = (await http.get(path, headers=people.alice)).json()
    assert seen["received"] == "2030-01-01T10:00:00Z"
    # a receipt does not change
    again = [{"op": "replace", "path": "/received", "value": "2031-01-01T10:00:00Z"}]
    assert (await http.patch(path, json=again, headers={**people.dr, **headers})).status_code == 422
    unread = await http.get(
        "Communication?recipient=Practitioner/dr&received:missing=true&_summary=count",
        headers=people.dr,
    )
    assert unread.json()["total"] == 0
    # a patient marks a message to her read by PUT with status completed: the server
    # records when
    to_alice = await send(http, people.dr, message("Practitioner/dr", ["Patient/alice"], "Hi"))
    body = {**to_alice, "status": "completed"}
    put = await http.put(f"Communication/{to_alice['id']}", json=body, headers=people.alice)
    assert put.status_code == 200, put.text
    assert put.json()["received"]


async def test_a_sent_message_does_not_change(http: httpx.AsyncClient, people: People) -> None:
    sent = await send(http, people.alice, message("Patient/alice", ["Practitioner/dr"], "Hi"))
    path = f"Communication/{sent['id']}"
    for who in (people.alice, people.dr, people.admin):
        edited = {**sent, "payload": [{"contentString": "edited"}]}
        assert (await http.put(path, json=edited, headers=who)).status_code == 422
        redirected = {**sent, "recipient": [ref("Practitioner/nurse")]}
        assert (await http.put(path, json=redirected, headers=who)).status_code == 422
        backdated = {**sent, "sent": "2001-01-01T00:00:00Z"}
        assert (await http.put(path, json=backdated, headers=who)).status_code == 422
    assert (await http.delete(path, headers=people.alice)).status_code == 403
    error = {**sent, "status": "entered-in-error"}
    assert (await http.put(path, json=error, headers=people.alice)).status_code == 403
    staff = await http.put(path, json=error, headers=people.nurse)
    assert staff.status_code == 200, staff.text
    stored = (await http.get(path, headers=people.alice)).json()
    assert stored["payload"] == [{"contentString": "Hi"}]
    assert stored["status"] == "entered-in-error"
    # staff do not delete what they sent
    theirs = await send(http, people.dr, message("Practitioner/dr", ["Patient/alice"], "Hi"))
    response = await http.delete(f"Communication/{theirs['id']}", headers=people.dr)
    assert response.status_code == 403

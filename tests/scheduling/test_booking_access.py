"""Which Slots a patient or caregiver may book (issue 18, "Bad input" and "Patients book
only for themselves"): a Slot that does not exist, a Slot of another patient's own
Schedule and a Slot reserved for another patient get one and the same answer (422 naming
only the reference given: no existence oracle, no other patient named), on every write
path (POST, $book, a transaction) and store; a patient books a Slot of their own
Schedule; staff are not limited."""

from __future__ import annotations

from typing import Any

import httpx

from tests.scheduling.support import appointment, at, count, status_of

HIDDEN = ("bob-s1", "for-bob")
"""Bob's own Schedule's Slot; a Slot that refers to Bob (Alice may not read it)."""


def _parameters(resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": resource}],
    }


def _proposal(slot_id: str, *actors: str) -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot_id}"}],
        "participant": [{"actor": {"reference": a}, "status": "needs-action"} for a in actors],
    }


def _issue(response: httpx.Response, slot_id: str) -> dict[str, Any]:
    """The answer's issue with the slot's id made neutral."""
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Patient/bob" not in response.text and "bob-own" not in response.text
    [issue] = body["issue"]
    assert f"Slot/{slot_id}" in issue["diagnostics"], issue
    return {**issue, "diagnostics": issue["diagnostics"].replace(f"Slot/{slot_id}", "Slot/X")}


async def _attempts(
    http: httpx.AsyncClient, who: dict[str, str], slot_id: str
) -> list[httpx.Response]:
    """Booking ``slot_id`` for Alice on every path, with and without the practitioner."""
    times = {"start": at(3, 10), "end": at(3, 10, 20)}
    with_dr = appointment(slot_id, **times)
    alone = appointment(slot_id, practitioner=None, **times)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": alone, "request": {"method": "POST", "url": "Appointment"}}],
    }
    return [
        await http.post("Appointment", json=with_dr, headers=who),
        await http.post("Appointment", json=alone, headers=who),
        await http.post(
            "Appointment/$book", json=_parameters(_proposal(slot_id, "Patient/alice")), headers=who
        ),
        await http.post(
            "Appointment/$book",
            json=_parameters(_proposal(slot_id, "Patient/alice", "Practitioner/dr")),
            headers=who,
        ),
        await http.post("", json=bundle, headers=who),
    ]


async def test_hidden_slots_answer_like_slots_that_do_not_exist(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    for who in (alice, mum):
        missing = [_issue(r, "nope") for r in await _attempts(http, who, "nope")]
        for slot_id in HIDDEN:
            hidden = [_issue(r, slot_id) for r in await _attempts(http, who, slot_id)]
            assert hidden == missing, slot_id
    assert await count(http, "Appointment", admin) == 0
    for slot_id in HIDDEN:
        assert await status_of(http, slot_id, admin) == "free"


async def test_the_answer_names_the_reference_given(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    given = "https://elsewhere.example/fhir/Slot/nope"
    body = {**appointment("s1"), "slot": [{"reference": "Slot/s2"}, {"reference": given}]}
    response = await http.post("Appointment", json=body, headers=alice)
    assert response.status_code == 422, response.text
    [issue] = response.json()["issue"]
    assert given in issue["diagnostics"]
    assert issue["expression"] == ["Appointment.slot[1]"]


async def test_a_patient_books_a_slot_of_their_own_schedule(
    http: httpx.AsyncClient, bob: dict[str, str], alice: dict[str, str], admin: dict[str, str]
) -> None:
    own = await http.post(
        "Appointment", json=appointment("bob-s1", patient="bob", practitioner=None), headers=bob
    )
    assert own.status_code == 201, own.text
    assert await status_of(http, "bob-s1", admin) == "busy"
    # Alice still cannot tell it from a Slot that does not exist (busy or not)
    [taken, *_] = await _attempts(http, alice, "bob-s1")
    [missing, *_] = await _attempts(http, alice, "nope")
    assert _issue(taken, "bob-s1") == _issue(missing, "nope")


async def test_staff_book_any_slot(http: httpx.AsyncClient, staff: dict[str, str]) -> None:
    """The Slot reserved for Bob, for Bob; Bob's own Schedule's Slot, for Bob."""
    for_bob = await http.post(
        "Appointment", json=appointment("for-bob", patient="bob"), headers=staff
    )
    assert for_bob.status_code == 201, for_bob.text
    own = appointment("bob-s1", patient="bob", practitioner=None)
    assert (await http.post("Appointment", json=own, headers=staff)).status_code == 201


async def test_a_proposed_appointment_refers_to_no_hidden_slot(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    """Not a booking, still a reference: a patient's Appointment links no Slot it may not
    read (staff would see it linked to another patient's Schedule)."""
    for slot_id in ("nope", *HIDDEN):
        proposed = {**_proposal(slot_id, "Patient/alice"), "start": at(3, 10), "end": at(3, 11)}
        response = await http.post("Appointment", json=proposed, headers=alice)
        _issue(response, slot_id)
    visible = {**_proposal("s3", "Patient/alice")}
    assert (await http.post("Appointment", json=visible, headers=alice)).status_code == 201
    assert await status_of(http, "s3", admin) == "free"  # a proposal holds nothing

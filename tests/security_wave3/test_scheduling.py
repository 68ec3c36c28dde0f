"""Attacks on scheduling (``fhir_server.workflows._scheduling_access``,
``operations.find``, ``operations.book``): ``$find``'s ``patient`` naming another
patient (alone, repeated, as a practitioner), ``$book`` of a proposal for another
patient, and the plain searches that would show a Slot of another patient's own
Schedule. The seed and tokens of ``tests/scheduling`` (Bob's own Schedule ``bob-own``
with its Slot ``bob-s1``), on every store."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.patient_data.support import Token, bearer
from tests.scheduling.conftest import alice, bob, http, mum, staff
from tests.scheduling.conftest import settings as scheduling_settings
from tests.scheduling.support import at, schedule, slot, status_of

FIXTURES = (alice, bob, http, mum, staff)
settings = scheduling_settings
WINDOW = {"start": at(0, 0)[:10], "end": at(28, 0)[:10], "_count": "50"}


def _book(slot: str, *actors: str) -> dict[str, Any]:
    proposal = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": f"Slot/{slot}"}],
        "participant": [{"actor": {"reference": a}, "status": "needs-action"} for a in actors],
    }
    return {
        "resourceType": "Parameters",
        "parameter": [{"name": "appt-resource", "resource": proposal}],
    }


@pytest.mark.parametrize("who", ["alice", "mum"])
async def test_find_for_another_patient_is_refused_like_for_nobody(
    http: httpx.AsyncClient, request: pytest.FixtureRequest, who: str
) -> None:
    headers = request.getfixturevalue(who)
    theirs = await http.get(
        "Appointment/$find", params={**WINDOW, "patient": "Patient/bob"}, headers=headers
    )
    nobody = await http.get(
        "Appointment/$find", params={**WINDOW, "patient": "Patient/nobody"}, headers=headers
    )
    assert theirs.status_code == nobody.status_code == 403, theirs.text
    assert theirs.text.replace("Patient/bob", "X") == nobody.text.replace("Patient/nobody", "X")
    assert "bob-s1" not in theirs.text
    for params in (
        [*WINDOW.items(), ("patient", "Patient/alice"), ("patient", "Patient/bob")],
        [*WINDOW.items(), ("patient", "Patient/bob"), ("patient", "Patient/alice")],
        [*WINDOW.items(), ("practitioner", "Patient/bob")],
        [*WINDOW.items(), ("patient", "Patient/alice,Patient/bob")],
    ):
        answer = await http.get("Appointment/$find", params=params, headers=headers)
        assert answer.status_code in (200, 400, 403), answer.text
        assert "bob-s1" not in answer.text, params
        if answer.status_code == 200:  # a refusal may echo the reference given
            assert "Patient/bob" not in answer.text, params


async def test_another_patients_own_schedule_is_not_found(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for headers in (alice, mum):
        assert (await http.get("Schedule/bob-own", headers=headers)).status_code == 404
        for params in ({"actor": "Patient/bob"}, {"_id": "bob-own"}):
            found = await http.get("Schedule", params=params, headers=headers)
            assert found.status_code == 200, found.text
            assert not found.json().get("entry"), params
        found = await http.get("Slot", params={"schedule.actor": "Patient/bob"}, headers=headers)
        assert not found.json().get("entry")


async def test_plain_searches_show_no_slot_of_another_patients_schedule(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str]
) -> None:
    for headers in (alice, mum):
        absent = await http.get("Slot/no-such-slot", headers=headers)
        read = await http.get("Slot/bob-s1", headers=headers)
        assert read.status_code == absent.status_code == 404, read.text
        for params in (
            {"schedule": "Schedule/bob-own"},
            {"_id": "bob-s1"},
            {"status": "free", "_count": "100"},
            {"_include": "Slot:schedule", "_count": "100"},
        ):
            found = await http.get("Slot", params=params, headers=headers)
            assert found.status_code == 200, found.text
            entries = json.dumps(found.json().get("entry", []))
            assert "bob-s1" not in entries and "bob-own" not in entries, params


async def _entries(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], **params: str
) -> str:
    """The entries of a search or history Bundle, as text (200 expected)."""
    found = await http.get(path, params=params, headers=headers)
    assert found.status_code == 200, (path, params, found.text)
    return json.dumps(found.json().get("entry", []))


async def test_no_other_path_shows_a_slot_of_another_patients_schedule(
    http: httpx.AsyncClient, alice: dict[str, str], mum: dict[str, str], bob: dict[str, str]
) -> None:
    """History, vread, includes, chains and operations: Bob's own Slot is Bob's (Alice and
    her caregiver do not see it), a practitioner's Slot is everyone's; before and after
    Bob books it (the booking writes the Slot)."""
    booked = await http.post("Appointment/$book", json=_book("bob-s1", "Patient/bob"), headers=bob)
    assert booked.status_code == 201, booked.text
    for headers in (alice, mum):
        for path in ("Slot/bob-s1/_history/1", "Slot/bob-s1/_history/2"):
            assert (await http.get(path, headers=headers)).status_code == 404, path
        history = await http.get("Slot/bob-s1/_history", headers=headers)
        assert history.status_code in (200, 404), history.text
        assert "bob-s1" not in json.dumps(history.json().get("entry", []))
        searches: list[tuple[str, dict[str, str]]] = [
            ("Slot/_history", {"_count": "100"}),
            ("Slot", {"_id": "bob-s1", "_include": "Slot:schedule"}),
            ("Slot", {"schedule:Schedule.actor": "Patient/bob"}),
            ("Slot", {"schedule._id": "bob-own"}),
            ("Slot", {"status": "busy", "_count": "100"}),
            ("Schedule", {"_revinclude": "Slot:schedule", "_count": "100"}),
            ("Schedule", {"_id": "bob-own,dr-sched", "_revinclude": "Slot:schedule"}),
            ("Appointment/$find", {**WINDOW}),
        ]
        for path, params in searches:
            entries = await _entries(http, path, headers, **params)
            assert "bob-s1" not in entries and "bob-own" not in entries, (path, params)
        assert "Slot/s1" in await _entries(http, "Slot", headers, schedule="Schedule/dr-sched")
        assert "Slot/s1" in await _entries(http, "Slot/s1/_history", headers)
    system = await _entries(http, "_history", mum, _count="200")
    assert "bob-s1" not in system and "Slot/s1" in system
    # Bob, and staff, see it on the same paths
    for path, params in (
        ("Slot/bob-s1/_history", {}),
        ("Slot", {"schedule.actor": "Patient/bob", "_include": "Slot:schedule"}),
        ("Schedule", {"_id": "bob-own", "_revinclude": "Slot:schedule"}),
    ):
        assert "Slot/bob-s1" in await _entries(http, path, bob, **params), (path, params)


async def test_staff_read_a_patients_schedule_slots(
    http: httpx.AsyncClient, staff: dict[str, str], admin: dict[str, str]
) -> None:
    for headers in (staff, admin):
        assert (await http.get("Slot/bob-s1", headers=headers)).status_code == 200
        found = await _entries(http, "Slot", headers, schedule="Schedule/bob-own")
        assert "Slot/bob-s1" in found
        assert "Slot/bob-s1" in await _entries(http, "Slot/bob-s1/_history", headers)


async def test_a_patients_schedule_slots_are_read_by_the_caregiver_acting_for_her(
    http: httpx.AsyncClient,
    alice: dict[str, str],
    mum: dict[str, str],
    bob: dict[str, str],
    admin: dict[str, str],
) -> None:
    for resource in (
        schedule("alice-own", "Patient/alice"),
        slot("alice-s1", "alice-own", at(4, 10)),
    ):
        path = f"{resource['resourceType']}/{resource['id']}"
        assert (await http.put(path, json=resource, headers=admin)).status_code == 201
    for headers in (alice, mum):
        assert (await http.get("Slot/alice-s1", headers=headers)).status_code == 200
        assert "Slot/alice-s1" in await _entries(http, "Slot", headers, status="free", _count="100")
    assert (await http.get("Slot/alice-s1", headers=bob)).status_code == 404
    assert "alice-s1" not in await _entries(http, "Slot", bob, status="free", _count="100")


async def test_slots_follow_their_schedules_actor_when_it_changes(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    """A practitioner's Schedule that becomes a patient's takes its Slots along (every
    version of them); given back to the practitioner, its Slots are directory data again."""
    assert (await http.get("Slot/dr2-s1", headers=alice)).status_code == 200
    changed = {
        **schedule("dr2-sched", "Practitioner/dr2"),
        "actor": [{"reference": "Practitioner/dr2"}, {"reference": "Patient/bob"}],
    }
    assert (await http.put("Schedule/dr2-sched", json=changed, headers=admin)).status_code == 200
    for path in ("Slot/dr2-s1", "Slot/dr2-s1/_history/1"):
        assert (await http.get(path, headers=alice)).status_code == 404, path
        assert (await http.get(path, headers=bob)).status_code == 200, path
    assert "dr2-s1" not in await _entries(http, "Slot", alice, schedule="Schedule/dr2-sched")
    back = schedule("dr2-sched", "Practitioner/dr2")
    assert (await http.put("Schedule/dr2-sched", json=back, headers=admin)).status_code == 200
    assert (await http.get("Slot/dr2-s1", headers=alice)).status_code == 200
    assert "Slot/dr2-s1" in await _entries(http, "Slot", alice, schedule="Schedule/dr2-sched")


async def test_book_a_proposal_for_another_patient_is_refused(
    http: httpx.AsyncClient,
    alice: dict[str, str],
    mum: dict[str, str],
    admin: dict[str, str],
) -> None:
    for headers in (alice, mum):
        for actors in (("Patient/bob", "Practitioner/dr"), ("Patient/alice", "Patient/bob")):
            answer = await http.post(
                "Appointment/$book", json=_book("s1", *actors), headers=headers
            )
            assert answer.status_code in (400, 403, 422), answer.text
    assert await status_of(http, "s1", admin) == "free"
    bobs = await http.get("Appointment", params={"actor": "Patient/bob"}, headers=admin)
    assert bobs.json().get("total", len(bobs.json().get("entry", []))) == 0


async def test_a_token_for_bob_alone_books_bobs_own_slot_not_alices_app(
    http: httpx.AsyncClient, token: Token, admin: dict[str, str]
) -> None:
    """An app of Alice's with user/ scopes but a patient context of Alice's cannot book
    Bob's own Slot either (its Schedule is Bob's record)."""
    user_scoped = bearer(token("user/*.cruds", patient="alice", fhir_user="Patient/alice"))
    answer = await http.post(
        "Appointment/$book", json=_book("bob-s1", "Patient/alice"), headers=user_scoped
    )
    assert answer.status_code == 422, answer.text
    assert "Patient/bob" not in answer.text and "bob-own" not in answer.text
    assert await status_of(http, "bob-s1", admin) == "free"

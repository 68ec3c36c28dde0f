"""Appointment scheduling through the HTTP API with SMART tokens, on every store (issue
18, ``fhir_server.workflows.scheduling``): finding free slots as a patient, booking
(slots busy in the same transaction, never twice), the refusals, cancelling (slots
freed; the patient's cutoff), rescheduling as one transaction, telehealth links."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.scheduling.support import (
    TELEHEALTH,
    appointment,
    at,
    count,
    slot,
    status_of,
)

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def _book(http: httpx.AsyncClient, who: dict[str, str], *slots: str, **extra: Any):
    return await http.post("Appointment", json=appointment(*slots, **extra), headers=who)


async def _cancel(
    http: httpx.AsyncClient, booked: dict[str, Any], who: dict[str, str]
) -> httpx.Response:
    """``who`` cancels the appointment ``booked`` (PUT, with a reason)."""
    cancel = {**booked, "status": "cancelled", "cancelationReason": {"text": "ill"}}
    return await http.put(f"Appointment/{booked['id']}", json=cancel, headers=who)


async def test_a_patient_finds_a_practitioners_free_slots(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    schedule = await http.get("Schedule/dr-sched", headers=alice)
    assert schedule.status_code == 200, schedule.text
    query = f"Slot?schedule.actor=Practitioner/dr&status=free&start=ge{at(2, 0)}&start=lt{at(4, 0)}"
    response = await http.get(query, headers=alice)
    assert response.status_code == 200, response.text
    found = {e["resource"]["id"] for e in response.json().get("entry", [])}
    assert found == {"s1", "s2", "s3", "s1-overlap"}


async def test_booking_makes_the_slot_busy(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    response = await _book(http, alice, "s1")
    assert response.status_code == 201, response.text
    booked = response.json()
    assert (booked["start"], booked["end"]) == (at(3, 9), at(3, 9, 20))
    assert await status_of(http, "s1", admin) == "busy"
    assert "extension" not in booked  # not a virtual appointment


async def test_a_slot_is_never_booked_twice(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    assert (await _book(http, alice, "s1")).status_code == 201
    again = await _book(http, bob, "s1", patient="bob")
    assert again.status_code == 409
    assert "Slot/s1" in again.json()["issue"][0]["diagnostics"]
    assert await count(http, "Appointment", admin) == 1


async def test_concurrent_bookings_of_one_slot_one_wins(
    http: httpx.AsyncClient, bob: dict[str, str], admin: dict[str, str]
) -> None:
    responses = await asyncio.gather(*(_book(http, bob, "s2", patient="bob") for _ in range(20)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 19, codes
    assert all("Slot/s2" in r.text for r in responses if r.status_code == 409)
    assert await count(http, "Appointment?slot=Slot/s2&status=booked", admin) == 1


async def test_bookings_that_are_refused_change_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], staff: dict[str, str], admin: dict[str, str]
) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        (appointment("s-past"), 422, "Slot/s-past starts in the past"),
        (appointment("s-closed"), 422, "Slot/s-closed is not free"),
        (appointment("s-far"), 422, "Slot/s-far is outside the planning horizon"),
        (appointment("s-early"), 422, "Slot/s-early is outside the planning horizon"),
        (appointment("s-off"), 422, "Schedule/dr-off, which is not active"),
        (appointment("s-error"), 422, "Slot/s-error is not free"),
        (appointment("s-tentative"), 409, "Slot/s-tentative is not free"),
        (appointment("dr2-s1"), 422, "not of the appointment's Practitioner/dr"),
        (appointment("s1", "s1-overlap"), 422, "overlap"),
        (appointment("s1", start=at(3, 10)), 422, "Appointment.start"),
        (appointment("s1", "s2", end=at(3, 9, 20)), 422, "Appointment.end"),
        ({**appointment("s1"), "slot": [{"reference": "Schedule/dr-sched"}]}, 400, "Slot"),
    ]
    for body, status, message in cases:
        response = await http.post("Appointment", json=body, headers=alice)
        assert response.status_code == status, (body["slot"], response.text)
        assert response.json()["resourceType"] == "OperationOutcome"
        assert message in response.json()["issue"][0]["diagnostics"], response.text
    unknown = appointment("nope", start=at(3, 9), end=at(3, 9, 20))
    by_staff = await http.post("Appointment", json=unknown, headers=staff)
    assert by_staff.status_code == 422
    assert "Slot/nope does not exist" in by_staff.text
    # a patient is told the same: the reference it gave names no Slot it may book
    by_patient = await http.post("Appointment", json=unknown, headers=alice)
    assert by_patient.status_code == 422
    assert by_patient.json()["issue"] == by_staff.json()["issue"]
    assert await count(http, "Appointment", admin) == 0
    for id_ in ("s1", "s2", "s-far", "s-early", "s-off", "dr2-s1", "s-past"):
        assert await status_of(http, id_, admin) == "free"
    assert await status_of(http, "s-tentative", admin) == "busy-tentative"


async def test_two_slots_in_a_row_make_one_appointment(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    response = await _book(http, alice, "s1", "s2", start=at(3, 9), end=at(3, 9, 40))
    assert response.status_code == 201, response.text
    assert [await status_of(http, s, admin) for s in ("s1", "s2", "s3")] == [
        "busy",
        "busy",
        "free",
    ]


async def test_patients_book_only_for_themselves(
    http: httpx.AsyncClient,
    alice: dict[str, str],
    mum: dict[str, str],
    admin: dict[str, str],
    staff: dict[str, str],
) -> None:
    assert (await _book(http, alice, "s1", patient="bob")).status_code == 403
    assert (await _book(http, mum, "s1", patient="bob")).status_code == 403
    assert await status_of(http, "s1", admin) == "free"
    by_caregiver = await _book(http, mum, "s1")
    assert by_caregiver.status_code == 201, by_caregiver.text
    by_staff = await _book(http, staff, "s2", patient="bob")
    assert by_staff.status_code == 201, by_staff.text


async def test_cancelling_frees_the_slot(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    booked = (await _book(http, alice, "s1")).json()
    path = f"Appointment/{booked['id']}"
    no_reason = await http.put(path, json={**booked, "status": "cancelled"}, headers=alice)
    assert no_reason.status_code == 422
    assert "cancelationReason" in no_reason.text
    patch = [
        {"op": "replace", "path": "/status", "value": "cancelled"},
        {"op": "add", "path": "/cancelationReason", "value": {"text": "feeling better"}},
    ]
    headers = {**alice, **JSON_PATCH}
    cancelled = await http.patch(path, content=json.dumps(patch), headers=headers)
    assert cancelled.status_code == 200, cancelled.text
    assert await status_of(http, "s1", admin) == "free"
    assert (await _book(http, bob, "s1", patient="bob")).status_code == 201


async def test_a_patient_cancels_only_before_the_cutoff(
    http: httpx.AsyncClient, mum: dict[str, str], staff: dict[str, str], admin: dict[str, str]
) -> None:
    booked = (await _book(http, mum, "s-soon")).json()
    late = await _cancel(http, booked, mum)
    assert late.status_code == 422
    assert "48h" in late.text and "FHIR_SERVER_CANCEL_CUTOFF" in late.text
    assert await status_of(http, "s-soon", admin) == "busy"
    by_staff = await _cancel(http, booked, staff)
    assert by_staff.status_code == 200, by_staff.text
    assert await status_of(http, "s-soon", admin) == "free"


async def test_a_patient_cancels_only_own_future_appointments(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], staff: dict[str, str]
) -> None:
    past = {**appointment(), "start": at(-2, 9), "end": at(-2, 9, 20)}
    created = await http.post("Appointment", json=past, headers=staff)
    assert created.status_code == 201, created.text
    booked = created.json()
    cancel = {**booked, "status": "cancelled", "cancelationReason": {"text": "late"}}
    past_cancel = await http.put(f"Appointment/{booked['id']}", json=cancel, headers=alice)
    assert past_cancel.status_code == 422
    assert "future" in past_cancel.text
    assert (
        await http.put(f"Appointment/{booked['id']}", json=cancel, headers=bob)
    ).status_code in (
        403,
        404,
    )
    done = await http.put(
        f"Appointment/{booked['id']}", json={**booked, "status": "fulfilled"}, headers=alice
    )
    assert done.status_code == 403


async def test_noshow_and_fulfilled_keep_their_slots(
    http: httpx.AsyncClient, staff: dict[str, str], admin: dict[str, str]
) -> None:
    for status, slot_id in (("noshow", "s1"), ("fulfilled", "s2")):
        booked = (await _book(http, staff, slot_id)).json()
        updated = await http.put(
            f"Appointment/{booked['id']}", json={**booked, "status": status}, headers=staff
        )
        assert updated.status_code == 200, updated.text
        assert await status_of(http, slot_id, admin) == "busy"


async def test_a_held_slot_is_not_freed_by_writing_it(
    http: httpx.AsyncClient, staff: dict[str, str], admin: dict[str, str]
) -> None:
    booked = (await _book(http, staff, "s1")).json()
    freed = await http.put("Slot/s1", json=slot("s1", "dr-sched", at(3, 9)), headers=admin)
    assert freed.status_code == 409
    assert f"Appointment/{booked['id']}" in freed.text
    assert await status_of(http, "s1", admin) == "busy"
    unheld = await http.put(
        "Slot/s3", json=slot("s3", "dr-sched", at(3, 9, 40), status="busy"), headers=admin
    )
    assert unheld.status_code == 200
    again = await http.put("Slot/s3", json=slot("s3", "dr-sched", at(3, 9, 40)), headers=admin)
    assert again.status_code == 200


async def test_pending_holds_the_slot_tentatively(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    pending = (await _book(http, alice, "s1", status="pending")).json()
    assert await status_of(http, "s1", admin) == "busy-tentative"
    confirmed = await http.put(
        f"Appointment/{pending['id']}", json={**pending, "status": "booked"}, headers=admin
    )
    assert confirmed.status_code == 200, confirmed.text
    assert await status_of(http, "s1", admin) == "busy"


def _reschedule(old: dict[str, Any], new_slot: str) -> dict[str, Any]:
    cancelled = {**old, "status": "cancelled", "cancelationReason": {"text": "rescheduled"}}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": cancelled,
                "request": {"method": "PUT", "url": f"Appointment/{old['id']}"},
            },
            {
                "resource": appointment(new_slot),
                "request": {"method": "POST", "url": "Appointment"},
            },
        ],
    }


async def test_rescheduling_is_all_or_nothing(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    old = (await _book(http, alice, "s1")).json()
    assert (await _book(http, bob, "s3", patient="bob")).status_code == 201
    taken = await http.post("", json=_reschedule(old, "s3"), headers=alice)
    assert taken.status_code == 409, taken.text
    assert "Slot/s3" in taken.text
    still = (await http.get(f"Appointment/{old['id']}", headers=alice)).json()
    assert still["status"] == "booked"
    assert await status_of(http, "s1", admin) == "busy"
    moved = await http.post("", json=_reschedule(old, "s2"), headers=alice)
    assert moved.status_code == 200, moved.text
    assert await status_of(http, "s1", admin) == "free"
    assert await status_of(http, "s2", admin) == "busy"


async def test_a_virtual_appointment_gets_a_join_link(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], mum: dict[str, str]
) -> None:
    response = await _book(http, alice, "s-virtual")
    assert response.status_code == 201, response.text
    booked = response.json()
    link = TELEHEALTH.replace("{appointment_id}", booked["id"])
    [extension] = booked["extension"]
    assert extension["url"].endswith("extension-Appointment.virtualService")
    assert extension["extension"] == [{"url": "addressUrl", "valueUrl": link}]
    assert link in (await http.get(f"Appointment/{booked['id']}", headers=mum)).text
    assert (await http.get(f"Appointment/{booked['id']}", headers=bob)).status_code == 404
    typed = await _book(
        http,
        alice,
        "s1",
        appointmentType={
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}]
        },
    )
    assert typed.status_code == 201
    assert typed.json()["extension"][0]["extension"][0]["valueUrl"].endswith(typed.json()["id"])


async def test_a_booked_appointment_keeps_the_times_of_its_slots(
    http: httpx.AsyncClient, alice: dict[str, str], admin: dict[str, str]
) -> None:
    booked = (await _book(http, alice, "s1")).json()
    path = f"Appointment/{booked['id']}"
    moved = await http.put(
        path, json={**booked, "start": at(3, 8), "end": at(3, 8, 20)}, headers=alice
    )
    assert moved.status_code == 422
    assert "disagrees with its slots" in moved.text
    to_s2 = {
        **booked,
        "slot": [{"reference": "Slot/s2"}],
        "start": at(3, 9, 20),
        "end": at(3, 9, 40),
    }
    assert (await http.put(path, json=to_s2, headers=alice)).status_code == 200
    assert [await status_of(http, s, admin) for s in ("s1", "s2")] == ["free", "busy"]


async def test_past_slots_are_not_freed(
    http: httpx.AsyncClient, staff: dict[str, str], admin: dict[str, str]
) -> None:
    """A past visit's record (staff): fulfilled, then noshow, then cancelled, its Slot
    stays busy (only future Slots are freed)."""
    visit = appointment("s-past", status="fulfilled")
    created = await http.post("Appointment", json=visit, headers=staff)
    assert created.status_code == 201, created.text
    assert await status_of(http, "s-past", admin) == "busy"
    record = created.json()
    for status in ("noshow", "cancelled"):
        record = {**record, "status": status}
        if status == "cancelled":
            record["cancelationReason"] = {"text": "recorded by mistake"}
        updated = await http.put(f"Appointment/{record['id']}", json=record, headers=staff)
        assert updated.status_code == 200, updated.text
        assert await status_of(http, "s-past", admin) == "busy"


async def test_a_caregiver_cancels_only_for_their_patient(
    http: httpx.AsyncClient, bob: dict[str, str], mum: dict[str, str], admin: dict[str, str]
) -> None:
    booked = (await _book(http, bob, "s1", patient="bob")).json()
    refused = await _cancel(http, booked, mum)
    assert refused.status_code in (403, 404), refused.text
    assert "Patient/bob" not in refused.text
    assert await status_of(http, "s1", admin) == "busy"
    assert (await http.get(f"Appointment/{booked['id']}", headers=admin)).json()["status"] == (
        "booked"
    )

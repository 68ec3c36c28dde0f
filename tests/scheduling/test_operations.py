"""``Appointment/$find`` and ``Appointment/$book`` (Argonaut Scheduling IG) through the
HTTP API with SMART tokens, on every store (issue 18)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.patient_data.support import Token, bearer
from tests.scheduling.support import at, count, status_of


def _parameters(appointment: dict[str, Any], name: str = "appt-resource") -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": name, "resource": appointment}]}


def _resources(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle.get("entry", [])]


async def test_find_proposes_free_slots_sorted_and_paged(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    params = {
        "start": at(0, 0)[:10],
        "end": at(28, 0)[:10],
        "practitioner": "Practitioner/dr",
        "_count": "3",
    }
    response = await http.get("Appointment/$find", params=params, headers=alice)
    assert response.status_code == 200, response.text
    bundle = response.json()
    first = _resources(bundle)
    assert [a["slot"][0]["reference"] for a in first] == [
        "Slot/s-soon",
        "Slot/s1",
        "Slot/s1-overlap",
    ]
    proposal = first[1]
    assert proposal["status"] == "proposed"
    assert (proposal["start"], proposal["end"]) == (at(3, 9), at(3, 9, 20))
    actors = [p["actor"]["reference"] for p in proposal["participant"]]
    assert actors == ["Patient/alice", "Practitioner/dr"]
    [next_link] = [link["url"] for link in bundle["link"] if link["relation"] == "next"]
    rest = (await http.get(next_link, headers=alice)).json()
    later = [a["slot"][0]["reference"] for a in _resources(rest)]
    assert later == ["Slot/s2", "Slot/s3", "Slot/s-virtual"]
    # s-past (past), s-closed (not free)
    assert "Slot/s-past" not in later and "Slot/s-closed" not in later


async def test_find_leaves_out_what_book_would_refuse(
    http: httpx.AsyncClient, alice: dict[str, str]
) -> None:
    """Slots of an inactive Schedule, or outside their Schedule's planning horizon, are
    free but not bookable: not proposed."""
    params = {"start": at(0, 0)[:10], "end": at(28, 0)[:10], "practitioner": "Practitioner/dr"}
    response = await http.get("Appointment/$find", params={**params, "_count": "50"}, headers=alice)
    assert response.status_code == 200, response.text
    proposed = {a["slot"][0]["reference"] for a in _resources(response.json())}
    assert {"Slot/s1", "Slot/s-virtual", "Slot/s-soon"} <= proposed
    assert not proposed & {"Slot/s-far", "Slot/s-early", "Slot/s-off"}, proposed
    for slot_id in ("s-far", "s-early", "s-off"):  # which $book refuses
        found = await http.get(f"Slot/{slot_id}", headers=alice)
        assert found.json()["status"] == "free"
        booked = await http.post(
            "Appointment/$book",
            json=_parameters(
                {
                    "resourceType": "Appointment",
                    "status": "proposed",
                    "slot": [{"reference": f"Slot/{slot_id}"}],
                    "participant": [{"actor": {"reference": "Patient/alice"}}],
                }
            ),
            headers=alice,
        )
        assert booked.status_code == 422, booked.text


async def test_find_by_post_with_visit_type(http: httpx.AsyncClient, alice: dict[str, str]) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "start", "valueDateTime": at(0, 0)},
            {"name": "end", "valueDate": at(30, 0)[:10]},
            {"name": "provider", "valueReference": {"reference": "Practitioner/dr"}},
            {
                "name": "visit-type",
                "valueString": "http://terminology.hl7.org/CodeSystem/v3-ActCode|VR",
            },
        ],
    }
    response = await http.post("Appointment/$find", json=body, headers=alice)
    assert response.status_code == 200, response.text
    assert [a["slot"][0]["reference"] for a in _resources(response.json())] == ["Slot/s-virtual"]


async def test_find_needs_start_and_end(http: httpx.AsyncClient, alice: dict[str, str]) -> None:
    response = await http.get("Appointment/$find", params={"start": at(1, 0)}, headers=alice)
    assert response.status_code == 400
    assert "end" in response.json()["issue"][0]["diagnostics"]
    other = await http.get(
        "Appointment/$find",
        params={"start": at(1, 0), "end": at(9, 0), "patient": "Patient/bob"},
        headers=alice,
    )
    assert other.status_code == 403


async def test_book_what_find_proposed(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], admin: dict[str, str]
) -> None:
    params = {"start": at(3, 0), "end": at(3, 10), "practitioner": "Practitioner/dr"}
    found = (await http.get("Appointment/$find", params=params, headers=alice)).json()
    proposal = _resources(found)[0]
    assert proposal["slot"] == [{"reference": "Slot/s1"}]
    response = await http.post("Appointment/$book", json=_parameters(proposal), headers=alice)
    assert response.status_code == 201, response.text
    booked = response.json()
    assert response.headers["location"].startswith(f"{http.base_url}Appointment/{booked['id']}")
    assert booked["status"] == "booked"
    assert {p["status"] for p in booked["participant"]} == {"accepted"}
    assert await status_of(http, "s1", admin) == "busy"
    bobs = {**proposal, "participant": [{"actor": {"reference": "Patient/bob"}}]}
    again = await http.post("Appointment/$book", json=_parameters(bobs, "appointment"), headers=bob)
    assert again.status_code == 409
    assert "Slot/s1" in again.json()["issue"][0]["diagnostics"]
    assert await count(http, "Appointment", admin) == 1


async def test_book_needs_create_on_appointment(
    http: httpx.AsyncClient, token: Token, admin: dict[str, str]
) -> None:
    reader = bearer(token("patient/Appointment.rs patient/Slot.rs", patient="alice"))
    writer = bearer(token("patient/Appointment.c", patient="alice"))
    appointment = {
        "resourceType": "Appointment",
        "status": "proposed",
        "slot": [{"reference": "Slot/s2"}],
        "participant": [{"actor": {"reference": "Patient/alice"}, "status": "needs-action"}],
    }
    refused = await http.post("Appointment/$book", json=_parameters(appointment), headers=reader)
    assert refused.status_code == 403
    assert await status_of(http, "s2", admin) == "free"
    booked = await http.post("Appointment/$book", json=_parameters(appointment), headers=writer)
    assert booked.status_code == 201, booked.text
    body = booked.json()
    assert (body["start"], body["end"]) == (at(3, 9, 20), at(3, 9, 40))
    actors = {p["actor"]["reference"] for p in body["participant"]}
    assert actors == {"Patient/alice", "Practitioner/dr"}  # the Schedule's actor added


async def test_book_refuses_bad_input(http: httpx.AsyncClient, alice: dict[str, str]) -> None:
    empty = await http.post("Appointment/$book", json={"resourceType": "Parameters"}, headers=alice)
    assert empty.status_code == 400
    cancelled = {
        "resourceType": "Appointment",
        "status": "cancelled",
        "slot": [{"reference": "Slot/s1"}],
        "participant": [{"actor": {"reference": "Patient/alice"}, "status": "declined"}],
    }
    response = await http.post("Appointment/$book", json=_parameters(cancelled), headers=alice)
    assert response.status_code == 422
    past = {**cancelled, "status": "proposed", "slot": [{"reference": "Slot/s-past"}]}
    response = await http.post("Appointment/$book", json=_parameters(past), headers=alice)
    assert response.status_code == 422
    assert "Slot/s-past starts in the past" in response.text


async def test_find_proposes_no_slot_of_another_patients_schedule(
    http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str], token: Token
) -> None:
    """Bob's own Schedule's Slot is Bob's to book: proposed to him, not to Alice (nor to
    an app of hers with no Schedule scope, which still gets the practitioners)."""
    params = {"start": at(0, 0)[:10], "end": at(28, 0)[:10], "_count": "50"}
    slots_only = bearer(token("patient/Slot.rs", patient="alice"))
    for who in (alice, slots_only):
        response = await http.get("Appointment/$find", params=params, headers=who)
        assert response.status_code == 200, response.text
        proposals = {a["slot"][0]["reference"]: a for a in _resources(response.json())}
        assert "Slot/bob-s1" not in proposals and "Slot/s-off" not in proposals
        assert "bob" not in response.text
        actors = [p["actor"]["reference"] for p in proposals["Slot/s1"]["participant"]]
        assert actors == ["Patient/alice", "Practitioner/dr"]
    response = await http.get("Appointment/$find", params=params, headers=bob)
    proposals = {a["slot"][0]["reference"]: a for a in _resources(response.json())}
    actors = [p["actor"]["reference"] for p in proposals["Slot/bob-s1"]["participant"]]
    assert actors == ["Patient/bob"]  # the patient is the Schedule's actor
    booked = await http.post(
        "Appointment/$book", json=_parameters(proposals["Slot/bob-s1"]), headers=bob
    )
    assert booked.status_code == 201, booked.text

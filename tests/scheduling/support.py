"""Data and helpers of the scheduling tests (issue 18): two patients, a caregiver, two
practitioners with Schedules and Slots placed around the current time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

VR = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}]}
TELEHEALTH = "https://meet.example.org/{appointment_id}"
TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def at(days: int, hour: int, minute: int = 0) -> str:
    """An instant ``days`` from today (UTC midnight) at ``hour:minute``."""
    moment = TODAY + timedelta(days=days, hours=hour, minutes=minute)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


RESERVED_FOR_BOB = {
    "url": "http://example.org/fhir/StructureDefinition/reserved-for",
    "valueReference": {"reference": "Patient/bob"},
}


def slot(
    id_: str, schedule: str, start: str, minutes: int = 20, status: str = "free", **extra: Any
) -> dict[str, Any]:
    end = datetime.fromisoformat(start.replace("Z", "+00:00")) + timedelta(minutes=minutes)
    return {
        "resourceType": "Slot",
        "id": id_,
        "schedule": {"reference": f"Schedule/{schedule}"},
        "status": status,
        "start": start,
        "end": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
        **extra,
    }


def schedule(id_: str, actor: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Schedule", "id": id_, "actor": [{"reference": actor}], **extra}


def soon() -> str:
    """A slot start a day ahead (inside a 48 h cancellation cutoff)."""
    moment = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


SEED: list[dict[str, Any]] = [
    {"resourceType": "Patient", "id": "alice", "name": [{"family": "Liddell"}]},
    {"resourceType": "Patient", "id": "bob", "name": [{"family": "Bravo"}]},
    {"resourceType": "Practitioner", "id": "dr", "name": [{"family": "Who"}]},
    {"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "House"}]},
    {
        "resourceType": "RelatedPerson",
        "id": "mum",
        "active": True,
        "patient": {"reference": "Patient/alice"},
    },
    schedule(
        "dr-sched",
        "Practitioner/dr",
        planningHorizon={"start": at(-30, 0)[:10], "end": at(60, 0)[:10]},
    ),
    schedule("dr2-sched", "Practitioner/dr2"),
    schedule("dr-near", "Practitioner/dr", planningHorizon={"end": at(5, 0)[:10]}),
    slot("s1", "dr-sched", at(3, 9)),
    slot("s2", "dr-sched", at(3, 9, 20)),
    slot("s3", "dr-sched", at(3, 9, 40)),
    slot("s1-overlap", "dr-sched", at(3, 9, 10)),
    slot("s-past", "dr-sched", at(-1, 9)),
    slot("s-closed", "dr-sched", at(3, 11), status="busy-unavailable"),
    slot("s-virtual", "dr-sched", at(4, 14), serviceType=[VR]),
    slot("s-soon", "dr-sched", soon()),
    slot("s-far", "dr-near", at(10, 9)),
    slot("dr2-s1", "dr2-sched", at(3, 9)),
    # refused for other reasons (issue 18, "Bad input")
    schedule("dr-later", "Practitioner/dr", planningHorizon={"start": at(20, 0)[:10]}),
    schedule("dr-off", "Practitioner/dr", active=False),
    slot("s-early", "dr-later", at(10, 9)),
    slot("s-off", "dr-off", at(6, 9)),
    slot("s-error", "dr-sched", at(3, 16), status="entered-in-error"),
    slot("s-tentative", "dr-sched", at(3, 17), status="busy-tentative"),
    # a patient's own Schedule (Bob's: not directory data) and a Slot reserved for Bob
    schedule("bob-own", "Patient/bob"),
    slot("bob-s1", "bob-own", at(3, 10)),
    slot("for-bob", "dr-sched", at(5, 9), extension=[RESERVED_FOR_BOB]),
]

SLOTS = {r["id"]: r for r in SEED if r["resourceType"] == "Slot"}


def appointment(
    *slots: str, patient: str = "alice", practitioner: str | None = "dr", **extra: Any
) -> dict[str, Any]:
    """A booked Appointment of ``patient`` with ``practitioner`` in ``slots``."""
    people = [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"}]
    if practitioner:
        people.append(
            {"actor": {"reference": f"Practitioner/{practitioner}"}, "status": "accepted"}
        )
    times: dict[str, Any] = {}
    if slots and all(s in SLOTS for s in slots):
        times = {"start": SLOTS[slots[0]]["start"], "end": SLOTS[slots[-1]]["end"]}
    return {
        "resourceType": "Appointment",
        "status": "booked",
        **times,
        **({"slot": [{"reference": f"Slot/{s}"} for s in slots]} if slots else {}),
        "participant": people,
        **extra,
    }


async def seed(http: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """:data:`SEED` in one transaction."""
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in SEED
    ]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = await http.post("", json=bundle, headers=admin)
    assert response.status_code == 200, response.text


async def status_of(http: httpx.AsyncClient, slot_id: str, admin: dict[str, str]) -> str:
    return (await http.get(f"Slot/{slot_id}", headers=admin)).json()["status"]


async def count(http: httpx.AsyncClient, query: str, admin: dict[str, str]) -> int:
    """How many resources the search ``query`` (``Appointment?slot=Slot/s1``) matches."""
    path, _, search = query.partition("?")
    params = [*httpx.QueryParams(search).multi_items(), ("_summary", "count")]
    response = await http.get(path, params=params, headers=admin)
    assert response.status_code == 200, response.text
    return int(response.json()["total"])

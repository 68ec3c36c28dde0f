"""The demo population (``fhir-server demo-data``) meets the scheduling rule (issue 18):
every Slot a booked Appointment lists is busy and held by it alone, inside its
Schedule's planning horizon, of the Appointment's practitioner; the practitioners have
free future Slots that ``$find`` proposes and ``$book`` books, and a patient can cancel
her upcoming demo appointment, which frees its Slot."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.demo_data import Population, write_population
from fhir_server.storage.open import open_store
from tests.conftest import BASE
from tests.patient_data.support import bearer, issuer


def _by_id(population: list[dict[str, Any]], type_: str) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in population if r["resourceType"] == type_}


def test_booked_demo_appointments_hold_busy_slots_of_their_practitioner() -> None:
    population = list(Population(20, seed=3, today=date.today()))
    slots, schedules = _by_id(population, "Slot"), _by_id(population, "Schedule")
    holders: Counter[str] = Counter()
    now = datetime.now(UTC)
    for appointment in population:
        if appointment["resourceType"] != "Appointment" or appointment["status"] != "booked":
            continue
        people = {p["actor"]["reference"] for p in appointment["participant"]}
        for reference in appointment.get("slot", []):
            slot = slots[reference["reference"].removeprefix("Slot/")]
            holders[slot["id"]] += 1
            assert slot["status"] == "busy"
            assert (slot["start"], slot["end"]) == (appointment["start"], appointment["end"])
            schedule = schedules[slot["schedule"]["reference"].removeprefix("Schedule/")]
            assert people & {a["reference"] for a in schedule["actor"]}
            horizon = schedule["planningHorizon"]
            start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
            assert datetime.fromisoformat(horizon["start"]) <= start
            assert end <= datetime.fromisoformat(horizon["end"])
    assert holders and max(holders.values()) == 1
    free = [
        s
        for s in slots.values()
        if s["status"] == "free" and datetime.fromisoformat(s["start"]) > now
    ]
    assert len(free) > len(holders)


async def test_demo_slots_can_be_found_booked_and_freed(tmp_path: Path) -> None:
    settings = Settings(storage=f"sqlite:///{tmp_path / 'fhir.sqlite3'}", auth="smart")
    population = list(Population(10, seed=3, today=date.today()))
    store = open_store(settings.storage)
    await store.open()
    try:
        report = await write_population(store, Population(10, seed=3, today=date.today()))
    finally:
        await store.close()
    assert report.problem_count == 0
    upcoming = next(
        r
        for r in population
        if r["resourceType"] == "Appointment"
        and r["status"] == "booked"
        and r["start"] > datetime.now(UTC).isoformat()
    )
    patient = next(
        p["actor"]["reference"]
        for p in upcoming["participant"]
        if "Patient/" in p["actor"]["reference"]
    )
    doctor = next(
        p["actor"]["reference"]
        for p in upcoming["participant"]
        if p["actor"]["reference"].startswith("Practitioner/")
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        token = issuer(app)
        headers = bearer(token("patient/*.cruds", patient=patient.removeprefix("Patient/")))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            params = {
                "start": date.today().isoformat(),
                "end": "2999-01-01",
                "practitioner": doctor,
                "_count": "5",
            }
            found = await http.get("Appointment/$find", params=params, headers=headers)
            assert found.status_code == 200, found.text
            proposals = [e["resource"] for e in found.json().get("entry", [])]
            assert proposals, "the demo practitioner has no free future slot"
            body = {
                "resourceType": "Parameters",
                "parameter": [{"name": "appt-resource", "resource": proposals[0]}],
            }
            booked = await http.post("Appointment/$book", json=body, headers=headers)
            assert booked.status_code == 201, booked.text
            cancel = {
                **upcoming,
                "status": "cancelled",
                "cancelationReason": {"text": "cannot come"},
            }
            cancelled = await http.put(
                f"Appointment/{upcoming['id']}", json=cancel, headers=headers
            )
            assert cancelled.status_code == 200, cancelled.text
            slot_id = upcoming["slot"][0]["reference"]
            assert (await http.get(slot_id, headers=headers)).json()["status"] == "free"

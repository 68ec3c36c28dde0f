"""``fhir-server demo-data``: a deterministic population whose every resource validates,
whose references all resolve, and which the API can search (fhir_server/demo_data)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.bulk_import.prepare import prepare_item
from fhir_server.config import Settings
from fhir_server.demo_data import Population, write_ndjson, write_population
from fhir_server.storage.open import open_store
from resources import fhir_json
from tests.conftest import BASE

TODAY = date(2025, 3, 12)


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return list(Population(10, seed=7, today=TODAY))


def references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def test_every_kind_of_portal_data_is_there(population: list[dict[str, Any]]) -> None:
    counts = Counter(r["resourceType"] for r in population)
    assert counts["Patient"] == 10
    assert counts["Practitioner"] == counts["PractitionerRole"] == counts["Schedule"] == 3
    assert counts["Slot"] == 3 * 40
    for type_ in [
        "Organization",
        "Location",
        "Appointment",
        "Encounter",
        "DocumentReference",
        "Condition",
        "Immunization",
        "Observation",
        "DiagnosticReport",
        "Communication",
        "Coverage",
        "Account",
        "Invoice",
    ]:
        assert counts[type_] > 0, type_
    assert counts["Coverage"] == counts["Account"] == 10
    assert counts["Encounter"] == counts["DocumentReference"] == counts["Invoice"]


def test_ids_are_unique_and_deterministic(population: list[dict[str, Any]]) -> None:
    keys = [(r["resourceType"], r["id"]) for r in population]
    assert len(keys) == len(set(keys))
    assert ("Patient", "demo-pat-000001") in keys
    assert list(Population(10, seed=7, today=TODAY)) == population
    assert list(Population(10, seed=8, today=TODAY)) != population


def test_every_reference_resolves(population: list[dict[str, Any]]) -> None:
    keys = {f"{r['resourceType']}/{r['id']}" for r in population}
    dangling = {ref for r in population for ref in references(r) if ref not in keys}
    assert dangling == set()


def test_every_resource_validates(population: list[dict[str, Any]]) -> None:
    problems = []
    for resource in population:
        checked = prepare_item(fhir_json.dumps(resource))
        if checked.error:
            problems.append((resource["id"], checked.error))
    assert problems == []


def test_busy_slots_are_the_booked_ones(population: list[dict[str, Any]]) -> None:
    busy = {r["id"] for r in population if r["resourceType"] == "Slot" and r["status"] == "busy"}
    booked = [
        ref["reference"].removeprefix("Slot/")
        for r in population
        if r["resourceType"] == "Appointment" and r["status"] == "booked"
        for ref in r["slot"]
    ]
    assert booked and sorted(booked) == sorted(busy)


def test_lab_results_are_grouped_with_ranges(population: list[dict[str, Any]]) -> None:
    by_id = {r["id"]: r for r in population}
    report = next(r for r in population if r["resourceType"] == "DiagnosticReport")
    for ref in report["result"]:
        obs = by_id[ref["reference"].removeprefix("Observation/")]
        assert obs["category"][0]["coding"][0]["code"] == "laboratory"
        assert obs["valueQuantity"]["system"] == "http://unitsofmeasure.org"
        assert obs["referenceRange"]


def test_refills_and_notes(population: list[dict[str, Any]]) -> None:
    med = next(r for r in population if r["resourceType"] == "MedicationRequest")
    assert "numberOfRepeatsAllowed" in med["dispenseRequest"]
    note = next(r for r in population if r["resourceType"] == "DocumentReference")
    attachment = note["content"][0]["attachment"]
    assert attachment["contentType"].startswith("text/plain")


def test_ndjson_output(tmp_path: Path, population: list[dict[str, Any]]) -> None:
    counts = write_ndjson(Population(10, seed=7, today=TODAY), tmp_path)
    assert sum(counts.values()) == len(population)
    lines = (tmp_path / "Patient.ndjson").read_text().splitlines()
    assert json.loads(lines[0])["id"] == "demo-pat-000001"


def test_patient_count_is_bounded() -> None:
    with pytest.raises(ValueError):
        Population(9)


async def test_written_population_is_searchable_and_idempotent(
    settings: Settings, population: list[dict[str, Any]]
) -> None:
    store = open_store(settings.storage)
    await store.open()
    try:
        first = await write_population(store, Population(10, seed=7, today=TODAY))
        again = await write_population(store, Population(10, seed=7, today=TODAY))
    finally:
        await store.close()
    assert first.problem_count == 0 and first.total("created") == len(population)
    assert again.written == 0 and again.total("unchanged") == len(population)

    report = next(r for r in population if r["resourceType"] == "DiagnosticReport")
    patient_id = report["subject"]["reference"].removeprefix("Patient/")
    expected = sum(
        1
        for r in population
        if r["resourceType"] == "Observation"
        and r["subject"]["reference"] == f"Patient/{patient_id}"
        and r["category"][0]["coding"][0]["code"] == "laboratory"
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            found = await http.get(
                "Observation",
                params={"patient": patient_id, "category": "laboratory", "_total": "accurate"},
            )
            assert found.status_code == 200
            assert found.json()["total"] == expected > 0
            slots = await http.get("Slot", params={"status": "free", "_summary": "count"})
            assert slots.json()["total"] > 0

"""``fhir-server demo-data``: a deterministic population whose every resource validates,
whose references all resolve, and which the API can search (fhir_server/demo_data)."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.bulk_import.prepare import prepare_item
from fhir_server.config import Settings
from fhir_server.demo.directory import directory
from fhir_server.demo_data import Population, write_ndjson, write_population
from fhir_server.storage.open import open_store
from resources import fhir_json
from tests.conftest import BASE

TODAY = date(2025, 3, 12)


@pytest.fixture(scope="module")
def population() -> list[dict[str, Any]]:
    return list(Population(10, seed=7, today=TODAY))


@pytest.fixture(scope="module")
def hundred() -> list[dict[str, Any]]:
    return list(Population(100, seed=7, today=TODAY))


def codes(resource: dict[str, Any]) -> set[str]:
    return {coding["code"] for coding in resource["code"]["coding"]}


def observations_by_patient(
    population: list[dict[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in population:
        if r["resourceType"] == "Observation":
            out[r["subject"]["reference"].removeprefix("Patient/")].append(r)
    return out


def series(observations: list[dict[str, Any]], code: str) -> list[tuple[str, Any, str]]:
    """(date, value, UCUM code) of the patient's observations of ``code``, by date."""
    return sorted(
        (o["effectiveDateTime"], o["valueQuantity"]["value"], o["valueQuantity"]["code"])
        for o in observations
        if code in codes(o)
    )


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


def test_every_patient_has_labs(hundred: list[dict[str, Any]]) -> None:
    by_patient = observations_by_patient(hundred)
    patients = [r["id"] for r in hundred if r["resourceType"] == "Patient"]
    without = [
        p
        for p in patients
        if not any(o["category"][0]["coding"][0]["code"] == "laboratory" for o in by_patient[p])
    ]
    assert without == []


def test_children_have_growth_series_since_birth(hundred: list[dict[str, Any]]) -> None:
    """What the SMART growth chart app reads: height, weight, head circumference and BMI,
    several of each over time, in UCUM units, vital-signs category."""
    by_patient = observations_by_patient(hundred)
    children = [
        r for r in hundred if r["resourceType"] == "Patient" and r["birthDate"] > "2007-03-12"
    ]
    assert children
    units = {"8302-2": "cm", "29463-7": "kg", "8287-5": "cm", "39156-5": "kg/m2"}
    full = []
    for child in children:
        observations = by_patient[child["id"]]
        got = {code: series(observations, code) for code in units}
        for code, unit in units.items():
            assert {u for _, _, u in got[code]} <= {unit}, (child["id"], code)
        heights = got["8302-2"]
        assert len(heights) >= 2, child["id"]
        assert heights[0][0].startswith(child["birthDate"]), child["id"]  # measured at birth
        assert heights[-1][1] > heights[0][1]
        assert len(got["29463-7"]) == len(got["39156-5"]) == len(heights)
        if all(len({day[:10] for day, _, _ in got[code]}) >= 3 for code in units):
            full.append(child["id"])
        for o in observations:
            if codes(o) & set(units):
                assert o["category"][0]["coding"][0]["code"] == "vital-signs"
    assert len(full) >= 2


def test_head_circumference_is_coded_for_both_profiles(hundred: list[dict[str, Any]]) -> None:
    heads = [r for r in hundred if r["resourceType"] == "Observation" and "8287-5" in codes(r)]
    assert heads and all("9843-4" in codes(r) for r in heads)


def test_cardiac_risk_labs(hundred: list[dict[str, Any]]) -> None:
    """What the SMART cardiac risk app reads: hs-CRP (mg/L), total cholesterol and HDL
    (mg/dL) and a systolic blood pressure of its own (8480-6 with a valueQuantity)."""
    by_patient = observations_by_patient(hundred)
    assessed = [p for p, obs in by_patient.items() if series(obs, "30522-7")]
    assert len(assessed) >= 10
    for patient in assessed:
        observations = by_patient[patient]
        assert {u for _, _, u in series(observations, "30522-7")} == {"mg/L"}
        assert {u for _, _, u in series(observations, "2093-3")} == {"mg/dL"}
        assert {u for _, _, u in series(observations, "2085-9")} == {"mg/dL"}
        assert series(observations, "8480-6")
    patients = {r["id"]: r for r in hundred if r["resourceType"] == "Patient"}
    assert all(patients[p]["birthDate"] < "1995-03-12" for p in assessed)  # adults of 30+


def test_blood_pressure_carries_both_panel_codes(hundred: list[dict[str, Any]]) -> None:
    panels = [r for r in hundred if r["resourceType"] == "Observation" and "component" in r]
    assert panels
    for bp in panels:
        assert {"85354-9", "55284-4"} <= codes(bp)
        parts = {coding["code"] for part in bp["component"] for coding in part["code"]["coding"]}
        assert parts == {"8480-6", "8462-4"}
        assert all(part["valueQuantity"]["code"] == "mm[Hg]" for part in bp["component"])


def test_readme_examples_hold_for_the_default_seed() -> None:
    """The README names patients of ``fhir-server demo-data`` (seed 1, any date)."""
    population = list(Population(10, seed=1, today=date(2026, 1, 5)))
    by_patient = observations_by_patient(population)
    child = by_patient["demo-pat-000001"]
    assert all(len(series(child, code)) >= 2 for code in ("8302-2", "29463-7", "8287-5"))
    assert any(o["category"][0]["coding"][0]["code"] == "laboratory" for o in child)
    adult = by_patient["demo-pat-000005"]
    assert all(series(adult, code) for code in ("30522-7", "2093-3", "2085-9", "8480-6"))


def test_size_per_patient_stays_about_fifty(hundred: list[dict[str, Any]]) -> None:
    """The benchmarks count on about 50 resources a patient (beside the directory)."""
    population = Population(100, seed=7, today=TODAY)
    shared = sum(1 for _ in directory(population.layout, population.seed))
    assert 46 <= (len(hundred) - shared) / 100 <= 55


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
            for code in ("55284-4", "85354-9", "8287-5", "39156-5", "30522-7", "8480-6"):
                coded = sum(
                    1 for r in population if r["resourceType"] == "Observation" and code in codes(r)
                )
                found = await http.get(
                    "Observation",
                    params={"code": f"http://loinc.org|{code}", "_summary": "count"},
                )
                assert found.json()["total"] == coded > 0, code

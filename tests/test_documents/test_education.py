"""Patient education (issue 20, "Education") through the HTTP API with SMART tokens, on
every store: ``Patient/[id]/$education`` returns the catalogue's DocumentReferences
matched by code to the patient's active Conditions and current medications (SNOMED CT,
ICD-10-CM with subcodes, RxNorm), an empty Bundle when nothing matches; the starter
catalogue is loaded once into a new store and covers every chronic condition and
current medication of the demo data; staff edit it through the API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from fhir_server.config import Settings
from fhir_server.demo import codes as demo
from fhir_server.documents.catalogue import (
    ICD10CM,
    RXNORM,
    SNOMED,
    catalogue_query,
    load_catalogue,
    matching,
    starter_entries,
)
from fhir_server.documents.catalogue_data import CONDITIONS
from fhir_server.startup import check_store
from fhir_server.storage.open import open_store
from tests.conftest import JSON, storage_url

CATEGORY = f"{SNOMED}|311401005"


def _titles(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["content"][0]["attachment"]["title"] for e in bundle.get("entry", [])]


async def test_education_matches_conditions_and_medications(
    app: Any, http: httpx.AsyncClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    assert await load_catalogue(app.state.store) == len(starter_entries())
    assert await load_catalogue(app.state.store) == 0  # idempotent
    response = await http.get("Patient/alice/$education", headers=alice)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["type"] == "collection"
    assert _titles(bundle) == ["Living with high blood pressure", "Your blood pressure medicine"]
    entry = bundle["entry"][0]["resource"]
    assert entry["description"].startswith("High blood pressure")
    assert entry["content"][0]["attachment"]["url"] == (
        "https://medlineplus.gov/highbloodpressure.html"
    )
    other = await http.post("Patient/bob/$education", headers=alice)
    assert other.status_code == 404


async def test_a_patients_document_with_the_category_is_not_an_entry(
    app: Any, http: httpx.AsyncClient, admin: dict[str, str], alice: dict[str, str]
) -> None:
    await load_catalogue(app.state.store)
    bobs = {
        **starter_entries()[0],
        "id": "bobs-letter",
        "description": "Bob's own letter",
        "subject": {"reference": "Patient/bob"},
    }
    assert (await http.put("DocumentReference/bobs-letter", json=bobs, headers=admin)).is_success
    response = await http.get("Patient/alice/$education", headers=alice)
    assert "Bob" not in response.text
    assert len(response.json()["entry"]) == 2


async def test_no_match_is_an_empty_bundle(
    app: Any, http: httpx.AsyncClient, admin: dict[str, str], alice: dict[str, str]
) -> None:
    await load_catalogue(app.state.store)
    for path in ("Condition/a-htn", "MedicationRequest/a-lis"):
        assert (await http.delete(path, headers=admin)).status_code in (200, 204)
    response = await http.get("Patient/alice/$education", headers=alice)
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "collection"
    assert "entry" not in response.json()


async def test_icd10_codes_match_with_their_subcodes_and_staff_edit_the_catalogue(
    app: Any, http: httpx.AsyncClient, admin: dict[str, str], alice: dict[str, str]
) -> None:
    await load_catalogue(app.state.store)
    condition = {
        "resourceType": "Condition",
        "id": "a-dm",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": "active",
                }
            ]
        },
        "code": {"coding": [{"system": ICD10CM, "code": "E11.65"}]},
        "subject": {"reference": "Patient/alice"},
    }
    assert (await http.put("Condition/a-dm", json=condition, headers=admin)).status_code == 201
    found = await http.get("Patient/alice/$education", headers=alice)
    assert "Managing type 2 diabetes" in _titles(found.json())
    catalogue = await http.get("DocumentReference", params={"category": CATEGORY}, headers=admin)
    assert catalogue.json()["total"] == len(starter_entries())
    entry = (await http.get("DocumentReference/education-type-2-diabetes", headers=admin)).json()
    entry["content"][0]["attachment"]["title"] = "Diabetes: our clinic's guide"
    updated = await http.put(
        "DocumentReference/education-type-2-diabetes", json=entry, headers={**admin, **JSON}
    )
    assert updated.status_code == 200, updated.text
    found = await http.get("Patient/alice/$education", headers=alice)
    assert "Diabetes: our clinic's guide" in _titles(found.json())
    patient_write = await http.put(
        "DocumentReference/education-type-2-diabetes", json=entry, headers={**alice, **JSON}
    )
    assert patient_write.status_code in (403, 404)


def test_the_starter_catalogue_covers_the_demo_data() -> None:
    entries = starter_entries()
    assert len(CONDITIONS) >= 30
    for snomed, display, icd, chronic in demo.CONDITIONS:
        if chronic:
            assert matching(entries, {(SNOMED, snomed)}), display
            assert matching(entries, {(ICD10CM, icd)}), display
    for rxnorm, display, *_ in demo.MEDICATIONS:
        assert matching(entries, {(RXNORM, rxnorm)}), display
    assert matching(entries, {(SNOMED, "0000")}) == []


def test_serve_start_up_loads_it_once(tmp_path: Path) -> None:
    settings = Settings(storage=storage_url("sqlite", tmp_path), auth="off")
    check_store(settings)
    check_store(settings)

    async def count() -> int:
        store = open_store(settings.storage)
        await store.open()
        try:
            page = await store.search(catalogue_query(), None, 1000, True)
            return page.total or 0
        finally:
            await store.close()

    assert asyncio.run(count()) == len(starter_entries())

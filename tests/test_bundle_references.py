"""Conditional references, ifNoneExist and placeholder errors in transactions
(https://hl7.org/fhir/R4/http.html#trules), and a Synthea-shaped patient load."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tests.conftest import BASE, JSON

NPI = "http://hl7.org/fhir/sid/us-npi"


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None, **request: str) -> dict:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def practitioner(npi: str) -> dict[str, Any]:
    return {"resourceType": "Practitioner", "identifier": [{"system": NPI, "value": npi}]}


def encounter(subject: str, participant: str) -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": subject},
        "participant": [{"individual": {"reference": participant}}],
    }


async def send(client, body: dict[str, Any]):
    return await client.post(BASE, json=body, headers=JSON)


async def count(client, type_: str) -> int:
    return (await client.get(type_, params={"_summary": "count"})).json()["total"]


async def test_conditional_reference_with_one_match_is_resolved(client):
    created = await client.post("Practitioner", json=practitioner("1"), headers=JSON)
    body = bundle("transaction", post(encounter("Patient/p", f"Practitioner?identifier={NPI}|1")))
    response = await send(client, body)
    assert response.status_code == 200
    stored = response.json()["entry"][0]["resource"]
    assert stored["participant"][0]["individual"]["reference"] == (
        f"Practitioner/{created.json()['id']}"
    )


async def test_conditional_reference_with_no_match_fails_naming_the_entry(client):
    body = bundle(
        "transaction",
        post({"resourceType": "Patient"}, "urn:uuid:aaaa"),
        post(encounter("urn:uuid:aaaa", f"Practitioner?identifier={NPI}|404"), "urn:uuid:bbbb"),
    )
    response = await send(client, body)
    assert response.status_code == 412
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-found"
    assert "Bundle.entry[1]" in issue["diagnostics"]
    assert "urn:uuid:bbbb" in issue["diagnostics"]
    assert issue["expression"][0].startswith("Bundle.entry[1]")
    assert await count(client, "Patient") == 0


async def test_conditional_reference_with_several_matches_fails(client):
    for _ in range(2):
        await client.post("Practitioner", json=practitioner("2"), headers=JSON)
    body = bundle("transaction", post(encounter("Patient/p", f"Practitioner?identifier={NPI}|2")))
    response = await send(client, body)
    assert response.status_code == 412
    assert response.json()["issue"][0]["code"] == "multiple-matches"
    assert await count(client, "Encounter") == 0


async def test_if_none_exist_match_answers_the_existing_resource(client):
    existing = (await client.post("Practitioner", json=practitioner("3"), headers=JSON)).json()
    body = bundle(
        "transaction",
        post(practitioner("3"), "urn:uuid:cccc", ifNoneExist=f"identifier={NPI}|3"),
        post(encounter("Patient/p", "urn:uuid:cccc")),
    )
    response = await send(client, body)
    first, second = response.json()["entry"]
    assert first["response"]["status"] == "200 OK"
    assert first["resource"]["id"] == existing["id"]
    assert second["resource"]["participant"][0]["individual"]["reference"] == (
        f"Practitioner/{existing['id']}"
    )
    assert await count(client, "Practitioner") == 1


async def test_if_none_exist_without_match_creates(client):
    body = bundle("transaction", post(practitioner("4"), ifNoneExist=f"identifier={NPI}|4"))
    response = await send(client, body)
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
    again = await send(client, body)
    assert again.json()["entry"][0]["response"]["status"] == "200 OK"
    assert await count(client, "Practitioner") == 1


async def test_placeholder_used_twice_as_full_url_is_400(client):
    body = bundle(
        "transaction",
        post({"resourceType": "Patient"}, "urn:uuid:dddd"),
        post({"resourceType": "Patient"}, "urn:uuid:dddd"),
    )
    response = await send(client, body)
    assert response.status_code == 400
    assert "Bundle.entry[1]" in response.json()["issue"][0]["diagnostics"]
    assert await count(client, "Patient") == 0


async def test_reference_to_an_unknown_placeholder_is_400(client):
    body = bundle("transaction", post(encounter("urn:uuid:nowhere", "Practitioner/x")))
    response = await send(client, body)
    assert response.status_code == 400
    assert "urn:uuid:nowhere" in response.json()["issue"][0]["diagnostics"]


async def test_circular_conditional_criteria_are_400(client):
    body = bundle(
        "transaction",
        post({"resourceType": "Patient"}, "urn:uuid:e1", ifNoneExist="link=urn:uuid:e2"),
        post({"resourceType": "Patient"}, "urn:uuid:e2", ifNoneExist="link=urn:uuid:e1"),
    )
    response = await send(client, body)
    assert response.status_code == 400
    assert "ircular" in response.json()["issue"][0]["diagnostics"]
    assert await count(client, "Patient") == 0


async def test_criteria_may_use_another_entrys_placeholder(client):
    body = bundle(
        "transaction",
        post(encounter("urn:uuid:f1", "Practitioner/x"), ifNoneExist="subject=urn:uuid:f1"),
        post({"resourceType": "Patient"}, "urn:uuid:f1"),
    )
    response = await send(client, body)
    assert response.status_code == 200
    patient_id = response.json()["entry"][1]["resource"]["id"]
    assert response.json()["entry"][0]["resource"]["subject"]["reference"] == (
        f"Patient/{patient_id}"
    )


def synthea_reference_data() -> dict[str, Any]:
    """What Synthea writes as practitionerInformation / hospitalInformation bundles."""
    organization = {
        "resourceType": "Organization",
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": "org-1"}],
        "name": "General Hospital",
    }
    return bundle(
        "batch",
        post(
            organization,
            f"urn:uuid:{uuid.uuid4()}",
            ifNoneExist="identifier=https://github.com/synthetichealth/synthea|org-1",
        ),
        post(
            practitioner("9999") | {"name": [{"family": "Doe", "prefix": ["Dr."]}]},
            f"urn:uuid:{uuid.uuid4()}",
            ifNoneExist=f"identifier={NPI}|9999",
        ),
    )


def synthea_patient(observations: int = 20) -> dict[str, Any]:
    patient_url, encounter_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    enc = encounter(patient_url, f"Practitioner?identifier={NPI}|9999")
    enc["serviceProvider"] = {
        "reference": "Organization?identifier=https://github.com/synthetichealth/synthea|org-1"
    }
    entries = [
        post(
            {
                "resourceType": "Patient",
                "name": [{"family": "Synthea"}],
                "gender": "female",
                "birthDate": "1970-01-01",
            },
            patient_url,
        ),
        post(enc, encounter_url),
    ]
    for i in range(observations):
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                            "code": "vital-signs",
                        }
                    ]
                }
            ],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": patient_url},
            "encounter": {"reference": encounter_url},
            "effectiveDateTime": f"2020-01-{i % 28 + 1:02d}T10:00:00Z",
            "valueQuantity": {
                "value": 72.50,
                "unit": "/min",
                "system": "http://unitsofmeasure.org",
                "code": "/min",
            },
        }
        entries.append(post(obs, f"urn:uuid:{uuid.uuid4()}"))
    return bundle("transaction", *entries)


async def test_synthea_shaped_bundles_load_completely(client):
    reference = await send(client, synthea_reference_data())
    assert [e["response"]["status"] for e in reference.json()["entry"]] == ["201 Created"] * 2
    again = await send(client, synthea_reference_data())  # a second patient file's batch
    assert [e["response"]["status"] for e in again.json()["entry"]] == ["200 OK"] * 2
    text = json.dumps(synthea_patient()).replace('"value": 72.5,', '"value": 72.50,')
    response = await client.post(BASE, content=text, headers=JSON)  # decimals as sent
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    patient_id = entries[0]["resource"]["id"]
    practitioner_id = reference.json()["entry"][1]["resource"]["id"]
    enc = entries[1]["resource"]
    assert enc["participant"][0]["individual"]["reference"] == f"Practitioner/{practitioner_id}"
    found = await client.get(
        "Observation", params={"patient": patient_id, "encounter": f"Encounter/{enc['id']}"}
    )
    assert found.json()["total"] == 20
    assert b"72.50" in (await client.get(f"Observation/{entries[2]['resource']['id']}")).content


async def test_conditional_reference_to_a_conditional_create_of_the_same_bundle(client):
    body = bundle(
        "transaction",
        post(practitioner("5"), "urn:uuid:g1", ifNoneExist=f"identifier={NPI}|5"),
        post(encounter("Patient/p", f"Practitioner?identifier={NPI}|5")),
    )
    response = await send(client, body)
    assert response.status_code == 200, response.text
    created, enc = (e["resource"] for e in response.json()["entry"])
    assert enc["participant"][0]["individual"]["reference"] == f"Practitioner/{created['id']}"

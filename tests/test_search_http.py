"""Search over HTTP end to end: writes are indexed, searches compile to the store
(https://hl7.org/fhir/R4/search.html, https://hl7.org/fhir/R4/http.html#search)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlparse

import pytest

from tests.conftest import BASE, JSON


async def put(client, resource: dict) -> dict:
    path = f"{resource['resourceType']}/{resource['id']}"
    response = await client.put(path, content=json.dumps(resource), headers=JSON)
    assert response.status_code in (200, 201), response.text
    return response.json()


def ids(bundle: dict, mode: str = "match") -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode]


def link(bundle: dict, relation: str) -> str | None:
    return next((lk["url"] for lk in bundle["link"] if lk["relation"] == relation), None)


@pytest.fixture
async def clinic(client):
    await put(client, {"resourceType": "Organization", "id": "org1", "name": "Acme Clinic"})
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "pat1",
            "name": [{"family": "Chalmers", "given": ["Peter"]}],
            "gender": "male",
            "birthDate": "1974-12-25",
            "managingOrganization": {"reference": "Organization/org1"},
        },
    )
    await put(
        client,
        {
            "resourceType": "Patient",
            "id": "pat2",
            "name": [{"family": "Müller", "given": ["Zoë"]}],
            "gender": "female",
            "birthDate": "1990-06",
        },
    )
    for n, (patient, code, value, when) in enumerate(
        [
            ("pat1", "8867-4", 72, "2024-01-05T10:00:00Z"),
            ("pat1", "8867-4", 80, "2024-02-05T10:00:00Z"),
            ("pat1", "8480-6", 120, "2024-03-05T10:00:00Z"),
            ("pat2", "8867-4", 65, "2024-01-20T10:00:00Z"),
        ]
    ):
        await put(
            client,
            {
                "resourceType": "Observation",
                "id": f"obs{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                "subject": {"reference": f"Patient/{patient}"},
                "effectiveDateTime": when,
                "valueQuantity": {
                    "value": value,
                    "unit": "/min",
                    "system": "http://unitsofmeasure.org",
                    "code": "/min",
                },
            },
        )
    return client


async def test_token_and_reference(clinic):
    bundle = (
        await clinic.get(
            "Observation", params={"patient": "pat1", "code": "http://loinc.org|8867-4"}
        )
    ).json()
    assert bundle["type"] == "searchset"
    assert sorted(ids(bundle)) == ["obs0", "obs1"]
    assert bundle["total"] == 2


async def test_string_is_case_and_accent_insensitive_prefix(clinic):
    assert ids((await clinic.get("Patient", params={"name": "mull"})).json()) == ["pat2"]
    assert ids((await clinic.get("Patient", params={"given": "zoe"})).json()) == ["pat2"]
    exact = (await clinic.get("Patient", params={"family:exact": "Müller"})).json()
    assert ids(exact) == ["pat2"]
    assert ids((await clinic.get("Patient", params={"family:exact": "muller"})).json()) == []


async def test_date_prefixes(clinic):
    bundle = (await clinic.get("Observation", params={"date": "ge2024-02"})).json()
    assert sorted(ids(bundle)) == ["obs1", "obs2"]
    bundle = (await clinic.get("Patient", params={"birthdate": "1990"})).json()
    assert ids(bundle) == ["pat2"]


async def test_quantity(clinic):
    bundle = (
        await clinic.get(
            "Observation", params={"value-quantity": "gt75|http://unitsofmeasure.org|/min"}
        )
    ).json()
    assert sorted(ids(bundle)) == ["obs1", "obs2"]


async def test_chain_and_has(clinic):
    chained = (await clinic.get("Observation", params={"subject:Patient.name": "peter"})).json()
    assert sorted(ids(chained)) == ["obs0", "obs1", "obs2"]
    deep = (await clinic.get("Observation", params={"patient.organization.name": "acme"})).json()
    assert sorted(ids(deep)) == ["obs0", "obs1", "obs2"]
    has = (await clinic.get("Patient", params={"_has:Observation:patient:code": "8480-6"})).json()
    assert ids(has) == ["pat1"]


async def test_include_and_revinclude(clinic):
    bundle = (
        await clinic.get("Observation", params={"_id": "obs3", "_include": "Observation:subject"})
    ).json()
    assert ids(bundle) == ["obs3"] and ids(bundle, "include") == ["pat2"]
    bundle = (
        await clinic.get("Patient", params={"_id": "pat1", "_revinclude": "Observation:patient"})
    ).json()
    assert sorted(ids(bundle, "include")) == ["obs0", "obs1", "obs2"]


async def test_sort_and_paging_links(clinic):
    first = (await clinic.get("Observation", params={"_sort": "-date", "_count": "2"})).json()
    assert ids(first) == ["obs2", "obs1"]
    second = (await clinic.get(link(first, "next"))).json()
    assert ids(second) == ["obs3", "obs0"]
    assert link(second, "next") is None
    back = (await clinic.get(link(second, "previous"))).json()
    assert ids(back) == ["obs2", "obs1"]
    query = parse_qs(urlparse(link(first, "self")).query)
    assert query["_sort"] == ["-date"] and query["_count"] == ["2"]


async def test_unknown_parameter_lenient_and_strict(clinic):
    lenient = (await clinic.get("Patient", params={"foo": "bar", "gender": "male"})).json()
    assert ids(lenient) == ["pat1"]
    assert "foo" not in link(lenient, "self")
    strict = await clinic.get(
        "Patient", params={"foo": "bar"}, headers={"Prefer": "handling=strict"}
    )
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"


async def test_malformed_value_is_400_naming_the_parameter(clinic):
    response = await clinic.get("Observation", params={"date": "2024-13-45"})
    assert response.status_code == 400
    assert "date" in json.dumps(response.json()["issue"][0])


async def test_post_search_matches_get(clinic):
    response = await clinic.post(
        "Observation/_search",
        content="patient=pat1&code=8480-6",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200
    assert ids(response.json()) == ["obs2"]


async def test_summary_count_and_elements(clinic):
    count = (await clinic.get("Observation", params={"_summary": "count"})).json()
    assert count["total"] == 4 and "entry" not in count
    elements = (await clinic.get("Patient", params={"_id": "pat1", "_elements": "gender"})).json()
    resource = elements["entry"][0]["resource"]
    assert resource["gender"] == "male" and "name" not in resource
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])


async def test_system_search_with_type(clinic):
    bundle = (
        await clinic.get(BASE, params={"_type": "Patient,Organization", "_id": "pat1,org1"})
    ).json()
    assert sorted(ids(bundle)) == ["org1", "pat1"]


async def test_compartment_search(clinic):
    bundle = (await clinic.get("Patient/pat2/Observation")).json()
    assert ids(bundle) == ["obs3"]


async def test_deleted_resources_leave_the_results(clinic):
    await clinic.delete("Observation/obs3")
    assert ids((await clinic.get("Observation", params={"patient": "pat2"})).json()) == []


async def test_conditional_create(clinic):
    body = json.dumps(
        {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "42"}]}
    )
    headers = {**JSON, "If-None-Exist": "identifier=urn:x|42"}
    first = await clinic.post("Patient", content=body, headers=headers)
    second = await clinic.post("Patient", content=body, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"]


async def test_conditional_update_and_delete(clinic):
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:y", "value": "7"}]}
    created = await clinic.put("Patient?identifier=urn:y|7", content=json.dumps(body), headers=JSON)
    assert created.status_code == 201
    updated = await clinic.put(
        "Patient?identifier=urn:y|7",
        content=json.dumps({**body, "active": True}),
        headers=JSON,
    )
    assert updated.status_code == 200 and updated.json()["id"] == created.json()["id"]
    many = await clinic.put("Patient?gender=male,female", content=json.dumps(body), headers=JSON)
    assert many.status_code == 412
    deleted = await clinic.delete("Patient?identifier=urn:y|7")
    assert deleted.status_code == 200
    assert (await clinic.get(f"Patient/{created.json()['id']}")).status_code == 410


async def test_capability_statement_lists_search_parameters(clinic):
    statement = (await clinic.get("metadata")).json()
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    names = {p["name"] for p in observation["searchParam"]}
    assert {"code", "patient", "date", "value-quantity", "code-value-quantity"} <= names
    assert observation["conditionalCreate"] is True


async def test_absolute_reference_to_this_server_matches(clinic):
    bundle = (await clinic.get("Observation", params={"subject": f"{BASE}/Patient/pat2"})).json()
    assert ids(bundle) == ["obs3"]


async def test_in_modifier_with_a_core_value_set(clinic):
    body = {
        "resourceType": "Observation",
        "id": "cat1",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"text": "x"},
    }
    await put(clinic, body)
    vs = "http://hl7.org/fhir/ValueSet/observation-category"
    bundle = (await clinic.get("Observation", params={"category:in": vs})).json()
    assert ids(bundle) == ["cat1"]
    bundle = (await clinic.get("Observation", params={"category:not-in": vs})).json()
    assert "cat1" not in ids(bundle) and "obs0" in ids(bundle)
    unknown = await clinic.get("Observation", params={"category:in": "http://example.org/vs"})
    assert unknown.status_code == 400


async def test_revinclude_wildcard_and_summary_modes(clinic):
    bundle = (await clinic.get("Patient", params={"_id": "pat2", "_revinclude": "*"})).json()
    assert ids(bundle) == ["pat2"] and ids(bundle, "include") == ["obs3"]
    summary = (await clinic.get("Patient", params={"_id": "pat1", "_summary": "true"})).json()
    resource = summary["entry"][0]["resource"]
    assert resource["name"] and resource["birthDate"] == "1974-12-25"
    assert any(t["code"] == "SUBSETTED" for t in resource["meta"]["tag"])
    data = (await clinic.get("Observation", params={"_id": "obs0", "_summary": "data"})).json()
    assert "text" not in data["entry"][0]["resource"]
    assert data["entry"][0]["resource"]["valueQuantity"]["value"] == 72
    text = (await clinic.get("Observation", params={"_id": "obs0", "_summary": "text"})).json()
    kept = set(text["entry"][0]["resource"])
    assert kept <= {"resourceType", "id", "meta", "text", "status", "code"}

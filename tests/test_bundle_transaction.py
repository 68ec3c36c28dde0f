"""transaction bundles: processing order, placeholders, response shape
(https://hl7.org/fhir/R4/http.html#transaction, https://hl7.org/fhir/R4/bundle.html)."""

from __future__ import annotations

from typing import Any

from tests.conftest import BASE, JSON


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


def observation(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": subject},
        **extra,
    }


async def send(client, body: dict[str, Any], **headers: str):
    return await client.post(BASE, json=body, headers={**JSON, **headers})


async def test_placeholder_becomes_the_new_id_in_references(client):
    body = bundle(
        "transaction",
        post({"resourceType": "Patient"}, "urn:uuid:11111111-1111-1111-1111-111111111111"),
        post(observation("urn:uuid:11111111-1111-1111-1111-111111111111")),
    )
    response = await send(client, body)
    assert response.status_code == 200
    patient, obs = (e["resource"] for e in response.json()["entry"])
    assert obs["subject"]["reference"] == f"Patient/{patient['id']}"
    stored = (await client.get(f"Observation/{obs['id']}")).json()
    assert stored["subject"]["reference"] == f"Patient/{patient['id']}"


async def test_placeholders_in_nested_extension_and_contained_references(client):
    ref = "urn:uuid:22222222-2222-2222-2222-222222222222"
    obs = observation(
        ref,
        performer=[{"reference": "#p1"}],
        contained=[
            {
                "resourceType": "Practitioner",
                "id": "p1",
                "extension": [
                    {"url": "http://example.org/x", "valueReference": {"reference": ref}}
                ],
            }
        ],
        extension=[{"url": "http://example.org/about", "valueReference": {"reference": ref}}],
        focus=[{"reference": ref}],
        text={
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{ref}">patient</a></div>',
        },
    )
    response = await send(
        client, bundle("transaction", post({"resourceType": "Patient"}, ref), post(obs))
    )
    assert response.status_code == 200
    patient_id = response.json()["entry"][0]["resource"]["id"]
    stored = response.json()["entry"][1]["resource"]
    target = f"Patient/{patient_id}"
    assert stored["extension"][0]["valueReference"]["reference"] == target
    assert stored["focus"][0]["reference"] == target
    assert stored["contained"][0]["extension"][0]["valueReference"]["reference"] == target
    assert stored["performer"][0]["reference"] == "#p1"
    assert f'href="{target}"' in stored["text"]["div"]
    search = await client.get("Observation", params={"subject": target})
    assert search.json()["total"] == 1


async def test_put_with_placeholder_full_url_rewrites_to_the_url_id(client):
    ref = "urn:uuid:33333333-3333-3333-3333-333333333333"
    body = bundle(
        "transaction",
        {
            "fullUrl": ref,
            "resource": {"resourceType": "Patient", "id": "pat-85"},
            "request": {"method": "PUT", "url": "Patient/pat-85"},
        },
        post(observation(ref)),
    )
    response = await send(client, body)
    assert response.status_code == 200
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
    assert response.json()["entry"][1]["resource"]["subject"]["reference"] == "Patient/pat-85"


async def test_processing_order_delete_post_put_then_get(client):
    await client.put("Patient/old", json={"resourceType": "Patient", "id": "old"}, headers=JSON)
    body = bundle(
        "transaction",
        {"request": {"method": "GET", "url": "Patient?_id=old,new"}},
        {
            "resource": {"resourceType": "Patient", "id": "new", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/new"},
        },
        post({"resourceType": "Patient", "gender": "female"}),
        {"request": {"method": "DELETE", "url": "Patient/old"}},
    )
    response = await send(client, body)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "200 OK",
        "201 Created",
        "201 Created",
        "200 OK",
    ]
    searchset = entries[0]["resource"]
    assert [e["resource"]["id"] for e in searchset["entry"]] == ["new"]  # sees the writes
    assert (await client.get("Patient/old")).status_code == 410


async def test_response_entries_follow_request_order_with_location_and_etag(client):
    body = bundle("transaction", post({"resourceType": "Patient"}), post(observation("Patient/x")))
    response = await send(client, body)
    result = response.json()
    assert result["resourceType"] == "Bundle"
    assert result["type"] == "transaction-response"
    first, second = result["entry"]
    assert first["resource"]["resourceType"] == "Patient"
    assert second["resource"]["resourceType"] == "Observation"
    for entry in result["entry"]:
        resource = entry["resource"]
        assert entry["response"]["status"] == "201 Created"
        assert entry["response"]["etag"] == 'W/"1"'
        assert entry["response"]["location"].endswith(
            f"{resource['resourceType']}/{resource['id']}/_history/1"
        )
        assert entry["response"]["lastModified"] == resource["meta"]["lastUpdated"]
        assert entry["fullUrl"].endswith(f"{resource['resourceType']}/{resource['id']}")


async def test_prefer_minimal_leaves_out_resources(client):
    body = bundle("transaction", post({"resourceType": "Patient"}))
    response = await send(client, body, prefer="return=minimal")
    entry = response.json()["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["status"] == "201 Created"


async def test_prefer_operation_outcome_puts_an_outcome_in_each_response(client):
    body = bundle("transaction", post({"resourceType": "Patient"}))
    response = await send(client, body, prefer="return=OperationOutcome")
    entry = response.json()["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"


async def test_if_match_update_in_a_transaction(client):
    await client.put("Patient/im", json={"resourceType": "Patient", "id": "im"}, headers=JSON)
    update = {
        "resource": {"resourceType": "Patient", "id": "im", "gender": "male"},
        "request": {"method": "PUT", "url": "Patient/im", "ifMatch": 'W/"1"'},
    }
    response = await send(client, bundle("transaction", update))
    assert response.json()["entry"][0]["response"]["etag"] == 'W/"2"'
    stale = await send(client, bundle("transaction", update))
    assert stale.status_code == 412
    assert "Bundle.entry[0]" in stale.json()["issue"][0]["diagnostics"]


async def test_conditional_update_and_delete_by_url(client):
    ident = {"system": "http://example.org/mrn", "value": "c-1"}
    await client.post(
        "Patient", json={"resourceType": "Patient", "identifier": [ident]}, headers=JSON
    )
    await client.post(
        "Observation", json=observation("Patient/z", status="preliminary"), headers=JSON
    )
    body = bundle(
        "transaction",
        {
            "resource": {"resourceType": "Patient", "identifier": [ident], "gender": "other"},
            "request": {"method": "PUT", "url": "Patient?identifier=http://example.org/mrn|c-1"},
        },
        {"request": {"method": "DELETE", "url": "Observation?status=preliminary"}},
    )
    response = await send(client, body)
    assert response.status_code == 200
    updated = response.json()["entry"][0]
    assert updated["response"]["status"] == "200 OK"
    assert updated["resource"]["gender"] == "other"
    assert (await client.get("Observation?status=preliminary")).json()["total"] == 0
    assert (await client.get("Patient")).json()["total"] == 1


async def test_fhirpath_patch_entry(client):
    await client.put("Patient/pp", json={"resourceType": "Patient", "id": "pp"}, headers=JSON)
    patch = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "operation",
                "part": [
                    {"name": "type", "valueCode": "add"},
                    {"name": "path", "valueString": "Patient"},
                    {"name": "name", "valueString": "gender"},
                    {"name": "value", "valueCode": "female"},
                ],
            }
        ],
    }
    body = bundle(
        "transaction", {"resource": patch, "request": {"method": "PATCH", "url": "Patient/pp"}}
    )
    response = await send(client, body)
    assert response.status_code == 200
    assert response.json()["entry"][0]["resource"]["gender"] == "female"
    assert (await client.get("Patient/pp")).json()["meta"]["versionId"] == "2"


async def test_get_entry_url_placeholders_are_resolved(client):
    ref = "urn:uuid:44444444-4444-4444-4444-444444444444"
    body = bundle(
        "transaction",
        post({"resourceType": "Patient"}, ref),
        post(observation(ref)),
        {"request": {"method": "GET", "url": f"Observation?subject={ref}"}},
    )
    response = await send(client, body)
    assert response.json()["entry"][2]["resource"]["total"] == 1

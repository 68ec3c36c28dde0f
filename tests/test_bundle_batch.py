"""batch bundles: independent entries, each with its own response
(https://hl7.org/fhir/R4/http.html#transaction), and what is not a batch or transaction."""

from __future__ import annotations

import base64
from typing import Any

from tests.conftest import BASE, JSON


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


async def send(client, body: Any, **headers: str):
    return await client.post(BASE, json=body, headers={**JSON, **headers})


async def test_a_failing_entry_does_not_affect_the_others(client):
    body = bundle(
        "batch",
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {
            "resource": {"resourceType": "Observation", "status": "nope"},
            "request": {"method": "POST", "url": "Observation"},
        },
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    )
    response = await send(client, body)
    assert response.status_code == 200
    result = response.json()
    assert result["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in result["entry"]]
    assert statuses == ["201 Created", "400 Bad Request", "404 Not Found", "201 Created"]
    assert (await client.get("Patient")).json()["total"] == 2


async def test_error_entries_carry_an_outcome_naming_the_entry(client):
    body = bundle(
        "batch",
        {
            "resource": {"resourceType": "Observation", "status": "nope"},
            "request": {"method": "POST", "url": "Observation"},
        },
    )
    outcome = (await send(client, body)).json()["entry"][0]["response"]["outcome"]
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Bundle.entry[0]" in outcome["issue"][0]["diagnostics"]
    assert "Bundle.entry[0].resource.status" in outcome["issue"][0]["expression"]


async def test_batch_entries_get_location_etag_and_last_modified(client):
    await client.put("Patient/b1", json={"resourceType": "Patient", "id": "b1"}, headers=JSON)
    body = bundle(
        "batch",
        {
            "resource": {"resourceType": "Patient", "id": "b1", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/b1", "ifMatch": 'W/"1"'},
        },
        {"request": {"method": "GET", "url": "Patient/b1"}},
        {"request": {"method": "GET", "url": "Patient/b1", "ifNoneMatch": 'W/"2"'}},
        {"request": {"method": "DELETE", "url": "Patient/b1", "ifMatch": 'W/"1"'}},
    )
    entries = (await send(client, body)).json()["entry"]
    put, read, not_modified, delete = entries
    assert put["response"]["status"] == "200 OK"
    assert put["response"]["etag"] == 'W/"2"'
    assert put["response"]["location"].endswith("Patient/b1/_history/2")
    assert put["response"]["lastModified"].endswith("Z")
    assert read["resource"]["gender"] == "male"
    assert not_modified["response"]["status"] == "304 Not Modified"
    assert delete["response"]["status"] == "412 Precondition Failed"
    assert (await client.get("Patient/b1")).status_code == 200


async def test_batch_conditional_create_and_search(client):
    create = {
        "resource": {"resourceType": "Patient", "identifier": [{"system": "s", "value": "1"}]},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=s|1"},
    }
    body = bundle(
        "batch", create, create, {"request": {"method": "GET", "url": "Patient?identifier=s|1"}}
    )
    entries = (await send(client, body)).json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["201 Created", "200 OK", "200 OK"]
    assert entries[2]["resource"]["total"] == 1


async def test_batch_json_patch_as_binary(client):
    await client.put("Patient/jp", json={"resourceType": "Patient", "id": "jp"}, headers=JSON)
    ops = b'[{"op":"add","path":"/gender","value":"female"}]'
    binary = {
        "resourceType": "Binary",
        "contentType": "application/json-patch+json",
        "data": base64.b64encode(ops).decode(),
    }
    body = bundle(
        "batch", {"resource": binary, "request": {"method": "PATCH", "url": "Patient/jp"}}
    )
    entry = (await send(client, body)).json()["entry"][0]
    assert entry["response"]["status"] == "200 OK"
    assert entry["resource"]["gender"] == "female"


async def test_batch_prefer_minimal(client):
    body = bundle(
        "batch",
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    )
    entry = (await send(client, body, prefer="return=minimal")).json()["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["status"] == "201 Created"


async def test_empty_batch_answers_an_empty_response(client):
    response = await send(client, bundle("batch"))
    assert response.status_code == 200
    assert response.json()["type"] == "batch-response"


async def test_a_resource_that_is_not_a_bundle_is_400(client):
    response = await send(client, {"resourceType": "Patient"})
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_a_bundle_of_another_type_is_400(client):
    response = await send(client, bundle("collection"))
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.type"]


async def test_capability_statement_lists_batch_and_transaction(client):
    rest = (await client.get("metadata")).json()["rest"][0]
    codes = {i["code"] for i in rest["interaction"]}
    assert {"batch", "transaction"} <= codes

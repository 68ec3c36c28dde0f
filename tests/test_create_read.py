"""create, read, vread and conditional read (https://hl7.org/fhir/R4/http.html#create,
#read, #vread, #cread)."""

from __future__ import annotations

import re

import httpx

from tests.conftest import BASE, JSON

PATIENT = b'{"resourceType":"Patient","name":[{"family":"Chalmers","given":["Peter"]}]}'


async def create(client: httpx.AsyncClient, body: bytes = PATIENT, type_: str = "Patient"):
    response = await client.post(type_, content=body, headers=JSON)
    assert response.status_code == 201, response.text
    return response


async def test_create_assigns_id_and_answers_201_with_location_etag_last_modified(client):
    response = await create(client)
    body = response.json()
    assert re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", body["id"])
    assert response.headers["location"] == f"{BASE}/Patient/{body['id']}/_history/1"
    assert response.headers["etag"] == 'W/"1"'
    assert response.headers["last-modified"].endswith(" GMT")
    assert body["meta"]["versionId"] == "1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", body["meta"]["lastUpdated"])


async def test_create_ignores_a_client_id_and_server_meta(client):
    body = b'{"resourceType":"Patient","id":"mine","meta":{"versionId":"9","tag":[{"code":"t"}]}}'
    created = (await create(client, body)).json()
    assert created["id"] != "mine"
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["tag"] == [{"code": "t"}]


async def test_read_returns_what_was_created(client):
    created = await create(client)
    read = await client.get(f"Patient/{created.json()['id']}")
    assert read.status_code == 200
    assert read.content == created.content
    assert read.headers["etag"] == 'W/"1"'
    assert read.headers["content-type"].startswith("application/fhir+json")


async def test_read_of_unknown_id_is_404_operation_outcome(client):
    response = await client.get("Patient/does-not-exist")
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert response.json()["issue"][0]["code"] == "not-found"


async def test_read_of_invalid_id_is_400(client):
    response = await client.get("Patient/a_b")
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "invalid"


async def test_vread_returns_each_version(client):
    id_ = (await create(client)).json()["id"]
    update = b'{"resourceType":"Patient","id":"%s","active":true}' % id_.encode()
    assert (await client.put(f"Patient/{id_}", content=update, headers=JSON)).status_code == 200
    first = await client.get(f"Patient/{id_}/_history/1")
    second = await client.get(f"Patient/{id_}/_history/2")
    assert first.json()["meta"]["versionId"] == "1" and "active" not in first.json()
    assert second.json()["active"] is True
    assert second.headers["etag"] == 'W/"2"'


async def test_vread_of_unknown_version_is_404(client):
    id_ = (await create(client)).json()["id"]
    assert (await client.get(f"Patient/{id_}/_history/7")).status_code == 404
    assert (await client.get(f"Patient/{id_}/_history/x")).status_code == 404


async def test_if_none_match_with_current_etag_gives_304(client):
    id_ = (await create(client)).json()["id"]
    response = await client.get(f"Patient/{id_}", headers={"If-None-Match": 'W/"1"'})
    assert response.status_code == 304
    assert response.content == b""
    other = await client.get(f"Patient/{id_}", headers={"If-None-Match": 'W/"0"'})
    assert other.status_code == 200


async def test_if_modified_since_gives_304_when_unchanged(client):
    created = await create(client)
    id_ = created.json()["id"]
    since = created.headers["last-modified"]
    assert (
        await client.get(f"Patient/{id_}", headers={"If-Modified-Since": since})
    ).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert (
        await client.get(f"Patient/{id_}", headers={"If-Modified-Since": old})
    ).status_code == 200


async def test_unknown_resource_type_is_404(client):
    response = await client.post("Foo", content=b'{"resourceType":"Foo"}', headers=JSON)
    assert response.status_code == 404
    assert response.json()["resourceType"] == "OperationOutcome"
    assert (await client.get("Foo/1")).status_code == 404


async def test_lossless_storage_of_decimals_primitive_extensions_and_contained(client):
    body = (
        b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
        b'"contained":[{"resourceType":"Patient","id":"p1","birthDate":"1970"}],'
        b'"subject":{"reference":"#p1"},'
        b'"valueQuantity":{"value":72.50,"unit":"kg"},'
        b'"referenceRange":[{"low":{"value":0.010},"high":{"value":1.0e2}}],'
        b'"_status":{"extension":[{"url":"http://example.org/x","valueString":"y"}]}}'
    )
    id_ = (await create(client, body, "Observation")).json()["id"]
    text = (await client.get(f"Observation/{id_}")).text
    for fragment in ('"value":72.50', '"value":0.010', '"value":1.0e2', '"_status":{'):
        assert fragment in text
    assert '"contained":[{"resourceType":"Patient","id":"p1","birthDate":"1970"}]' in text

"""patch over HTTP (https://hl7.org/fhir/R4/http.html#patch): JSON Patch and FHIRPath Patch."""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.conftest import JSON

JSON_PATCH = {"content-type": "application/json-patch+json"}


async def put_patient(client, id_: str) -> None:
    body = f'{{"resourceType":"Patient","id":"{id_}","gender":"male","birthDate":"1980-01-01"}}'
    assert (await client.put(f"Patient/{id_}", content=body, headers=JSON)).status_code == 201


async def test_json_patch_replaces_and_adds(client):
    await put_patient(client, "p1")
    body = (
        b'[{"op":"replace","path":"/gender","value":"female"},'
        b'{"op":"add","path":"/active","value":true}]'
    )
    response = await client.patch("Patient/p1", content=body, headers=JSON_PATCH)
    assert response.status_code == 200
    assert response.json()["gender"] == "female" and response.json()["active"] is True
    assert response.json()["meta"]["versionId"] == "2"
    history = (await client.get("Patient/p1/_history")).json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


async def test_fhirpath_patch_replaces(client):
    await put_patient(client, "p2")
    body = (
        b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.birthDate"},'
        b'{"name":"value","valueDate":"1990-05-05"}]}]}'
    )
    response = await client.patch("Patient/p2", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["birthDate"] == "1990-05-05"


async def test_patch_to_an_invalid_resource_is_rejected_and_nothing_changes(client):
    await put_patient(client, "p3")
    body = b'[{"op":"replace","path":"/birthDate","value":"not-a-date"}]'
    response = await client.patch("Patient/p3", content=body, headers=JSON_PATCH)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    current = (await client.get("Patient/p3")).json()
    assert current["birthDate"] == "1980-01-01" and current["meta"]["versionId"] == "1"


async def test_patch_may_not_change_the_id(client):
    await put_patient(client, "p4")
    body = b'[{"op":"replace","path":"/id","value":"other"}]'
    response = await client.patch("Patient/p4", content=body, headers=JSON_PATCH)
    assert response.status_code == 422


async def test_failed_json_patch_test_op_is_422(client):
    await put_patient(client, "p5")
    body = b'[{"op":"test","path":"/gender","value":"female"}]'
    assert (await client.patch("Patient/p5", content=body, headers=JSON_PATCH)).status_code == 422


async def test_malformed_json_patch_is_400(client):
    await put_patient(client, "p6")
    for body in (b'{"op":"add"}', b'[{"op":"jump","path":"/x"}]', b"[{"):
        response = await client.patch("Patient/p6", content=body, headers=JSON_PATCH)
        assert response.status_code == 400, body


async def test_patch_of_missing_or_deleted_resource(client):
    body = b'[{"op":"add","path":"/active","value":true}]'
    assert (await client.patch("Patient/none", content=body, headers=JSON_PATCH)).status_code == 404
    await put_patient(client, "p7")
    await client.delete("Patient/p7")
    assert (await client.patch("Patient/p7", content=body, headers=JSON_PATCH)).status_code == 410


async def test_patch_with_stale_if_match_is_412(client):
    await put_patient(client, "p8")
    body = b'[{"op":"add","path":"/active","value":true}]'
    response = await client.patch(
        "Patient/p8", content=body, headers={**JSON_PATCH, "If-Match": 'W/"3"'}
    )
    assert response.status_code == 412


async def test_concurrent_patches_without_if_match_all_apply(client):
    await put_patient(client, "p9")

    async def add_name(n: int) -> int:
        body = f'[{{"op":"add","path":"/name/-","value":{{"family":"F{n}"}}}}]'.encode()
        if n == 0:
            body = b'[{"op":"add","path":"/name","value":[{"family":"F0"}]}]'
            return (await client.patch("Patient/p9", content=body, headers=JSON_PATCH)).status_code
        return (await client.patch("Patient/p9", content=body, headers=JSON_PATCH)).status_code

    assert await add_name(0) == 200
    statuses = await asyncio.gather(*(add_name(n) for n in range(1, 6)))
    assert statuses == [200] * 5
    names = {n["family"] for n in (await client.get("Patient/p9")).json()["name"]}
    assert names == {f"F{n}" for n in range(6)}


async def test_fhirpath_patch_add_to_an_absent_repeating_element_makes_a_list(client):
    await put_patient(client, "p10")
    body = (
        b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},'
        b'{"name":"name","valueString":"name"},'
        b'{"name":"value","valueHumanName":{"family":"Smith"}}]}]}'
    )
    response = await client.patch("Patient/p10", content=body, headers=JSON)
    assert response.status_code == 200, response.text
    assert response.json()["name"] == [{"family": "Smith"}]


@pytest.mark.parametrize("pointer", ["0", "name", "~"])
async def test_a_pointer_not_starting_with_a_slash_is_400(client, pointer):
    """Found by the API fuzzer: jsonpointer refused such a path while the patch was
    being parsed, which answered 500."""
    await put_patient(client, "p1")
    body = json.dumps([{"op": "add", "path": pointer, "value": 1}])
    response = await client.patch("Patient/p1", content=body, headers=JSON_PATCH)
    assert response.status_code == 400
    assert "Invalid JSON Patch" in response.text
    assert (await client.get("Patient/p1")).json()["meta"]["versionId"] == "1"

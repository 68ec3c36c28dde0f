"""JSON Merge Patch over HTTP (RFC 7386, ``application/merge-patch+json``, what fhirpy's
``patch()`` sends), beside JSON Patch and FHIRPath Patch:
https://hl7.org/fhir/R4/http.html#patch, https://www.rfc-editor.org/rfc/rfc7386
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.conftest import BASE, JSON

MERGE = {"content-type": "application/merge-patch+json"}


async def put_patient(client, id_: str, **extra: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Patient",
        "id": id_,
        "gender": "male",
        "birthDate": "1980-01-01",
        "name": [{"family": "Doe", "given": ["John", "Q"]}],
        "maritalStatus": {"coding": [{"code": "M"}], "text": "married"},
        **extra,
    }
    response = await client.put(f"Patient/{id_}", json=body, headers=JSON)
    assert response.status_code == 201, response.text
    return response.json()


async def merge(client, id_: str, patch: Any, **headers: str):
    body = json.dumps(patch).encode()
    return await client.patch(f"Patient/{id_}", content=body, headers={**MERGE, **headers})


async def assert_unchanged(client, id_: str, before: dict[str, Any]) -> None:
    assert (await client.get(f"Patient/{id_}")).json() == before


async def test_merge_patch_replaces_adds_and_removes(client):
    await put_patient(client, "m1")
    response = await merge(client, "m1", {"gender": "female", "active": True, "birthDate": None})
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["gender"], patched["active"], "birthDate" in patched) == ("female", True, False)
    assert patched["meta"]["versionId"] == "2"
    assert (await client.get("Patient/m1")).json() == patched
    history = (await client.get("Patient/m1/_history")).json()
    assert history["entry"][0]["request"]["method"] == "PATCH"


async def test_merge_patch_replaces_arrays_whole_and_merges_objects(client):
    await put_patient(client, "m2")
    patch = {"name": [{"family": "Roe"}], "maritalStatus": {"text": "Married"}}
    patched = (await merge(client, "m2", patch)).json()
    assert patched["name"] == [{"family": "Roe"}]
    assert patched["maritalStatus"] == {"coding": [{"code": "M"}], "text": "Married"}


async def test_merge_patch_removing_every_member_removes_the_element(client):
    await put_patient(client, "m3")
    response = await merge(client, "m3", {"maritalStatus": {"coding": None, "text": None}})
    assert response.status_code == 200, response.text
    assert "maritalStatus" not in response.json()


async def test_merge_patch_with_a_charset_parameter(client):
    await put_patient(client, "m4")
    headers = {"content-type": "application/merge-patch+json; charset=utf-8"}
    response = await client.patch("Patient/m4", content=b'{"gender":"other"}', headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "other"


@pytest.mark.parametrize("body", [b'[{"op":"add","path":"/active","value":true}]', b'"x"', b"null"])
async def test_merge_patch_that_is_not_an_object_is_400_and_changes_nothing(client, body):
    before = await put_patient(client, "m5")
    response = await client.patch("Patient/m5", content=body, headers=MERGE)
    assert response.status_code == 400
    assert response.json()["issue"][0]["code"] == "invalid"
    await assert_unchanged(client, "m5", before)


async def test_merge_patch_that_is_not_json_is_400(client):
    before = await put_patient(client, "m6")
    response = await client.patch("Patient/m6", content=b'{"gender":', headers=MERGE)
    assert response.status_code == 400
    await assert_unchanged(client, "m6", before)


async def test_merge_patch_to_an_invalid_resource_is_400_and_changes_nothing(client):
    before = await put_patient(client, "m7")
    response = await merge(client, "m7", {"birthDate": "not-a-date"})
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    await assert_unchanged(client, "m7", before)


async def test_merge_patch_leaving_an_empty_object_is_400(client):
    before = await put_patient(client, "m8")
    response = await merge(client, "m8", {"text": {}})
    assert response.status_code == 400
    await assert_unchanged(client, "m8", before)


@pytest.mark.parametrize(
    "patch",
    [{"resourceType": "Observation"}, {"resourceType": None}, {"id": "other"}, {"id": None}],
)
async def test_merge_patch_may_not_change_the_type_or_id(client, patch):
    before = await put_patient(client, "m9")
    response = await merge(client, "m9", patch)
    assert response.status_code == 422
    assert response.json()["issue"][0]["code"] == "processing"
    await assert_unchanged(client, "m9", before)


async def test_merge_patch_naming_the_same_type_and_id_is_accepted(client):
    await put_patient(client, "m10")
    patch = {"resourceType": "Patient", "id": "m10", "gender": "female"}
    response = await merge(client, "m10", patch)
    assert response.status_code == 200, response.text
    assert response.json()["gender"] == "female"


async def test_merge_patch_honours_if_match(client):
    before = await put_patient(client, "m11")
    stale = await merge(client, "m11", {"gender": "female"}, **{"if-match": 'W/"2"'})
    assert stale.status_code == 412
    await assert_unchanged(client, "m11", before)
    current = await merge(client, "m11", {"gender": "female"}, **{"if-match": 'W/"1"'})
    assert current.status_code == 200
    assert current.json()["meta"]["versionId"] == "2"


async def test_merge_patch_of_a_missing_or_deleted_resource(client):
    assert (await merge(client, "none", {"active": True})).status_code == 404
    await put_patient(client, "m12")
    await client.delete("Patient/m12")
    assert (await merge(client, "m12", {"active": True})).status_code == 410


async def test_merge_patch_in_a_transaction_as_binary(client):
    await put_patient(client, "m13")
    for kind, gender in (("transaction", "female"), ("batch", "other")):
        binary = {
            "resourceType": "Binary",
            "contentType": "application/merge-patch+json",
            "data": base64.b64encode(json.dumps({"gender": gender}).encode()).decode(),
        }
        entry = {"resource": binary, "request": {"method": "PATCH", "url": "Patient/m13"}}
        body = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        response = await client.post(BASE, json=body, headers=JSON)
        assert response.status_code == 200, response.text
        answer = response.json()["entry"][0]
        assert answer["response"]["status"] == "200 OK", answer
        assert (await client.get("Patient/m13")).json()["gender"] == gender


async def test_a_binary_patch_of_another_content_type_is_400(client):
    before = await put_patient(client, "m14")
    binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "e30="}
    entry = {"resource": binary, "request": {"method": "PATCH", "url": "Patient/m14"}}
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 400
    assert "merge-patch" in response.json()["issue"][0]["diagnostics"]
    await assert_unchanged(client, "m14", before)


async def test_the_capability_statement_lists_merge_patch(client):
    statement = (await client.get("metadata")).json()
    assert "application/merge-patch+json" in statement["patchFormat"]


async def test_an_unsupported_patch_content_type_is_415_naming_the_three_kinds(client):
    await put_patient(client, "m15")
    headers = {"content-type": "text/plain"}
    response = await client.patch("Patient/m15", content=b"{}", headers=headers)
    assert response.status_code == 415
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert "merge-patch+json" in diagnostics and "json-patch+json" in diagnostics


# fhirpy (beda-software/fhir-py) sends patch() and save(fields=[...]) as the changed
# members only, with the Content-Type its HTTP library gives json= bodies.
FHIRPY = {"content-type": "application/json", "accept": "application/fhir+json"}


@pytest.mark.parametrize("content_type", ["application/json", "application/fhir+json"])
async def test_an_object_sent_as_plain_json_is_a_merge_patch(client, content_type):
    await put_patient(client, "f1")
    body = b'{"active": true, "birthDate": null}'
    headers = {**FHIRPY, "content-type": content_type}
    response = await client.patch("Patient/f1", content=body, headers=headers)
    assert response.status_code == 200, response.text
    patched = response.json()
    assert (patched["active"], "birthDate" in patched, patched["gender"]) == (True, False, "male")


async def test_fhirpy_conditional_patch_is_a_merge_patch(client):
    await put_patient(client, "f2", identifier=[{"system": "http://mrn", "value": "f2"}])
    body = b'{"gender": "female"}'
    response = await client.patch("Patient?identifier=http://mrn|f2", content=body, headers=FHIRPY)
    assert response.status_code == 200, response.text
    assert (await client.get("Patient/f2")).json()["gender"] == "female"


async def test_a_parameters_body_sent_as_plain_json_is_still_a_fhirpath_patch(client):
    await put_patient(client, "f3")
    body = (
        b'{"resourceType":"Parameters","parameter":[{"name":"operation","part":['
        b'{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.gender"}'
        b"]}]}"
    )
    response = await client.patch("Patient/f3", content=body, headers=FHIRPY)
    assert response.status_code == 200, response.text
    assert "gender" not in response.json()


async def test_an_array_sent_as_plain_json_is_400_naming_the_json_patch_type(client):
    before = await put_patient(client, "f4")
    body = b'[{"op":"add","path":"/active","value":true}]'
    response = await client.patch("Patient/f4", content=body, headers=FHIRPY)
    assert response.status_code == 400
    assert "application/json-patch+json" in response.json()["issue"][0]["diagnostics"]
    await assert_unchanged(client, "f4", before)


async def test_a_merge_patch_sent_as_plain_json_to_an_invalid_result_changes_nothing(client):
    before = await put_patient(client, "f5")
    response = await client.patch("Patient/f5", content=b'{"shoeSize": 9}', headers=FHIRPY)
    assert response.status_code == 400
    await assert_unchanged(client, "f5", before)

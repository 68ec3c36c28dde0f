"""Formats, Prefer and bad input (https://hl7.org/fhir/R4/http.html#mime-type,
#ops, #2.21.0.4): each error is an OperationOutcome with the right status, never a 5xx."""

from __future__ import annotations

import logging

import httpx
import pytest

from fhir_server.app import create_app
from fhir_server.config import Settings
from resources.definitions import RESOURCE_TYPES
from tests.conftest import BASE, JSON

PATIENT = b'{"resourceType":"Patient","active":true}'


def outcome_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["code"]


async def test_application_json_is_accepted_both_ways(client):
    response = await client.post(
        "Patient",
        content=PATIENT,
        headers={"content-type": "application/json", "accept": "application/json"},
    )
    assert response.status_code == 201
    assert response.headers["content-type"].startswith("application/json")


async def test_format_parameter_and_pretty(client):
    id_ = (await client.post("Patient", content=PATIENT, headers=JSON)).json()["id"]
    response = await client.get(f"Patient/{id_}", params={"_format": "json", "_pretty": "true"})
    assert response.status_code == 200
    assert response.text.startswith('{\n  "resourceType": "Patient"')


async def test_browser_accept_header_gets_json(client):
    accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    assert (await client.get("metadata", headers={"accept": accept})).status_code == 200


async def test_xml_accept_is_406(client):
    response = await client.get("metadata", headers={"accept": "application/fhir+xml"})
    assert response.status_code == 406
    assert outcome_code(response) == "not-supported"
    assert (await client.get("metadata", params={"_format": "xml"})).status_code == 406


async def test_xml_body_is_415(client):
    response = await client.post(
        "Patient",
        content=b'<Patient xmlns="http://hl7.org/fhir"/>',
        headers={"content-type": "application/fhir+xml"},
    )
    assert response.status_code == 415
    assert outcome_code(response) == "not-supported"


async def test_text_plain_body_is_415(client):
    response = await client.post("Patient", content=PATIENT, headers={"content-type": "text/plain"})
    assert response.status_code == 415


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"Patient"', b"", b'{"resourceType":"Patient","active":NaN}'],
)
async def test_unparseable_bodies_are_400(client, body):
    response = await client.post("Patient", content=body, headers=JSON)
    assert response.status_code == 400
    assert outcome_code(response) == "invalid"


async def test_wrong_resource_type_is_400(client):
    response = await client.post("Patient", content=b'{"resourceType":"Observation"}', headers=JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["resourceType"]


async def test_unknown_element_is_400_with_expression(client):
    response = await client.post(
        "Patient", content=b'{"resourceType":"Patient","colour":"blue"}', headers=JSON
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.colour"]


async def test_bad_date_is_400_with_expression(client):
    response = await client.post(
        "Patient", content=b'{"resourceType":"Patient","birthDate":"2020-02-31"}', headers=JSON
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.birthDate"]


async def test_code_outside_required_binding_is_400(client):
    response = await client.post(
        "Patient", content=b'{"resourceType":"Patient","gender":"bogus"}', headers=JSON
    )
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Patient.gender"]


async def test_every_problem_is_its_own_issue(client):
    body = b'{"resourceType":"Patient","gender":"bogus","birthDate":"x","colour":1}'
    response = await client.post("Patient", content=body, headers=JSON)
    assert response.status_code == 400
    paths = {p for issue in response.json()["issue"] for p in issue.get("expression", [])}
    assert {"Patient.gender", "Patient.birthDate", "Patient.colour"} <= paths


async def test_rejected_update_changes_nothing(client):
    good = b'{"resourceType":"Patient","id":"keep","gender":"male"}'
    assert (await client.put("Patient/keep", content=good, headers=JSON)).status_code == 201
    bad = b'{"resourceType":"Patient","id":"keep","gender":"bogus"}'
    assert (await client.put("Patient/keep", content=bad, headers=JSON)).status_code == 400
    current = await client.get("Patient/keep")
    assert current.json()["gender"] == "male" and current.headers["etag"] == 'W/"1"'


async def test_prefer_return_minimal_and_operation_outcome(client):
    minimal = await client.post(
        "Patient", content=PATIENT, headers={**JSON, "Prefer": "return=minimal"}
    )
    assert minimal.status_code == 201 and minimal.content == b""
    assert minimal.headers["location"]
    outcome = await client.post(
        "Patient", content=PATIENT, headers={**JSON, "Prefer": "return=OperationOutcome"}
    )
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    full = await client.post(
        "Patient", content=PATIENT, headers={**JSON, "Prefer": "return=representation"}
    )
    assert full.json()["resourceType"] == "Patient"


async def test_unknown_endpoint_and_method_are_operation_outcomes(client):
    assert (await client.get("Patient/x/y/z/w")).status_code == 404
    response = await client.request("POST", "metadata")
    assert response.status_code in (404, 405)
    assert response.json()["resourceType"] == "OperationOutcome"


async def test_body_over_the_limit_is_413(tmp_path):
    settings = Settings(storage=f"sqlite:///{tmp_path}/db.sqlite3", max_body_bytes=2048, auth="off")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            text = "x" * 4096
            body = f'{{"resourceType":"Patient","name":[{{"text":"{text}"}}]}}'.encode()
            response = await http.post("Patient", content=body, headers=JSON)
            assert response.status_code == 413
            assert outcome_code(response) == "too-costly"
            history = (await http.get("Patient/_history")).json()
            assert history["total"] == 0


async def test_unexpected_failure_is_500_without_internals(tmp_path, caplog):
    settings = Settings(storage=f"sqlite:///{tmp_path}/db.sqlite3", auth="off")
    app = create_app(settings)
    async with app.router.lifespan_context(app):

        async def broken(*args: object) -> None:
            raise RuntimeError("secret internal detail")

        app.state.store.read = broken
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            with caplog.at_level(logging.ERROR):
                response = await http.get("Patient/x")
    assert response.status_code == 500
    assert outcome_code(response) == "exception"
    assert "secret" not in response.text
    assert "secret internal detail" in caplog.text


async def test_capability_statement(client):
    response = await client.get("metadata")
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in patient["interaction"]}
    assert {
        "read",
        "vread",
        "update",
        "patch",
        "delete",
        "history-instance",
        "history-type",
        "create",
    } <= codes
    assert {"code": "history-system"} in rest["interaction"]
    types = {r["type"] for r in rest["resource"]}
    assert types == RESOURCE_TYPES and "MedicinalProduct" in types  # every R4 type
    assert "SubscriptionTopic" not in types  # R4B

"""The CapabilityStatement and the routes come from one support table
(https://hl7.org/fhir/R4/capabilitystatement.html): what the statement lists is served,
what it does not list is refused."""

from __future__ import annotations

import json

from capability.support import support_table
from resources import definitions
from resources.search.parameters import search_params
from tests.conftest import JSON

_MINIMAL = {
    "Patient": {},
    "Observation": {"status": "final", "code": {"text": "x"}},
    "Appointment": {
        "status": "booked",
        "start": "2030-01-07T09:00:00Z",
        "end": "2030-01-07T09:30:00Z",
        "participant": [{"status": "accepted", "actor": {"reference": "Patient/x1"}}],
    },
    "CodeSystem": {"status": "draft", "content": "not-present"},
    "MedicinalProduct": {"name": [{"productName": "Acme 10 mg"}]},
    "SubstanceSpecification": {"description": "x"},
    "EvidenceVariable": {"status": "draft", "characteristic": [{"definitionCanonical": "x"}]},
}

_PROBES = {
    "read": ("GET", "{t}/x1"),
    "vread": ("GET", "{t}/x1/_history/1"),
    "history-instance": ("GET", "{t}/x1/_history"),
    "history-type": ("GET", "{t}/_history"),
    "search-type": ("GET", "{t}"),
    "delete": ("DELETE", "{t}/nothing-here"),
}


async def test_every_listed_interaction_of_a_type_is_served(client):
    statement = (await client.get("metadata")).json()
    listed = {
        r["type"]: {i["code"] for i in r["interaction"]} for r in statement["rest"][0]["resource"]
    }
    assert set(listed) == set(support_table().types)
    for type_, fields in _MINIMAL.items():
        body = json.dumps({"resourceType": type_, "id": "x1", **fields})
        assert (await client.put(f"{type_}/x1", content=body, headers=JSON)).status_code == 201
        for code, (method, path) in _PROBES.items():
            assert code in listed[type_]
            response = await client.request(method, path.format(t=type_))
            assert response.status_code not in (404, 405), (type_, code, response.text)


async def test_system_interactions_are_served(client):
    statement = (await client.get("metadata")).json()
    codes = {i["code"] for i in statement["rest"][0]["interaction"]}
    assert {"history-system", "search-system"} <= codes
    assert (await client.get("_history")).status_code == 200


def test_every_r4_type_is_in_the_table_with_all_its_search_parameters() -> None:
    table = support_table().types
    assert set(table) == definitions.RESOURCE_TYPES and len(table) == 146
    for type_, support in table.items():
        assert {p.code for p in support.search_params} == set(search_params(type_)), type_
    assert {p.code for p in table["MedicinalProductAuthorization"].search_params} >= {
        "country", "holder", "identifier", "status", "subject"
    }  # fmt: skip
    assert "MedicinalProductAuthorization:subject" in table["MedicinalProduct"].search_rev_include


async def test_a_type_outside_the_table_is_refused_on_every_route(client):
    for type_ in ("SubscriptionTopic", "Citation"):  # R4B, not R4
        assert type_ not in support_table().types
        for method, path in [("GET", "{t}/1"), ("GET", "{t}"), ("GET", "{t}/_history")]:
            response = await client.request(method, path.format(t=type_))
            assert response.status_code == 404
            assert response.json()["issue"][0]["code"] == "not-supported"


async def test_the_capability_statement_can_be_subsetted(client):
    """``_elements`` / ``_summary`` on ``metadata``: the whole statement is ~700 KB; the
    README's first request asks for a few elements."""
    whole = await client.get("metadata")
    small = await client.get("metadata", params={"_elements": "software,fhirVersion"})
    assert small.status_code == 200 and len(small.content) < 1000 < len(whole.content)
    body = small.json()
    assert body["software"]["name"] == "fhir-server" and body["fhirVersion"] == "4.0.1"
    assert "rest" not in body
    assert any(t["code"] == "SUBSETTED" for t in body["meta"]["tag"])
    text = await client.get("metadata", params={"_summary": "text"})
    assert "rest" not in text.json() and text.json()["status"] == "active"
    bad = await client.get("metadata", params={"_summary": "nonsense"})
    assert bad.status_code == 400 and bad.json()["issue"][0]["code"] == "invalid"


async def test_an_operation_of_two_levels_is_listed_once(client):
    """``CapabilityStatement.rest.resource.operation``: one entry per definition, though
    ``Patient/$everything`` is declared at type and instance level."""
    statement = (await client.get("metadata")).json()
    for resource in statement["rest"][0]["resource"]:
        keys = [(o["name"], o["definition"]) for o in resource.get("operation", [])]
        assert len(keys) == len(set(keys)), resource["type"]
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert [o["name"] for o in patient["operation"]].count("everything") == 1

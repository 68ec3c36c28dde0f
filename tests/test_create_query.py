"""``POST [type]?criteria`` is a conditional create (issue 15, item 7): fhirpy's
``get_or_create`` sends its search as the query of the POST, and the server used to
ignore it and create a duplicate every time. The query is read as ``If-None-Exist``
(https://hl7.org/fhir/R4/http.html#ccreate): no match creates (201), one match returns it
(200) and creates nothing, several give 412; a query and an ``If-None-Exist`` together must
be the same criteria (400 otherwise). The same holds for a ``POST`` entry of a batch or
transaction whose ``request.url`` carries criteria (``Patient?identifier=…``).
"""

from __future__ import annotations

from typing import Any

from tests.conftest import BASE, JSON

SYSTEM = "http://example.org/mrn"


def patient(mrn: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": mrn}], **extra}


async def total(client, mrn: str) -> int:
    found = await client.get("Patient", params={"identifier": f"{SYSTEM}|{mrn}"})
    return found.json()["total"]


async def get_or_create(client, mrn: str, **extra: Any):
    """The request of fhirpy's ``client.resources("Patient").search(identifier=…)
    .get_or_create(resource)``: the search parameters as the query of a POST."""
    return await client.post(
        "Patient",
        params={"identifier": f"{SYSTEM}|{mrn}"},
        json=patient(mrn, **extra),
        headers=JSON,
    )


async def test_no_match_creates(client):
    response = await get_or_create(client, "1")
    assert response.status_code == 201, response.text
    assert response.json()["identifier"][0]["value"] == "1"
    assert await total(client, "1") == 1


async def test_one_match_returns_it_and_creates_nothing(client):
    first = await get_or_create(client, "2")
    second = await get_or_create(client, "2", active=True)
    assert second.status_code == 200, second.text
    assert second.json()["id"] == first.json()["id"]
    assert "active" not in second.json()  # the existing resource, not the one sent
    assert second.headers["ETag"] == 'W/"1"'
    assert await total(client, "2") == 1


async def test_several_matches_are_412_and_nothing_is_created(client):
    for _ in range(2):
        await client.post("Patient", json=patient("3"), headers=JSON)
    response = await get_or_create(client, "3")
    assert response.status_code == 412
    assert response.json()["resourceType"] == "OperationOutcome"
    diagnostics = response.json()["issue"][0]["diagnostics"]
    assert f"conditional create criteria (identifier={SYSTEM}|3)" in diagnostics
    assert await total(client, "3") == 2


async def test_general_parameters_alone_are_a_plain_create(client):
    for _ in range(2):
        response = await client.post(
            "Patient",
            params={"_format": "json", "_pretty": "true"},
            json=patient("4"),
            headers=JSON,
        )
        assert response.status_code == 201, response.text
    assert await total(client, "4") == 2


async def test_an_unknown_parameter_in_the_query_is_400_not_ignored(client):
    response = await client.post(
        "Patient", params={"no-such-param": "x"}, json=patient("5"), headers=JSON
    )
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"
    assert await total(client, "5") == 0


async def test_query_and_the_same_if_none_exist_are_one_condition(client):
    await client.post("Patient", json=patient("6"), headers=JSON)
    response = await client.post(
        "Patient",
        params={"identifier": f"{SYSTEM}|6", "_format": "json"},
        json=patient("6"),
        headers={**JSON, "If-None-Exist": f"identifier={SYSTEM}|6"},
    )
    assert response.status_code == 200, response.text
    assert await total(client, "6") == 1


async def test_query_and_a_different_if_none_exist_are_400(client):
    response = await client.post(
        "Patient",
        params={"identifier": f"{SYSTEM}|7"},
        json=patient("7"),
        headers={**JSON, "If-None-Exist": f"identifier={SYSTEM}|other"},
    )
    assert response.status_code == 400
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "If-None-Exist" in outcome["issue"][0]["diagnostics"]
    assert await total(client, "7") == 0


def _post_entry(mrn: str, url: str, **request: str) -> dict[str, Any]:
    return {"resource": patient(mrn), "request": {"method": "POST", "url": url, **request}}


async def test_a_batch_post_with_criteria_in_its_url_is_a_conditional_create(client):
    url = f"Patient?identifier={SYSTEM}|8"
    body = {"resourceType": "Bundle", "type": "batch", "entry": [_post_entry("8", url)] * 2}
    response = await client.post(BASE, json=body, headers=JSON)
    statuses = [e["response"]["status"] for e in response.json()["entry"]]
    assert statuses == ["201 Created", "200 OK"]
    assert await total(client, "8") == 1


async def test_a_transaction_post_with_criteria_in_its_url_is_a_conditional_create(client):
    existing = (await client.post("Patient", json=patient("9"), headers=JSON)).json()["id"]
    body = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            _post_entry("9", f"Patient?identifier={SYSTEM}|9"),
            _post_entry("10", f"Patient?identifier={SYSTEM}|10"),
        ],
    }
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 200, response.text
    entries = response.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["response"]["location"].startswith(f"{BASE}/Patient/{existing}/")
    assert entries[1]["response"]["status"] == "201 Created"
    assert await total(client, "9") == 1
    assert await total(client, "10") == 1


async def test_a_transaction_post_with_url_and_other_if_none_exist_is_400(client):
    entry = _post_entry(
        "11", f"Patient?identifier={SYSTEM}|11", ifNoneExist=f"identifier={SYSTEM}|12"
    )
    body = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 400
    issue = response.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].request.url"]
    assert await total(client, "11") == 0

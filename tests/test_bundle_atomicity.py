"""A transaction is all or nothing (https://hl7.org/fhir/R4/http.html#transaction): a
failing entry leaves nothing stored, and the error names the entry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.conftest import BASE, JSON


def bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(resource: dict[str, Any], full_url: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def patients(n: int) -> list[dict[str, Any]]:
    return [post({"resourceType": "Patient"}, f"urn:uuid:p{i}") for i in range(n)]


async def history_total(client) -> int:
    return (await client.get("_history")).json()["total"]


async def test_invalid_entry_late_in_a_transaction_stores_nothing(client):
    await client.put("Patient/keep", json={"resourceType": "Patient", "id": "keep"}, headers=JSON)
    before = await history_total(client)
    bad = post({"resourceType": "Observation", "status": "not-a-status"}, "urn:uuid:bad")
    body = bundle(
        "transaction",
        *patients(3),
        {"request": {"method": "DELETE", "url": "Patient/keep"}},
        {
            "resource": {"resourceType": "Patient", "id": "keep", "gender": "male"},
            "request": {"method": "PUT", "url": "Patient/other"},
        },
        bad,
    )
    body["entry"][4]["request"]["url"] = "Patient/new-one"
    body["entry"][4]["resource"]["id"] = "new-one"
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 400
    assert await history_total(client) == before
    assert (await client.get("Patient/keep")).status_code == 200
    assert (await client.get("Patient/new-one")).status_code == 404
    assert (await client.get("Patient")).json()["total"] == 1


async def test_error_names_the_entry_index_and_full_url(client):
    bad = post({"resourceType": "Observation", "status": "not-a-status"}, "urn:uuid:bad")
    response = await client.post(BASE, json=bundle("transaction", *patients(2), bad), headers=JSON)
    assert response.status_code == 400
    issues = response.json()["issue"]
    assert all("Bundle.entry[2] (fullUrl urn:uuid:bad)" in i["diagnostics"] for i in issues)
    expressions = [e for i in issues for e in i["expression"]]
    assert "Bundle.entry[2].resource.status" in expressions
    assert "Bundle.entry[2].resource.code" in expressions


async def test_failed_if_match_late_in_a_transaction_stores_nothing(client):
    await client.put("Patient/v", json={"resourceType": "Patient", "id": "v"}, headers=JSON)
    stale = {
        "resource": {"resourceType": "Patient", "id": "v", "gender": "male"},
        "request": {"method": "PUT", "url": "Patient/v", "ifMatch": 'W/"7"'},
    }
    response = await client.post(
        BASE, json=bundle("transaction", *patients(5), stale), headers=JSON
    )
    assert response.status_code == 412
    assert "Bundle.entry[5]" in response.json()["issue"][0]["diagnostics"]
    assert (await client.get("Patient")).json()["total"] == 1


async def test_entry_without_request_is_400(client):
    body = bundle("transaction", {"resource": {"resourceType": "Patient"}})
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 400
    assert "Bundle.entry[0]" in response.json()["issue"][0]["diagnostics"]


async def test_post_entry_without_resource_is_400(client):
    body = bundle("transaction", {"request": {"method": "POST", "url": "Patient"}})
    response = await client.post(BASE, json=body, headers=JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource"]


async def test_two_entries_writing_the_same_resource_are_400(client):
    put = {
        "resource": {"resourceType": "Patient", "id": "twice"},
        "request": {"method": "PUT", "url": "Patient/twice"},
    }
    response = await client.post(BASE, json=bundle("transaction", put, put), headers=JSON)
    assert response.status_code == 400
    assert (await client.get("Patient/twice")).status_code == 404


async def test_a_store_without_transactions_refuses_with_a_4xx(tmp_path: Path):
    url = f"mongomock://{tmp_path.name}-standalone/fhir?standalone=true"
    app = create_app(Settings(storage=url, auth="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            response = await client.post(
                BASE, json=bundle("transaction", *patients(2)), headers=JSON
            )
            assert response.status_code == 400
            assert "transactions" in response.json()["issue"][0]["diagnostics"]
            assert (await client.get("Patient")).json()["total"] == 0

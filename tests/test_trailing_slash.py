"""A trailing slash names the same thing as the path without it (issue 15, item 6):
``POST [base]/``, ``GET [base]/?_type=``, ``[base]/Patient/``, ``[base]/metadata/``,
``[base]/Patient/123/`` and the rest are served directly, never answered with a ``307``
redirect (fhir.js does not follow one for a POST, so its transaction was lost; fhirpy,
client-py and client-js sent their bodies twice). Authorization applies to them as to
the forms without the slash (https://hl7.org/fhir/R4/http.html).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import BASE, JSON, STORES, storage_url
from tests.live import LiveServer
from tests.security_support import app_on, backend

PATIENT = {"resourceType": "Patient", "identifier": [{"system": "s", "value": "slash"}]}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def transaction(*resources: dict) -> dict:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": r["resourceType"]}}
            for r in resources
        ],
    }


def _no_redirect(response: httpx.Response) -> httpx.Response:
    assert response.status_code not in (301, 302, 307, 308), (
        response.request.method,
        response.request.url,
        response.headers.get("location"),
    )
    return response


async def test_a_transaction_posted_to_base_with_a_slash_is_processed(client):
    response = _no_redirect(await client.post(f"{BASE}/", json=transaction(PATIENT), headers=JSON))
    assert response.status_code == 200, response.text
    assert response.json()["type"] == "transaction-response"
    assert response.json()["entry"][0]["response"]["status"].startswith("201")
    found = await client.get("Patient", params={"identifier": "s|slash"})
    assert found.json()["total"] == 1


async def test_every_level_answers_with_a_trailing_slash(client):
    created = await client.post("Patient", json=PATIENT, headers=JSON)
    id_ = created.json()["id"]

    async def get(path: str, **params: str) -> dict:
        response = _no_redirect(await client.get(f"{BASE}/{path}", params=params))
        assert response.status_code == 200, (path, response.text)
        return response.json()

    assert (await get("", _type="Patient"))["total"] == 1
    assert (await get("Patient/"))["total"] == 1
    assert (await get("metadata/"))["resourceType"] == "CapabilityStatement"
    assert (await get(f"Patient/{id_}/"))["id"] == id_
    assert (await get(f"Patient/{id_}/_history/"))["total"] == 1
    assert (await get(f"Patient/{id_}/_history/1/"))["id"] == id_
    assert (await get("Patient/_history/"))["type"] == "history"
    assert (await get("_history/"))["type"] == "history"
    assert (await get(f"Patient/{id_}/Observation/"))["total"] == 0
    searched = _no_redirect(
        await client.post(f"{BASE}/Patient/_search/", content=f"_id={id_}", headers=FORM)
    )
    assert searched.json()["total"] == 1
    system = _no_redirect(
        await client.post(f"{BASE}/_search/", content="_type=Patient", headers=FORM)
    )
    assert system.json()["total"] == 1


async def test_writes_with_a_trailing_slash_are_done_once(client):
    created = _no_redirect(await client.post(f"{BASE}/Patient/", json=PATIENT, headers=JSON))
    assert created.status_code == 201
    id_ = created.json()["id"]
    updated = _no_redirect(
        await client.put(
            f"{BASE}/Patient/{id_}/", json={**PATIENT, "id": id_, "active": True}, headers=JSON
        )
    )
    assert updated.status_code == 200
    assert updated.json()["meta"]["versionId"] == "2"
    patched = _no_redirect(
        await client.patch(
            f"{BASE}/Patient/{id_}/",
            json={"active": False},
            headers={"content-type": "application/merge-patch+json"},
        )
    )
    assert patched.status_code == 200, patched.text
    deleted = _no_redirect(await client.delete(f"{BASE}/Patient/{id_}/"))
    assert deleted.status_code in (200, 204)
    history = await client.get(f"Patient/{id_}/_history")
    assert history.json()["total"] == 4


async def test_a_browser_request_with_a_slash_is_served_too(client):
    """With ``Origin`` the request goes through the CORS middleware to the inner dispatch."""
    response = _no_redirect(
        await client.post(
            f"{BASE}/", json=transaction(PATIENT), headers={**JSON, "origin": "https://app.example"}
        )
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == "*"


async def test_what_no_route_takes_is_answered_without_a_redirect(client):
    unknown = _no_redirect(await client.get(f"{BASE}/Unknown/"))
    assert unknown.status_code == 404
    assert unknown.json()["resourceType"] == "OperationOutcome"
    wrong_method = _no_redirect(await client.delete(f"{BASE}/"))
    assert wrong_method.status_code == 405
    assert wrong_method.json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("kind", STORES)
async def test_the_slash_forms_need_a_token_as_the_others_do(kind: str, tmp_path: Path):
    async with app_on(storage_url(kind, tmp_path)) as env:
        http = env.http
        for method, path in [
            ("GET", "/fhir/"),
            ("POST", "/fhir/"),
            ("GET", "/fhir/Patient/"),
            ("GET", "/fhir/Patient/p1/"),
            ("GET", "/fhir/Patient/p1/_history/"),
            ("POST", "/fhir/Patient/"),
            ("POST", "/fhir/Patient/_search/"),
            ("GET", "/fhir/_history/"),
        ]:
            body = transaction(PATIENT) if path == "/fhir/" else PATIENT
            response = _no_redirect(
                await http.request(method, path, json=body if method == "POST" else None)
            )
            assert response.status_code == 401, (method, path, response.text)
            assert "WWW-Authenticate" in response.headers
            assert response.json()["resourceType"] == "OperationOutcome"
        metadata = _no_redirect(await http.get("/fhir/metadata/"))
        assert metadata.status_code == 200
        discovery = _no_redirect(await http.get("/fhir/.well-known/smart-configuration/"))
        assert discovery.status_code == 200
        assert "token_endpoint" in discovery.json()
        allowed = await http.get("/fhir/Patient/p1/", headers=backend(env, "system/*.rs"))
        assert allowed.status_code == 200
        assert allowed.json()["id"] == "p1"


@pytest.mark.parametrize("kind", ["sqlite", "mongomock"])
def test_a_live_server_serves_the_slash_forms(kind: str, tmp_path: Path):
    """``fhir-server serve`` (uvicorn): its lifespan still opens the store, and the slash
    forms are answered directly, with and without ``Origin``."""
    storage = storage_url(kind, tmp_path)
    server = LiveServer(storage, tmp_path / "server.log")
    try:
        with httpx.Client(follow_redirects=False, timeout=10) as http:
            posted = _no_redirect(
                http.post(f"{server.base}/", json=transaction(PATIENT), headers=JSON)
            )
            assert posted.status_code == 200, posted.text
            browser = _no_redirect(
                http.get(f"{server.base}/Patient/", headers={"origin": "https://app.example"})
            )
            assert browser.status_code == 200
            assert browser.json()["total"] == 1
            assert _no_redirect(http.get(f"{server.base}/metadata/")).status_code == 200
    finally:
        server.stop()

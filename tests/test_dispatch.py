"""The fast FHIR dispatch in front of the FastAPI router (``fhir_server.routes.FhirDispatch``):
it must answer exactly what the router would, and leave the rest to it
(https://hl7.org/fhir/R4/http.html).
"""

from __future__ import annotations

import random
from pathlib import Path
from urllib.parse import parse_qsl

import httpx

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.routes import query_items
from tests.conftest import BASE, JSON

PATIENT = b'{"resourceType":"Patient","active":true}'


def _outcome(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]["code"]


async def test_every_level_is_served(client):
    created = await client.post("Patient", content=PATIENT, headers=JSON)
    assert created.status_code == 201
    id_ = created.json()["id"]
    assert (await client.get(f"Patient/{id_}")).json()["id"] == id_
    assert (await client.get(f"Patient/{id_}/_history/1")).json()["id"] == id_
    assert (await client.get(f"Patient/{id_}/_history")).json()["total"] == 1
    assert (await client.get("Patient/_history")).json()["type"] == "history"
    assert (await client.get("_history")).json()["type"] == "history"
    assert (await client.get("Patient", params={"_id": id_})).json()["total"] == 1
    assert (await client.get(f"Patient/{id_}/Observation")).json()["total"] == 0
    assert (await client.get("metadata")).json()["resourceType"] == "CapabilityStatement"
    root = await client.get(BASE, params={"_type": "Patient"})
    assert root.json()["total"] == 1
    form = await client.post(
        "Patient/_search",
        content=f"_id={id_}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.json()["total"] == 1


async def test_what_the_dispatch_leaves_is_answered_by_the_router(client):
    # a method no route takes
    response = await client.delete(BASE)
    assert response.status_code == 405
    assert _outcome(response) == "not-supported"
    # an unknown type, on every shape of path
    for path in ("Unknown", "Unknown/1", "Unknown/1/_history", "Unknown/_history"):
        response = await client.get(path)
        assert response.status_code == 404, path
        assert _outcome(response) == "not-supported"
    # too many segments
    response = await client.get("Patient/1/_history/1/extra")
    assert response.status_code == 404
    assert _outcome(response) == "not-found"
    # a type the compartment does not hold
    response = await client.get("Patient/1/Organization")
    assert response.status_code == 404


async def test_discovery_below_fhir_is_not_taken_for_a_read(tmp_path: Path):
    settings = Settings(storage=f"sqlite:///{tmp_path / 'fhir.sqlite3'}", auth="smart")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            response = await http.get("/fhir/.well-known/smart-configuration")
            assert response.status_code == 200
            assert "token_endpoint" in response.json()
            # the FHIR routes behind the dispatch still demand a token
            response = await http.get("/fhir/Patient/1")
            assert response.status_code == 401
            assert "WWW-Authenticate" in response.headers


async def test_below_a_root_path(tmp_path: Path):
    """Served behind a proxy prefix (``uvicorn --root-path /api``): the ASGI path holds
    the prefix, the base URL in the links carries it."""
    settings = Settings(storage=f"sqlite:///{tmp_path / 'fhir.sqlite3'}", auth="off")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, root_path="/api")
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            created = await http.post("/api/fhir/Patient", content=PATIENT, headers=JSON)
            assert created.status_code == 201
            assert created.headers["location"].startswith("http://test/api/fhir/Patient/")
            found = await http.get("/api/fhir/Patient")
            assert found.json()["link"][0]["url"] == "http://test/api/fhir/Patient"


async def test_requests_with_and_without_origin(tmp_path: Path, caplog):
    """Without ``Origin`` the outer dispatch serves the request and logs it; with it, the
    CORS middleware answers as well."""
    settings = Settings(
        storage=f"sqlite:///{tmp_path / 'fhir.sqlite3'}",
        auth="off",
        cors_origins="https://app.example",
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            with caplog.at_level("INFO", logger="fhir_server.access"):
                plain = await http.get("/fhir/Patient", params={"name": "x"})
            assert plain.status_code == 200
            assert "access-control-allow-origin" not in plain.headers
            lines = [r.getMessage() for r in caplog.records if r.name == "fhir_server.access"]
            assert any(line.startswith("GET /fhir/Patient?name=x 200 ") for line in lines)

            cors = await http.get("/fhir/Patient", headers={"origin": "https://app.example"})
            assert cors.status_code == 200
            assert cors.headers["access-control-allow-origin"] == "https://app.example"
            assert "ETag" in cors.headers["access-control-expose-headers"]
            other = await http.get("/fhir/Patient", headers={"origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
            missing = await http.get("/fhir/Patient/nope")
            assert missing.status_code == 404
            assert _outcome(missing) == "not-found"


def test_query_items_read_as_parse_qsl():
    """The endpoints' own query parsing gives exactly what ``parse_qsl`` (Starlette's
    ``QueryParams``) gives, on random strings of the characters that matter."""
    alphabet = ["a", "b", "=", "&", "+", "%", "%2", "%41", "%C3%A9", "%zz", "%20", " ", "é", "|"]
    rng = random.Random(7)
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        raw = text.encode("utf-8")
        expected = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        assert query_items({"query_string": raw}) == expected, text


async def test_pretty_and_format_take_the_last_value(client):
    created = await client.post("Patient", content=PATIENT, headers=JSON)
    id_ = created.json()["id"]
    pretty = await client.get(f"Patient/{id_}?_pretty=false&_pretty=TRUE")
    assert pretty.status_code == 200
    assert pretty.text.startswith('{\n  "resourceType"')
    plain = await client.get(f"Patient/{id_}?_pretty=true&_pretty=false")
    assert plain.text.startswith('{"resourceType"')
    refused = await client.get(f"Patient/{id_}?_format=json&_format=xml")
    assert refused.status_code == 406
    chosen = await client.get(f"Patient/{id_}?_format=xml&_format=application/json")
    assert chosen.headers["content-type"].startswith("application/json")


async def test_telemetry_is_asked_once_at_start_up(tmp_path: Path, monkeypatch):
    """FastAPI's per-request OpenTelemetry check is skipped when no provider is
    configured at start-up, and kept when one is."""
    settings = Settings(storage=f"sqlite:///{tmp_path / 'fhir.sqlite3'}", auth="off")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert app.telemetry_off
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            assert (await http.get("/fhir/Patient")).status_code == 200
    traced = create_app(settings)
    monkeypatch.setattr(traced._native_telemetry, "enabled", lambda: True)
    async with traced.router.lifespan_context(traced):
        assert not traced.telemetry_off

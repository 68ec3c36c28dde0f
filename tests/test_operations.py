"""The operations framework (fhir_server/operations): a declared operation gets its
routes at every level it names and its entries in the CapabilityStatement, from the one
declaration; its handler gets the parameters of the query and of a POSTed Parameters
body, reads through the caller's guarded store, and errors are OperationOutcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fhir_server import operations
from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.operations.base import (
    Context,
    ExtraRoute,
    FhirResponse,
    Invocation,
    Operation,
    OperationDefinition,
    OperationParameter,
)
from resources.errors import invalid
from tests.conftest import BASE, STORES, storage_url

CANONICAL = "http://example.org/OperationDefinition/echo"


async def _echo(ctx: Context, call: Invocation) -> FhirResponse:
    if call.value("fail") == "yes":
        raise invalid("asked to fail", "fail")
    found = None
    if call.id is not None:
        stored = await ctx.store.read(call.type or "", call.id)
        found = stored is not None and not stored.deleted
    return FhirResponse(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "level", "valueString": call.definition.level},
                {"name": "method", "valueString": call.method},
                {"name": "type", "valueString": str(call.type)},
                {"name": "found", "valueString": str(found)},
                *({"name": k, "valueString": v} for k, v in call.params),
            ],
        },
    )


async def _status(ctx: Context, method: str, job: str) -> FhirResponse:
    return FhirResponse(200, {"resourceType": "Parameters", "id": job})


def _definition(level: str, *types: str) -> OperationDefinition:
    return OperationDefinition(
        "echo",
        CANONICAL + ("" if level == "system" else f"-{level}"),
        level,  # type: ignore[arg-type]
        resource_types=types,
        parameters=(OperationParameter("say"),),
        scopes=("system/*.rs",),
        documentation="Says back what it got",
    )


ECHO = Operation(
    (
        _definition("system"),
        _definition("type", "Patient"),
        _definition("instance", "Patient", "Group"),
    ),
    _echo,
    (ExtraRoute(("GET", "DELETE"), "/$echo-status/{job}", _status),),
)


@pytest.fixture(params=STORES)
async def http(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    monkeypatch.setattr(operations, "OPERATIONS", (*operations.OPERATIONS, ECHO))
    capability_statement.cache_clear()
    app = create_app(Settings(storage=storage_url(request.param, tmp_path), auth="off"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
            yield client
    capability_statement.cache_clear()


def _values(response: httpx.Response) -> list[tuple[str, str]]:
    assert response.status_code == 200, response.text
    return [(p["name"], p["valueString"]) for p in response.json()["parameter"]]


async def test_system_level_get_with_query_parameters(http: httpx.AsyncClient) -> None:
    values = _values(await http.get("$echo?say=hi&say=again"))
    assert values[:3] == [("level", "system"), ("method", "GET"), ("type", "None")]
    assert values[4:] == [("say", "hi"), ("say", "again")]


async def test_post_merges_the_parameters_body(http: httpx.AsyncClient) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "say", "valueString": "body"},
            {"name": "patient", "valueReference": {"reference": "Patient/1"}},
            {"name": "flag", "valueBoolean": True},
        ],
    }
    values = _values(await http.post("$echo?say=query", json=body))
    assert values[4:] == [
        ("say", "query"),
        ("say", "body"),
        ("patient", "Patient/1"),
        ("flag", "true"),
    ]


async def test_type_and_instance_levels(http: httpx.AsyncClient) -> None:
    await http.put("Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    assert _values(await http.get("Patient/$echo"))[:3] == [
        ("level", "type"),
        ("method", "GET"),
        ("type", "Patient"),
    ]
    values = _values(await http.post("Patient/p1/$echo"))
    assert values[:4] == [
        ("level", "instance"),
        ("method", "POST"),
        ("type", "Patient"),
        ("found", "True"),
    ]
    assert _values(await http.get("Group/g9/$echo/"))[3] == ("found", "False")
    assert _values(await http.get("Group/g9/$echo"))[2] == ("type", "Group")


async def test_levels_not_declared_are_not_routed(http: httpx.AsyncClient) -> None:
    response = await http.get("Observation/$echo")  # read of an invalid id
    assert response.status_code in (400, 404)
    assert (await http.get("Observation/o1/$echo")).status_code == 404
    assert (await http.get("$nothing")).status_code == 404


async def test_errors_are_operation_outcomes(http: httpx.AsyncClient) -> None:
    response = await http.get("$echo?fail=yes")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["fail"]
    response = await http.post("$echo", json={"resourceType": "Patient"})
    assert response.status_code == 400 and response.json()["resourceType"] == "OperationOutcome"
    response = await http.post(
        "$echo", content=b"{not json", headers={"content-type": "application/fhir+json"}
    )
    assert response.status_code == 400
    response = await http.get("Patient/bad id!/$echo")
    assert response.status_code in (400, 404)


async def test_extra_routes(http: httpx.AsyncClient) -> None:
    response = await http.get("$echo-status/j1", headers={"accept": "application/json"})
    assert response.status_code == 200 and response.json()["id"] == "j1"
    assert (await http.delete("$echo-status/j1")).status_code == 200
    assert (await http.put("$echo-status/j1", json={})).status_code in (404, 405)


async def test_capability_statement_lists_every_level(http: httpx.AsyncClient) -> None:
    rest = (await http.get("metadata")).json()["rest"][0]
    assert {
        "name": "echo",
        "definition": CANONICAL,
        "documentation": "Says back what it got",
    } in rest["operation"]
    by_type: dict[str, Any] = {r["type"]: r for r in rest["resource"]}
    patient = [(o["name"], o["definition"]) for o in by_type["Patient"]["operation"]]
    echoes = [item for item in patient if item[0] == "echo"]  # the server's own ops aside
    assert echoes == [("echo", CANONICAL + "-type"), ("echo", CANONICAL + "-instance")]
    group = [o["definition"] for o in by_type["Group"]["operation"] if o["name"] == "echo"]
    assert group == [CANONICAL + "-instance"]
    assert "operation" not in by_type["Observation"]


async def test_smart_on_needs_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(operations, "OPERATIONS", (ECHO,))
    app = create_app(Settings(storage=storage_url("sqlite", tmp_path), auth="smart"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            assert (await http.get("$echo")).status_code == 401
            assert (await http.get("$echo-status/j1")).status_code == 401
            token, _ = app.state.auth.token_service().issue_access_token(
                issuer=BASE,
                audience=BASE,
                scope="patient/*.rs",
                client_id="app",
                patient="p1",
            )
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.get("Patient/p2/$echo", headers=headers)
            assert _values(response)[3] == ("found", "False")  # the guarded store

"""Hardening of the HTTP layer (security review, issue 14): request bodies of the
authorization server read within a bound (413, OAuth error), JSON nesting limited (400,
never a 500), a client leaving mid-body, a store out of space (507 OperationOutcome,
nothing stored), and the headers every response carries (``nosniff``; ``no-store`` on
FHIR and auth responses); Swagger UI off by default.

The application is driven in-process (``httpx.ASGITransport``, or a bare ASGI call where
the test plays a client that goes away); the socket-level limits are in
``tests/test_security_live.py``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pymongo.errors import OperationFailure

from fhir_server.app import create_app
from fhir_server.config import Settings
from fhir_server.failures import storage_full
from resources import fhir_json
from resources.errors import FhirError
from smart_auth.bodies import MAX_BODY_BYTES, parse_json
from tests.conftest import BASE, JSON
from tests.smart_support import Env, real_app, system_headers

AUTH_POSTS = [
    "/auth/token",
    "/auth/introspect",
    "/auth/revoke",
    "/auth/register",
    "/auth/launch",
    "/auth/authorize",
    "/auth/login",
    "/auth/patient",
    "/auth/consent",
    "/auth/activate",
]
FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with real_app(tmp_path, registration="open") as env:
        yield env


@pytest.fixture
async def open_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The application without authorization, on a SQLite file."""
    app = create_app(Settings(storage=f"sqlite:///{tmp_path}/fhir.sqlite3", auth="off"))
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def http(open_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=open_app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as client:
        yield client


def outcome(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/fhir+json")
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]


def nested(depth: int) -> str:
    """A JSON value of ``depth`` nested arrays."""
    return "[" * depth + "]" * depth


async def chunks(total: int, size: int = 16 * 1024) -> AsyncIterator[bytes]:
    """A streamed (chunked) body of ``total`` bytes, with no Content-Length."""
    sent = 0
    while sent < total:
        piece = min(size, total - sent)
        sent += piece
        yield b"a" * piece


# -- item 8: bodies of the authorization server -------------------------------------------


@pytest.mark.parametrize("path", AUTH_POSTS)
async def test_an_auth_body_over_the_limit_is_413_with_an_oauth_error(env: Env, path: str):
    response = await env.http.post(path, content=b"a" * (MAX_BODY_BYTES + 1), headers=FORM)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"
    assert str(MAX_BODY_BYTES) in response.json()["error_description"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["connection"] == "close"


@pytest.mark.parametrize("path", ["/auth/token", "/auth/revoke", "/auth/register"])
async def test_a_streamed_auth_body_is_refused_at_the_limit(env: Env, path: str):
    """A chunked body (no Content-Length) is read only up to the limit."""
    response = await env.http.post(path, content=chunks(10 * MAX_BODY_BYTES), headers=FORM)
    assert response.status_code == 413
    assert response.json()["error"] == "invalid_request"


async def test_an_auth_body_within_the_limit_reaches_the_endpoint(env: Env):
    body = {"grant_type": "password", "padding": "x" * (MAX_BODY_BYTES - 100)}
    response = await env.http.post("/auth/token", data=body)
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


async def test_an_auth_client_leaving_mid_body_is_no_failure(env: Env, caplog):
    app = env.data["app"]
    sent = await _asgi_post(app, "/auth/token", [b"grant_type=client_cre"], FORM)
    assert sent[0]["status"] == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- item 11: JSON nesting ---------------------------------------------------------------


def test_check_depth_is_exact_around_the_limit():
    fhir_json.check_depth(nested(100).encode(), 100)
    fhir_json.check_depth(("[" + ",".join([nested(99)] * 50) + "]").encode(), 100)
    with pytest.raises(FhirError) as error:
        fhir_json.check_depth(nested(101).encode(), 100)
    assert error.value.status == 400
    # interleaved objects and arrays, siblings at every level
    deep = '{"a":[1,' * 60 + "2" + "]}" * 60
    fhir_json.check_depth(deep.encode(), 120)
    with pytest.raises(FhirError):
        fhir_json.check_depth(deep.encode(), 119)


def test_check_depth_ignores_brackets_in_strings():
    text = json.dumps({"a": ["[[[[{{{{" * 40, 'q"\\[' * 30, "\\" * 7 + "[" * 200]})
    fhir_json.check_depth(text.encode(), 8)
    fhir_json.check_depth(json.dumps("[" * 200).encode(), 8)  # no bracket outside strings


def test_check_depth_agrees_with_the_parsed_depth():
    import random

    rng = random.Random(14)

    def value(depth: int) -> Any:
        if depth == 0 or rng.random() < 0.2:
            return rng.choice([1, "x]", 'q"{', None, "\\", 2.5])
        if rng.random() < 0.5:
            return [value(depth - 1) for _ in range(rng.randint(0, 3))]
        return {f"k{i}": value(depth - 1) for i in range(rng.randint(0, 3))}

    def depth_of(item: Any) -> int:
        if isinstance(item, dict):
            return 1 + max((depth_of(v) for v in item.values()), default=0)
        if isinstance(item, list):
            return 1 + max((depth_of(v) for v in item), default=0)
        return 0

    for _ in range(300):
        item = value(rng.randint(1, 14))
        text = json.dumps(item).encode()
        depth = depth_of(item)
        fhir_json.check_depth(text, depth)
        if depth > 1:
            with pytest.raises(FhirError):
                fhir_json.check_depth(text, depth - 1)


@pytest.mark.parametrize(
    "method,path,content_type",
    [
        ("POST", "Patient", "application/fhir+json"),
        ("PUT", "Patient/deep", "application/fhir+json"),
        ("POST", BASE, "application/fhir+json"),
        ("PATCH", "Patient/deep", "application/json-patch+json"),
    ],
)
async def test_json_nested_10000_deep_is_400(http, method, path, content_type):
    body = '{"resourceType":"Patient","extension":' + nested(10_000) + "}"
    if content_type.startswith("application/json-patch"):
        body = '[{"op":"add","path":"/x","value":' + nested(10_000) + "}]"
    response = await http.request(
        method, path, content=body.encode(), headers={"content-type": content_type}
    )
    assert response.status_code == 400
    issue = outcome(response)
    assert issue["code"] == "invalid"
    assert "deeper than 100" in issue["diagnostics"]
    assert (await http.get("Patient/_history")).json()["total"] == 0


async def test_json_deeper_than_the_setting_is_400_and_within_it_is_stored(tmp_path):
    settings = Settings(storage=f"sqlite:///{tmp_path}/fhir.sqlite3", auth="off", max_json_depth=20)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:

            def patient(levels: int) -> dict[str, Any]:
                # extensions on extensions: 2 levels each (array, object), root object
                extension: dict[str, Any] = {"url": "http://e.org/x", "valueString": "v"}
                for _ in range(levels - 1):
                    extension = {"url": "http://e.org/x", "extension": [extension]}
                return {"resourceType": "Patient", "extension": [extension]}

            ok = await http.post("Patient", content=json.dumps(patient(9)), headers=JSON)
            assert ok.status_code == 201, ok.text  # 19 levels
            deep = await http.post("Patient", content=json.dumps(patient(10)), headers=JSON)
            assert deep.status_code == 400  # 21 levels
            assert "deeper than 20" in outcome(deep)["diagnostics"]


async def test_a_deep_transaction_entry_is_400_and_nothing_is_stored(http):
    resource = '{"resourceType":"Patient","extension":' + nested(200) + "}"
    bundle = (
        '{"resourceType":"Bundle","type":"transaction","entry":['
        '{"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}},'
        f'{{"resource":{resource},"request":{{"method":"POST","url":"Patient"}}}}]}}'
    )
    response = await http.post(BASE, content=bundle.encode(), headers=JSON)
    assert response.status_code == 400
    assert "deeper than 100" in outcome(response)["diagnostics"]
    assert (await http.get("Patient/_history")).json()["total"] == 0


def test_the_parser_own_recursion_limit_is_a_400():
    with pytest.raises(FhirError) as error:
        fhir_json.loads('{"a":' + nested(100_000) + "}")
    assert error.value.status == 400


def test_auth_json_nesting_is_a_value_error():
    assert parse_json(b'{"jwks":{"keys":[{"kty":"RSA"}]}}') == {"jwks": {"keys": [{"kty": "RSA"}]}}
    for depth in (33, 10_000):
        with pytest.raises(ValueError, match="deeper than 32"):
            parse_json(('{"a":' + nested(depth) + "}").encode())


async def test_a_registration_nested_10000_deep_is_400(env: Env):
    body = '{"redirect_uris":["https://app.example/cb"],"jwks":' + nested(10_000) + "}"
    response = await env.http.post(
        "/auth/register", content=body.encode(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


async def test_a_launch_context_nested_10000_deep_is_400(env: Env):
    body = '{"patient":' + nested(10_000) + "}"
    response = await env.http.post(
        "/auth/launch",
        content=body.encode(),
        headers={"content-type": "application/json", **system_headers(env.auth)},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "deeper than 32" in response.json()["error_description"]


# -- item 11: a client leaving mid-body ----------------------------------------------------


async def _asgi_post(
    app: FastAPI, path: str, pieces: list[bytes], headers: dict[str, str]
) -> list[dict[str, Any]]:
    """POST ``pieces`` of a body, then the client disconnects; the messages sent back."""
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": piece, "more_body": True} for piece in pieces
    ]
    messages.append({"type": "http.disconnect"})
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if len(messages) > 1 else messages[0]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.encode(), v.encode()) for k, v in {"host": "testserver", **headers}.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("origin", [False, True])
async def test_a_client_leaving_mid_body_is_no_failure(open_app, caplog, origin):
    """Whether the fast route or the middleware stack serves it (a browser's request
    carries ``Origin``)."""
    headers = {"content-type": "application/fhir+json"}
    if origin:
        headers["origin"] = "https://app.example"
    sent = await _asgi_post(open_app, "/fhir/Patient", [b'{"resourceType":'], headers)
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["issue"][0]["code"] == "incomplete"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- item 11: storage full -----------------------------------------------------------------


def _fill_up(app: FastAPI) -> int:
    """Let the SQLite file grow by no more pages (SQLite answers SQLITE_FULL, as on a full
    disk); returns the page count it had."""
    writer: sqlite3.Connection = app.state.store._writer
    pages = writer.execute("PRAGMA page_count").fetchone()[0]
    writer.execute(f"PRAGMA max_page_count={pages}")
    return pages


def _free_space(app: FastAPI) -> None:
    app.state.store._writer.execute("PRAGMA max_page_count=4294967294")


def _big_patient(n: int, id_: str | None = None) -> bytes:
    patient = {"resourceType": "Patient", "name": [{"text": f"{n}-" + "x" * 300_000}]}
    if id_ is not None:
        patient["id"] = id_
    return json.dumps(patient).encode()


async def test_a_write_to_a_full_store_is_507_and_stores_nothing(open_app, http, caplog):
    kept = await http.post("Patient", content=_big_patient(0), headers=JSON)
    assert kept.status_code == 201
    _fill_up(open_app)
    response = await http.post("Patient", content=_big_patient(1), headers=JSON)
    assert response.status_code == 507
    issue = outcome(response)
    assert issue["code"] == "no-store"
    assert "sqlite" not in issue["diagnostics"].lower()
    id_ = kept.json()["id"]
    update = await http.put(f"Patient/{id_}", content=_big_patient(2, id_), headers=JSON)
    assert update.status_code == 507
    history = (await http.get("Patient/_history")).json()
    assert history["total"] == 1
    assert "storage full" in caplog.text
    _free_space(open_app)
    again = await http.post("Patient", content=_big_patient(3), headers=JSON)
    assert again.status_code == 201
    assert (await http.get("Patient/_history")).json()["total"] == 2


async def test_a_transaction_to_a_full_store_is_507_and_a_batch_entry_too(open_app, http):
    _fill_up(open_app)
    entries = [
        {
            "resource": json.loads(_big_patient(n)),
            "request": {"method": "POST", "url": "Patient"},
        }
        for n in range(2)
    ]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    response = await http.post(BASE, content=json.dumps(transaction), headers=JSON)
    assert response.status_code == 507
    assert outcome(response)["code"] == "no-store"
    batch = {**transaction, "type": "batch"}
    response = await http.post(BASE, content=json.dumps(batch), headers=JSON)
    assert response.status_code == 200
    for entry in response.json()["entry"]:
        assert entry["response"]["status"].startswith("507")
        assert entry["response"]["outcome"]["issue"][0]["code"] == "no-store"
    assert (await http.get("Patient/_history")).json()["total"] == 0


def test_storage_full_knows_sqlite_and_mongodb_errors():
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE t (x)")
    connection.execute("PRAGMA max_page_count=2")
    with pytest.raises(sqlite3.Error) as full:
        connection.executemany("INSERT INTO t VALUES (?)", [("x" * 5000,)] * 10)
    assert storage_full(full.value)
    assert not storage_full(sqlite3.OperationalError("database is locked"))
    assert storage_full(OperationFailure("out of disk space", code=14031))
    assert not storage_full(OperationFailure("write conflict", code=112))
    assert not storage_full(RuntimeError("no"))


# -- item 16: response headers, /docs ------------------------------------------------------


async def test_fhir_responses_are_no_store_and_nosniff(http):
    created = await http.post("Patient", content=b'{"resourceType":"Patient"}', headers=JSON)
    id_ = created.json()["id"]
    responses = [
        created,
        await http.get(f"Patient/{id_}"),
        await http.get(f"Patient/{id_}", headers={"if-none-match": 'W/"1"'}),  # 304
        await http.get("Patient", params={"_id": id_}),
        await http.get(f"Patient/{id_}/_history"),
        await http.get("Patient/nope"),  # 404 OperationOutcome
        await http.get("NotAType/x"),  # answered by the framework's router
        await http.post("Patient", content=b"{", headers=JSON),  # 400
        await http.get("metadata"),
        await http.get(f"Patient/{id_}", headers={"origin": "https://app.example"}),
    ]
    for response in responses:
        assert response.headers["cache-control"] == "no-store", response.request.url
        assert response.headers["x-content-type-options"] == "nosniff", response.request.url
        assert response.headers.get_list("x-content-type-options") == ["nosniff"]


async def test_every_response_is_nosniff_and_auth_responses_no_store(env: Env):
    responses = {
        "token": await env.http.post("/auth/token", data={"grant_type": "nope"}),
        "login page": await env.http.get("/auth/login"),
        "unknown auth path": await env.http.get("/auth/nothing-here"),
        "openapi": await env.http.get("http://testserver/openapi.json"),
        "jwks": await env.http.get("/auth/jwks"),
        "smart configuration": await env.http.get("/fhir/.well-known/smart-configuration"),
        "preflight": await env.http.options(
            "/fhir/Patient",
            headers={
                "origin": "https://app.example",
                "access-control-request-method": "GET",
            },
        ),
    }
    for name, response in responses.items():
        assert response.headers.get_list("x-content-type-options") == ["nosniff"], name
    for name in ("token", "login page", "unknown auth path"):
        assert responses[name].headers["cache-control"] == "no-store", name
    # the discovery documents and the JWKS may be cached: they name no one
    assert responses["jwks"].headers["cache-control"] == "max-age=300"
    assert responses["smart configuration"].headers["cache-control"] == "max-age=300"


async def test_swagger_ui_is_off_by_default_and_the_openapi_document_public(http):
    assert (await http.get("http://testserver/docs")).status_code == 404
    assert (await http.get("http://testserver/openapi.json")).status_code == 200


async def test_swagger_ui_can_be_turned_on(tmp_path):
    settings = Settings(storage=f"sqlite:///{tmp_path}/fhir.sqlite3", auth="off", docs=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
            page = await http.get("http://testserver/docs")
            assert page.status_code == 200
            assert "swagger-ui" in page.text
            assert page.headers["x-content-type-options"] == "nosniff"


async def test_an_auth_write_to_a_full_store_is_503_and_the_store_recovers(env: Env):
    """The authorization server's own writes (a registration here): SQLITE_FULL is a
    ``temporarily_unavailable`` (503), and the next write after space is freed succeeds
    (a failed write leaves no transaction open)."""
    connection: sqlite3.Connection = env.store._conn
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count={pages}")
    metadata = {
        "redirect_uris": ["https://app.example/cb"],
        "client_name": "An app",
        "token_endpoint_auth_method": "none",
        "scope": "launch/patient patient/*.rs",
    }
    statuses = []
    for _ in range(200):
        response = await env.http.post("/auth/register", json=metadata)
        statuses.append(response.status_code)
        if response.status_code != 201:
            break
    assert statuses[-1] == 503, statuses
    assert response.json()["error"] == "temporarily_unavailable"
    assert response.headers["retry-after"] == "60"
    connection.execute("PRAGMA max_page_count=4294967294")
    assert (await env.http.post("/auth/register", json=metadata)).status_code == 201

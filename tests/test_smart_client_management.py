"""RFC 7592 client registration management and OpenID Connect UserInfo (issue 21), over
HTTP against the real application with SMART on, on every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smart_auth.registration import issue_token
from tests.conftest import STORES, storage_url
from tests.security_support import app_on, offline_launch, refresh, register, staff, token_for
from tests.smart_support import REDIRECT, Env, add_user

APP = {
    "client_name": "Dyn app",
    "redirect_uris": [REDIRECT],
    "token_endpoint_auth_method": "none",
    "scope": "launch/patient openid fhirUser offline_access patient/*.rs",
}


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path), registration="open") as env:
        yield env


async def _registered(env: Env) -> dict:
    response = await register(env, {}, APP)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["registration_client_uri"].endswith(f"/auth/register/{body['client_id']}")
    assert body["registration_access_token"]
    return body


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_client_reads_its_registration(env: Env) -> None:
    client = await _registered(env)
    path = f"/auth/register/{client['client_id']}"
    response = await env.http.get(path, headers=_bearer(client["registration_access_token"]))
    assert response.status_code == 200
    body = response.json()
    assert body["client_id"] == client["client_id"]
    assert body["client_name"] == "Dyn app"
    assert "registration_access_token" not in body
    assert not any("hash" in key or key.startswith("_") for key in body)


async def test_a_wrong_token_or_unknown_client_is_401_alike(env: Env) -> None:
    client = await _registered(env)
    other = await _registered(env)
    path = f"/auth/register/{client['client_id']}"
    wrong = await env.http.get(path, headers=_bearer(other["registration_access_token"]))
    unknown = await env.http.get(
        "/auth/register/nope", headers=_bearer(client["registration_access_token"])
    )
    missing = await env.http.get(path)
    for response in (wrong, unknown, missing):
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
    assert wrong.json() == unknown.json()


async def test_an_update_narrows_but_never_widens(env: Env) -> None:
    client = await _registered(env)
    path = f"/auth/register/{client['client_id']}"
    headers = _bearer(client["registration_access_token"])
    narrower = {
        **APP,
        "client_id": client["client_id"],
        "client_name": "Renamed",
        "scope": "launch/patient openid fhirUser patient/Observation.rs",
    }
    response = await env.http.put(path, json=narrower, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["client_name"] == "Renamed"
    stored = env.store.get_client(client["client_id"])
    assert stored is not None and stored.scope == narrower["scope"]
    wider = {**narrower, "scope": "launch/patient patient/*.cruds"}
    refused = await env.http.put(path, json=wider, headers=headers)
    assert refused.status_code == 400
    assert "scope can only narrow" in refused.json()["error_description"]
    secret = {**narrower, "token_endpoint_auth_method": "client_secret_basic"}
    assert (await env.http.put(path, json=secret, headers=headers)).status_code == 400
    mismatch = {**narrower, "client_id": "someone-else"}
    assert (await env.http.put(path, json=mismatch, headers=headers)).status_code == 400
    after = env.store.get_client(client["client_id"])
    assert after is not None and after.scope == narrower["scope"]
    assert after.name == "Renamed"


async def test_a_delete_ends_the_client_and_its_grants(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id, tokens = await offline_launch(env, "alice")
    record = env.store.get_client(client_id)
    assert record is not None
    token = issue_token(record)
    env.store.update_client(record)
    path = f"/auth/register/{client_id}"
    response = await env.http.delete(path, headers=_bearer(token))
    assert response.status_code == 204
    assert env.store.get_client(client_id) is None
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code in (400, 401)
    read = await env.http.get("/fhir/Patient/p1", headers=_bearer(tokens["access_token"]))
    assert read.status_code == 401
    again = await env.http.get(path, headers=_bearer(token))
    assert again.status_code == 401


async def test_userinfo_names_the_signed_in_user(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    _, tokens = await offline_launch(env, "alice")
    for method in ("GET", "POST"):
        response = await env.http.request(
            method, "/auth/userinfo", headers=_bearer(tokens["access_token"])
        )
        assert response.status_code == 200, response.text
        claims = response.json()
        assert claims["fhirUser"].endswith("/fhir/Patient/p1")
        assert claims["name"] == "Alice Smith"
        assert claims["sub"]
    config = (await env.http.get("/fhir/.well-known/openid-configuration")).json()
    assert config["userinfo_endpoint"].endswith("/auth/userinfo")


async def test_userinfo_needs_a_user_token_with_openid(env: Env) -> None:
    no_openid = staff(env, "user/*.rs")
    response = await env.http.get("/auth/userinfo", headers=no_openid)
    assert response.status_code == 403
    assert response.json()["error"] == "insufficient_scope"
    backend = token_for(env, "openid system/*.rs")
    assert (await env.http.get("/auth/userinfo", headers=backend)).status_code == 403
    assert (await env.http.get("/auth/userinfo")).status_code == 401
    bad = await env.http.get("/auth/userinfo", headers=_bearer("not-a-token"))
    assert bad.status_code == 401

"""The authorization code flow end to end over HTTP against the real application
(``create_app(Settings(auth="smart"))``, FHIR data seeded through the API): standalone
launch with PKCE, login with CSRF, consent, code, token, refresh rotation, the token
used on the FHIR API; and what must be refused (RFC 6749, RFC 7636, SMART App Launch
2.x)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from smart_auth.service import AuthError
from tests.smart_support import (
    BASE,
    REDIRECT,
    Env,
    add_user,
    auth_params,
    bearer_of,
    consent,
    exchange,
    get_code,
    login,
    pkce,
    public_app,
    real_app,
    redirect_params,
    start,
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with real_app(tmp_path) as env:
        yield env


async def test_standalone_launch_gives_patient_context_tokens(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge), nonce="n-1")
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["patient"] == "p1"
    assert set(body["scope"].split()) == {
        "launch/patient",
        "openid",
        "fhirUser",
        "offline_access",
        "patient/*.rs",
    }
    assert body["refresh_token"]
    policy = env.auth.authenticate(f"Bearer {body['access_token']}", BASE)
    assert policy.patient == "p1"
    assert policy.fhir_user == "Patient/p1"
    assert policy.client_id == client_id
    jwks = (await env.http.get("/auth/jwks")).json()
    id_token = jwt.decode(body["id_token"], KeySet.import_key_set(jwks))
    assert id_token.claims["aud"] == client_id
    assert id_token.claims["nonce"] == "n-1"
    assert id_token.claims["fhirUser"] == f"{BASE}/Patient/p1"
    assert id_token.claims["iss"] == BASE
    # the token opens the patient's record on the FHIR API, and only that record
    patient = await env.http.get("/fhir/Patient/p1", headers=bearer_of(body))
    assert patient.status_code == 200, patient.text
    assert patient.json()["name"][0]["family"] == "Smith"
    other = await env.http.get("/fhir/Patient/p2", headers=bearer_of(body))
    assert other.status_code == 404


async def test_code_is_single_use(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    first = await exchange(env.http, client_id, code, verifier)
    assert first.status_code == 200
    second = await exchange(env.http, client_id, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # the replay revoked the refresh token issued from that code
    refreshed = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first.json()["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.status_code == 400


async def test_wrong_verifier_is_refused(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    other, _ = pkce()
    response = await exchange(env.http, client_id, code, other)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    missing = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
        },
    )
    assert missing.status_code == 400


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"aud": "https://elsewhere.example/fhir"}, "invalid_request"),
        ({"aud": None}, "invalid_request"),
        ({"scope": "patient/Observation.sr"}, "invalid_scope"),
        ({"scope": "system/*.rs"}, "invalid_scope"),
        ({"launch": "no-such-launch", "scope": "launch openid"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ],
)
async def test_bad_authorization_requests_go_back_with_an_error(
    env: Env, change: dict[str, str | None], error: str
) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    params = auth_params(client_id, challenge)
    for key, value in change.items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    response = await start(env.http, params)
    answer = redirect_params(response)
    assert answer["error"] == error
    assert answer["state"] == "st-123"


async def test_unregistered_redirect_uri_is_never_redirected_to(env: Env) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    for params in (
        auth_params(client_id, challenge, redirect_uri="https://evil.example/cb"),
        auth_params(client_id, challenge, redirect_uri=REDIRECT + "/x", aud="https://bad"),
        auth_params("no-such-client", challenge),
    ):
        response = await start(env.http, params)
        assert response.status_code == 400
        assert "location" not in response.headers
        assert "cannot be completed" in response.text


async def test_refresh_tokens_rotate_and_reuse_revokes_the_family(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    first = (await exchange(env.http, client_id, code, verifier)).json()

    async def refresh(token: str, **extra: str) -> httpx.Response:
        data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
        return await env.http.post("/auth/token", data={**data, **extra})

    second = await refresh(first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"]
    assert body["patient"] == "p1"
    narrower = await refresh(body["refresh_token"], scope="patient/*.rs offline_access")
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "patient/*.rs offline_access"
    third = narrower.json()["refresh_token"]
    # presenting a rotated token again: refused, and the live one dies with it
    reused = await refresh(first["refresh_token"])
    assert reused.status_code == 400
    assert reused.json()["error"] == "invalid_grant"
    assert (await refresh(third)).status_code == 400


async def test_refresh_scope_cannot_grow(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    first = (await exchange(env.http, client_id, code, verifier)).json()
    response = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
            "scope": "patient/*.cruds offline_access",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


async def test_no_refresh_token_without_offline_or_online_access(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(
        env, client_id, "alice", (verifier, challenge), scope="launch/patient patient/*.rs"
    )
    body = (await exchange(env.http, client_id, code, verifier)).json()
    assert "refresh_token" not in body
    assert "id_token" not in body


async def test_unticked_scopes_are_not_granted(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    scope = "launch/patient openid patient/Observation.rs?category=laboratory patient/Condition.rs"
    await start(env.http, auth_params(client_id, challenge, scope=scope))
    await login(env.http, "alice")
    page = await env.http.get("/auth/consent")
    assert "lab results" in page.text
    assert 'lang="en"' in page.text
    answer = redirect_params(await consent(env.http, untick=("patient/Condition.rs",)))
    body = (await exchange(env.http, client_id, answer["code"], verifier)).json()
    assert body["scope"] == "launch/patient openid patient/Observation.rs?category=laboratory"


async def test_deny_sends_access_denied(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    await login(env.http, "alice")
    answer = redirect_params(await consent(env.http, decision="deny"))
    assert answer["error"] == "access_denied"
    assert answer["state"] == "st-123"


async def test_forms_need_the_session_csrf_token(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    forged = await env.http.post(
        "/auth/login", data={"csrf": "forged", "username": "alice", "password": "x" * 10}
    )
    assert forged.status_code == 403
    await login(env.http, "alice")
    forged = await env.http.post("/auth/consent", data={"decision": "allow"})
    assert forged.status_code == 403


async def test_authorize_post_is_supported(env: Env) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    response = await env.http.post("/auth/authorize", data=auth_params(client_id, challenge))
    assert response.status_code == 303
    assert response.headers["location"].endswith("/auth/login")


async def test_tampered_session_cookie_is_refused(env: Env) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    cookie = env.http.cookies.get("smart_auth_session")
    assert cookie
    payload, kid, signature = cookie.split(".")
    env.http.cookies.clear()
    env.http.cookies.set("smart_auth_session", f"{payload}x.{kid}.{signature}", path="/auth")
    assert (await env.http.get("/auth/login")).status_code == 400


async def test_token_endpoint_errors_are_oauth_json(env: Env) -> None:
    cases = [
        {"grant_type": "authorization_code", "code": "nope", "client_id": "nobody"},
        {"grant_type": "password", "username": "a", "password": "b"},
        {"grant_type": "refresh_token", "refresh_token": "x" * 5000, "client_id": "nobody"},
        {},
    ]
    for data in cases:
        response = await env.http.post("/auth/token", data=data)
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["error"]
    response = await env.http.post("/auth/token", json={"grant_type": "client_credentials"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


async def test_authenticate_refuses_bad_tokens(env: Env) -> None:
    for header in (None, "Basic abc", "Bearer not.a.jwt", "Bearer "):
        with pytest.raises(AuthError) as caught:
            env.auth.authenticate(header, BASE)
        assert caught.value.status == 401
        assert caught.value.www_authenticate and caught.value.www_authenticate.startswith("Bearer")
    token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE, audience="https://other.example/fhir", client_id="c", scope="patient/*.rs"
    )
    with pytest.raises(AuthError):
        env.auth.authenticate(f"Bearer {token}", BASE)


async def test_discovery_documents(env: Env) -> None:
    config = (await env.http.get("/fhir/.well-known/smart-configuration")).json()
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert config["token_endpoint"] == "http://testserver/auth/token"
    assert config["authorization_endpoint"] == "http://testserver/auth/authorize"
    assert config["registration_endpoint"] == "http://testserver/auth/register"
    assert "launch-standalone" in config["capabilities"]
    assert "permission-v2" in config["capabilities"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert config["issuer"] == BASE
    oidc = (await env.http.get("/fhir/.well-known/openid-configuration")).json()
    assert oidc["jwks_uri"] == "http://testserver/auth/jwks"
    # the CapabilityStatement served without a token carries the same endpoints
    metadata = await env.http.get("/fhir/metadata")
    assert metadata.status_code == 200
    security = metadata.json()["rest"][0]["security"]
    assert security == env.auth.security(BASE)
    coding = security["service"][0]["coding"][0]
    assert coding["code"] == "SMART-on-FHIR"
    assert coding["system"] == "http://terminology.hl7.org/CodeSystem/restful-security-service"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["authorize"] == "http://testserver/auth/authorize"
    assert uris["token"] == "http://testserver/auth/token"
    assert security["extension"][0]["url"] == (
        "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    )


async def test_fhir_api_needs_a_valid_token(env: Env) -> None:
    for headers in ({}, {"Authorization": "Bearer not.a.jwt"}, {"Authorization": "Basic eA=="}):
        response = await env.http.get("/fhir/Patient/p1", headers=headers)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["resourceType"] == "OperationOutcome"
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    tokens = (await exchange(env.http, client_id, code, verifier)).json()
    assert (await env.http.get("/fhir/Patient/p1", headers=bearer_of(tokens))).status_code == 200
    revoked = await env.http.post(
        "/auth/revoke", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    # revocations reach token checks within a bounded delay (read at most every 2 s)
    deadline = time.monotonic() + 10
    while True:
        response = await env.http.get("/fhir/Patient/p1", headers=bearer_of(tokens))
        if response.status_code == 401 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    assert response.status_code == 401

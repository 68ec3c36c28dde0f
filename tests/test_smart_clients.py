"""Confidential clients: client_secret_basic, private_key_jwt (RFC 7523, RS384 and
ES384, jwks and jwks_uri), SMART Backend Services (client_credentials with system/
scopes), introspection (RFC 7662), revocation (RFC 7009) and dynamic registration
(RFC 7591) under each policy - on the real application (``create_app`` with
``auth="smart"``), whose bearer-token check the issued tokens must pass."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from smart_auth.admin import AdminError, create_client
from tests.smart_support import (
    ASSERTION_TYPE,
    BASE,
    REDIRECT,
    Env,
    add_user,
    assertion,
    bearer_of,
    ec_key,
    exchange,
    get_code,
    pkce,
    public_app,
    public_jwks,
    real_app,
    rsa_key,
    static_server,
)


@pytest.fixture
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    policy = getattr(request, "param", "token")
    # the tests' jwks_uri server runs on 127.0.0.1, which outbound requests need allowed
    async with real_app(tmp_path, registration=policy, outbound_allow="127.0.0.1") as env:
        yield env


def backend(env: Env, key: Any, scope: str = "system/*.rs", **kwargs: Any) -> str:
    jwks = kwargs.pop("jwks", public_jwks(key))
    return create_client(
        env.store, "EHR sync", auth="private_key_jwt", jwks=jwks, scope=scope, **kwargs
    )["client_id"]


async def client_credentials(env: Env, client_assertion: str, scope: str) -> httpx.Response:
    return await env.http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion,
        },
    )


@pytest.mark.parametrize(("make_key", "alg"), [(rsa_key, "RS384"), (ec_key, "ES384")])
async def test_backend_service_gets_system_token(env: Env, make_key: Any, alg: str) -> None:
    key = make_key()
    client_id = backend(env, key)
    response = await client_credentials(env, assertion(key, client_id, alg=alg), "system/*.rs")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "system/*.rs"
    assert body["expires_in"] <= 300
    assert "refresh_token" not in body
    policy = env.auth.authenticate(f"Bearer {body['access_token']}", BASE)
    assert policy.subject is None
    assert [r.context for r in policy.rules] == ["system"]
    # a backend service reads across patients, and .rs cannot write
    found = await env.http.get("/fhir/Observation", headers=bearer_of(body))
    assert found.status_code == 200, found.text
    assert {e["resource"]["id"] for e in found.json()["entry"]} == {"o1", "o1b", "o2"}
    write = await env.http.put(
        "/fhir/Patient/p9",
        json={"resourceType": "Patient", "id": "p9"},
        headers=bearer_of(body),
    )
    assert write.status_code == 403, write.text


async def test_backend_scope_is_narrowed_to_registration(env: Env) -> None:
    key = rsa_key()
    client_id = backend(env, key, scope="system/Observation.rs")
    response = await client_credentials(
        env, assertion(key, client_id, alg="RS384"), "system/*.cruds"
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Observation.rs"
    refused = await client_credentials(env, assertion(key, client_id, alg="RS384"), "patient/*.rs")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_scope"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"lifetime": 600}, "exp"),
        ({"aud": "https://elsewhere.example/token"}, "aud"),
        ({"alg": "RS256"}, "RS384"),
    ],
)
async def test_bad_assertions_are_refused(env: Env, change: dict[str, Any], reason: str) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    response = await client_credentials(
        env, assertion(key, client_id, **{"alg": "RS384", **change}), "system/*.rs"
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"
    assert reason in response.json()["error_description"]


async def test_replayed_jti_is_refused(env: Env) -> None:
    key = ec_key()
    client_id = backend(env, key)
    signed = assertion(key, client_id, alg="ES384", jti="once")
    assert (await client_credentials(env, signed, "system/*.rs")).status_code == 200
    replay = await client_credentials(
        env, assertion(key, client_id, alg="ES384", jti="once"), "system/*.rs"
    )
    assert replay.status_code in (400, 401)
    assert "jti" in replay.json()["error_description"]


async def test_assertion_signed_by_another_key_is_refused(env: Env) -> None:
    key, other = rsa_key(), rsa_key()
    client_id = backend(env, key)
    forged = assertion(other, client_id, alg="RS384")
    response = await client_credentials(env, forged, "system/*.rs")
    assert response.json()["error"] == "invalid_client"


async def test_keys_from_jwks_uri(env: Env) -> None:
    key = ec_key()
    with static_server() as backend_site:
        backend_site.documents["/jwks.json"] = (
            "application/json",
            json.dumps(public_jwks(key)).encode(),
        )
        jwks_uri = f"{backend_site.origin}/jwks.json"
        client_id = create_client(
            env.store, "Bulk", auth="private_key_jwt", jwks_uri=jwks_uri, scope="system/*.rs"
        )["client_id"]
        response = await client_credentials(
            env, assertion(key, client_id, alg="ES384"), "system/*.rs"
        )
        assert response.status_code == 200, response.text
        assert backend_site.requests == ["/jwks.json"]
        # a key the document does not hold is refused (after one refetch at most)
        other = ec_key()
        forged = await client_credentials(
            env, assertion(other, client_id, alg="ES384"), "system/*.rs"
        )
        assert forged.json()["error"] == "invalid_client"


async def test_a_jwks_uri_is_fetched_only_over_https_or_loopback(env: Env) -> None:
    """No server-side requests to arbitrary http addresses (SSRF) on a client's say-so."""
    with pytest.raises(AdminError):
        create_client(
            env.store,
            "Bulk",
            auth="private_key_jwt",
            jwks_uri="http://169.254.169.254/latest/meta-data",
            scope="system/*.rs",
        )
    key = ec_key()
    client = create_client(
        env.store,
        "Bulk",
        auth="private_key_jwt",
        jwks_uri="https://x.example/",
        scope="system/*.rs",
    )
    record = env.store.get_client(client["client_id"])
    assert record is not None
    env.store.delete_client(client["client_id"])
    record.jwks_uri = "http://169.254.169.254/latest/meta-data"  # e.g. an older record
    env.store.add_client(record)
    response = await client_credentials(
        env, assertion(key, client["client_id"], alg="ES384"), "system/*.rs"
    )
    assert response.status_code in (400, 401)
    assert "https" in response.json()["error_description"]


async def test_public_client_cannot_use_client_credentials(env: Env) -> None:
    client_id = public_app(env.store)
    response = await env.http.post(
        "/auth/token", data={"grant_type": "client_credentials", "client_id": client_id}
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "unauthorized_client")


def basic(client_id: str, secret: str) -> dict[str, str]:
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


async def test_confidential_symmetric_app(env: Env) -> None:
    client = create_client(
        env.store, "Clinic app", auth="client_secret_basic", redirect_uris=[REDIRECT]
    )
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client["client_id"], "alice", (verifier, challenge))
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
    }
    wrong = await env.http.post(
        "/auth/token", data=data, headers=basic(client["client_id"], "nope")
    )
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"
    # the code was not used up by a failed client authentication
    good = await env.http.post(
        "/auth/token", data=data, headers=basic(client["client_id"], client["client_secret"])
    )
    assert good.status_code == 200, good.text


async def test_asymmetric_app_with_private_key_jwt(env: Env) -> None:
    key = rsa_key()
    client_id = create_client(
        env.store,
        "Asym app",
        auth="private_key_jwt",
        jwks=public_jwks(key),
        redirect_uris=[REDIRECT],
    )["client_id"]
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    response = await exchange(
        env.http,
        client_id,
        code,
        verifier,
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=assertion(key, client_id, alg="RS384"),
    )
    assert response.status_code == 200, response.text


async def user_tokens(env: Env) -> tuple[str, dict[str, Any]]:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge))
    return client_id, (await exchange(env.http, client_id, code, verifier)).json()


async def test_introspection_of_active_and_revoked_tokens(env: Env) -> None:
    client_id, tokens = await user_tokens(env)
    key = rsa_key()
    resource_server = backend(env, key)

    async def introspect(token: str) -> dict[str, Any]:
        response = await env.http.post(
            "/auth/introspect",
            data={
                "token": token,
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion(key, resource_server, alg="RS384"),
            },
        )
        assert response.status_code == 200, response.text
        return response.json()

    active = await introspect(tokens["access_token"])
    assert active["active"] is True
    assert active["patient"] == "p1"
    assert active["client_id"] == client_id
    assert active["scope"] == tokens["scope"]
    assert (await introspect(tokens["refresh_token"]))["active"] is True
    assert (await introspect("garbage"))["active"] is False

    revoked = await env.http.post(
        "/auth/revoke", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    assert (await introspect(tokens["access_token"]))["active"] is False
    revoked = await env.http.post(
        "/auth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id}
    )
    assert revoked.status_code == 200
    assert (await introspect(tokens["refresh_token"]))["active"] is False
    refresh = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refresh.status_code == 400


async def test_public_clients_cannot_introspect(env: Env) -> None:
    client_id, tokens = await user_tokens(env)
    response = await env.http.post(
        "/auth/introspect", data={"token": tokens["access_token"], "client_id": client_id}
    )
    assert response.status_code in (400, 401)
    assert response.json()["error"] == "invalid_client"


async def test_revoking_an_unknown_token_is_fine(env: Env) -> None:
    client_id = public_app(env.store)
    response = await env.http.post(
        "/auth/revoke", data={"token": "nothing", "client_id": client_id}
    )
    assert response.status_code == 200


# -- registration ---------------------------------------------------------------------------
APP = {"client_name": "Dyn app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}


async def staff_token(env: Env) -> str:
    token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="ehr",
        scope="user/*.rs",
        subject="u1",
        fhir_user="Practitioner/dr",
    )
    return token


@pytest.mark.parametrize("env", ["off"], indirect=True)
async def test_registration_off(env: Env) -> None:
    response = await env.http.post("/auth/register", json=APP)
    assert response.status_code == 404
    config = (await env.http.get("/fhir/.well-known/smart-configuration")).json()
    assert "registration_endpoint" not in config


@pytest.mark.parametrize("env", ["open"], indirect=True)
async def test_open_registration(env: Env) -> None:
    response = await env.http.post("/auth/register", json=APP)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"]
    assert "client_secret" not in body
    assert body["redirect_uris"] == [REDIRECT]
    assert env.store.get_client(body["client_id"]) is not None
    system = await env.http.post(
        "/auth/register",
        json={
            "token_endpoint_auth_method": "private_key_jwt",
            "scope": "system/*.rs",
            "jwks": public_jwks(rsa_key()),
            "grant_types": ["client_credentials"],
        },
    )
    assert system.status_code == 400
    assert system.json()["error"] == "invalid_client_metadata"
    secret = await env.http.post(
        "/auth/register", json={**APP, "token_endpoint_auth_method": "client_secret_basic"}
    )
    assert secret.status_code == 201
    assert secret.json()["client_secret"]


async def test_token_registration_needs_staff_or_backend_token(env: Env) -> None:
    assert (await env.http.post("/auth/register", json=APP)).status_code == 401
    patient_token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="x",
        scope="patient/*.rs",
        subject="u",
        fhir_user="Patient/p1",
    )
    refused = await env.http.post(
        "/auth/register", json=APP, headers={"Authorization": f"Bearer {patient_token}"}
    )
    assert refused.status_code == 403
    headers = {"Authorization": f"Bearer {await staff_token(env)}"}
    response = await env.http.post(
        "/auth/register",
        headers=headers,
        json={**APP, "scope": "openid fhirUser user/*.rs"},  # within the staff token's scopes
    )
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("env", ["open"], indirect=True)
@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({**APP, "redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri"),
        ({**APP, "redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
        ({**APP, "redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri"),
        ({**APP, "token_endpoint_auth_method": "client_secret_jwt"}, "invalid_client_metadata"),
        ({**APP, "scope": "patient/Observation.sr"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "none"}, "invalid_redirect_uri"),
        ({**APP, "token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        (
            {
                **APP,
                "token_endpoint_auth_method": "private_key_jwt",
                "jwks_uri": "http://internal.example/keys",
            },
            "invalid_client_metadata",
        ),
        (["not", "an", "object"], "invalid_client_metadata"),
    ],
)
async def test_bad_registrations(env: Env, body: Any, error: str) -> None:
    response = await env.http.post("/auth/register", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"]

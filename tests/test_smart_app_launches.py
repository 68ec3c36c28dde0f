"""SMART apps that could not launch (issue 15), over HTTP against the real application
(``create_app(Settings(auth="smart"))``, FHIR data seeded through the API):

- a request with an unknown or malformed scope, or ``launch`` without a launch parameter,
  gets what is valid (RFC 6749 section 3.3: the server may grant less than asked);
- an EHR launch carrying ``launch`` as a parameter but not as a scope (the SMART
  JavaScript client 2.x) is an EHR launch;
- a client registered with ``pkce: optional`` may leave PKCE out (SMART JavaScript client
  before 2.3); a challenge it sends is still verified, and ``plain`` is still refused;
- ``clients create --client-id`` registers the id an app ships with;
- Backend Services assertions with header parameters the server does not know (RFC 7515
  section 4); system scopes of types that do not exist are left out.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from fhir_server.cli import main
from smart_auth.admin import create_client
from tests.smart_support import (
    ASSERTION_TYPE,
    BASE,
    REDIRECT,
    TOKEN_URL,
    Env,
    add_user,
    auth_params,
    bearer_of,
    consent,
    exchange,
    login,
    pkce,
    public_app,
    public_jwks,
    real_app,
    redirect_params,
    rsa_key,
    start,
)


@pytest.fixture
async def env(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    policy = getattr(request, "param", "token")
    async with real_app(tmp_path, registration=policy) as env:
        yield env


# -- Backend Services --------------------------------------------------------------------------
def backend(env: Env, key: Any, scope: str = "system/*.rs") -> str:
    return create_client(
        env.store, "Bulk client", auth="private_key_jwt", jwks=public_jwks(key), scope=scope
    )["client_id"]


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims_of(client_id: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": now + 240,
        "iat": now,
        "jti": uuid.uuid4().hex,
    }


def signed(key: Any, client_id: str, header: dict[str, Any]) -> str:
    """A client assertion signed RS384 with ``header`` as its JOSE header, whatever it
    holds (a JWS library would refuse to write some of these)."""
    signing_input = f"{_b64(header)}.{_b64(claims_of(client_id))}"
    private = key.private_key
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA384())
    return f"{signing_input}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


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


async def test_assertion_header_parameters_the_server_does_not_know_are_ignored(
    env: Env,
) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    header = {"alg": "RS384", "kid": key.kid, "typ": "JWT", "kty": "RSA", "x-vendor": 1}
    response = await client_credentials(env, signed(key, client_id, header), "system/*.rs")
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/*.rs"


async def test_assertion_crit_is_still_refused(env: Env) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    header = {"alg": "RS384", "kid": key.kid, "crit": ["x-vendor"], "x-vendor": 1}
    response = await client_credentials(env, signed(key, client_id, header), "system/*.rs")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client"
    assert "crit" in response.json()["error_description"]


@pytest.mark.parametrize("alg", ["RS256", "ES256", "HS384"])
async def test_assertion_other_algorithms_are_still_refused(env: Env, alg: str) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    header = {"alg": "RS384", "kid": key.kid, "kty": "RSA"}
    good = signed(key, client_id, header)
    _, payload, signature = good.split(".")
    forged = ".".join((_b64({**header, "alg": alg}), payload, signature))
    response = await client_credentials(env, forged, "system/*.rs")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client"


async def test_assertion_alg_none_is_still_refused(env: Env) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    unsigned = f"{_b64({'alg': 'none', 'kty': 'RSA'})}.{_b64(claims_of(client_id))}."
    response = await client_credentials(env, unsigned, "system/*.rs")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client"


async def test_system_scopes_of_types_that_do_not_exist_are_left_out(env: Env) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    header = {"alg": "RS384", "kid": key.kid, "typ": "JWT"}
    response = await client_credentials(
        env,
        signed(key, client_id, header),
        "system/Observation.read system/UnknownResource.read system/Patient.rs",
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Observation.read system/Patient.rs"
    only_unknown = await client_credentials(
        env, signed(key, client_id, header), "system/UnknownResource.read"
    )
    assert only_unknown.status_code == 400, only_unknown.text
    assert only_unknown.json()["error"] == "invalid_scope"


async def test_malformed_backend_scopes_are_left_out(env: Env) -> None:
    key = rsa_key()
    client_id = backend(env, key)
    header = {"alg": "RS384", "kid": key.kid, "typ": "JWT"}
    response = await client_credentials(
        env, signed(key, client_id, header), "system/read system/Observation.rs"
    )
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "system/Observation.rs"


# -- scopes of an authorization request -----------------------------------------------------
async def sign_in(
    env: Env, client_id: str, username: str, scope: str, **extra: str
) -> tuple[str, str]:
    """Start an authorization request, sign in, allow everything; (code, verifier)."""
    verifier, challenge = pkce()
    started = await start(env.http, auth_params(client_id, challenge, scope=scope, **extra))
    assert started.status_code == 303, started.text
    assert started.headers["location"].endswith("/auth/login"), started.headers["location"]
    logged_in = await login(env.http, username)
    assert logged_in.status_code == 303, logged_in.text
    assert logged_in.headers["location"].endswith("/auth/consent"), logged_in.headers
    answer = redirect_params(await consent(env.http))
    assert "code" in answer, answer
    return answer["code"], verifier


async def test_malformed_and_unknown_scopes_are_left_out_of_the_grant(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    scope = (
        "launch/patient openid fhirUser patient/read patient/Observation.read"
        " patient/UnknownResource.read patient/Observation.sr made-up-scope"
    )
    code, verifier = await sign_in(env, client_id, "alice", scope)
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "launch/patient openid fhirUser patient/Observation.read"
    assert body["patient"] == "p1"
    found = await env.http.get("/fhir/Observation", headers=bearer_of(body))
    assert found.status_code == 200, found.text


async def test_nothing_grantable_is_still_invalid_scope(env: Env) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    for scope in ("patient/read", "launch", "system/*.rs patient/UnknownResource.read"):
        response = await start(env.http, auth_params(client_id, challenge, scope=scope))
        answer = redirect_params(response)
        assert answer["error"] == "invalid_scope", (scope, answer)
        assert answer["state"] == "st-123"


async def test_launch_scope_in_a_standalone_launch_is_left_out(env: Env) -> None:
    client_id = public_app(env.store)
    add_user(env.store, "alice", "Patient/p1")
    code, verifier = await sign_in(
        env, client_id, "alice", "launch launch/patient openid fhirUser patient/*.rs"
    )
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "launch/patient openid fhirUser patient/*.rs"
    assert body["patient"] == "p1"


# -- EHR launch -------------------------------------------------------------------------------
def staff_token(env: Env) -> dict[str, str]:
    token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE,
        audience=BASE,
        client_id="ehr",
        scope="user/*.rs",
        subject="staff-1",
        fhir_user="Practitioner/dr",
    )
    return {"Authorization": f"Bearer {token}"}


async def ehr_launch(env: Env, patient: str = "p2") -> str:
    response = await env.http.post(
        "/auth/launch", json={"patient": patient, "encounter": "e1"}, headers=staff_token(env)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["launch"])


async def test_ehr_launch_by_the_launch_parameter_alone(env: Env) -> None:
    """The SMART JavaScript client 2.x: ``launch`` as a parameter, ``launch/patient`` as a
    scope, no bare ``launch`` scope."""
    launch = await ehr_launch(env)
    client_id = public_app(env.store)
    add_user(env.store, "drwho", "Practitioner/dr")
    code, verifier = await sign_in(
        env, client_id, "drwho", "launch/patient openid fhirUser patient/*.read", launch=launch
    )
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["patient"], body["encounter"]) == ("p2", "e1")
    assert body["scope"].split() == [
        "launch",
        "launch/patient",
        "openid",
        "fhirUser",
        "patient/*.read",
    ]
    headers = bearer_of(body)
    assert (await env.http.get("/fhir/Observation/o2", headers=headers)).status_code == 200
    assert (await env.http.get("/fhir/Observation/o1", headers=headers)).status_code == 404


async def test_ehr_launch_without_the_launch_scope_needs_a_client_registered_for_it(
    env: Env,
) -> None:
    launch = await ehr_launch(env)
    client_id = public_app(env.store, scope="launch/patient openid fhirUser patient/*.rs")
    _, challenge = pkce()
    response = await start(
        env.http,
        auth_params(client_id, challenge, scope="launch/patient patient/*.rs", launch=launch),
    )
    answer = redirect_params(response)
    assert answer["error"] == "invalid_scope"


async def test_an_unknown_launch_parameter_is_still_refused(env: Env) -> None:
    client_id = public_app(env.store)
    _, challenge = pkce()
    response = await start(
        env.http,
        auth_params(client_id, challenge, scope="launch/patient patient/*.rs", launch="nope"),
    )
    answer = redirect_params(response, REDIRECT)
    assert answer["error"] == "invalid_request"


# -- apps without PKCE ------------------------------------------------------------------------
def no_pkce_app(env: Env) -> str:
    return public_app(env.store, pkce="optional")


def without_pkce(client_id: str, **extra: str) -> dict[str, str]:
    params = auth_params(client_id, "unused", **extra)
    del params["code_challenge"], params["code_challenge_method"]
    return params


async def code_without_pkce(env: Env, client_id: str, username: str) -> str:
    started = await start(env.http, without_pkce(client_id))
    assert started.status_code == 303, started.text
    assert started.headers["location"].endswith("/auth/login"), started.headers["location"]
    logged_in = await login(env.http, username)
    assert logged_in.headers["location"].endswith("/auth/consent")
    return redirect_params(await consent(env.http))["code"]


async def test_a_client_with_pkce_optional_may_leave_pkce_out(env: Env) -> None:
    client_id = no_pkce_app(env)
    add_user(env.store, "alice", "Patient/p1")
    code = await code_without_pkce(env, client_id, "alice")
    response = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["patient"] == "p1"
    found = await env.http.get("/fhir/Observation", headers=bearer_of(body))
    assert found.status_code == 200, found.text


async def test_a_verifier_without_a_challenge_is_refused(env: Env) -> None:
    """RFC 9700 section 4.8.2: a code asked for without a challenge is not exchanged
    with a verifier (someone stripped the challenge on the way)."""
    client_id = no_pkce_app(env)
    add_user(env.store, "alice", "Patient/p1")
    code = await code_without_pkce(env, client_id, "alice")
    verifier, _ = pkce()
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 400, response.text


async def test_pkce_is_still_required_of_other_clients(env: Env) -> None:
    client_id = public_app(env.store)
    answer = redirect_params(await start(env.http, without_pkce(client_id)))
    assert answer["error"] == "invalid_request"
    assert "PKCE" in answer["error_description"]


async def test_a_challenge_sent_by_a_client_with_pkce_optional_is_verified(env: Env) -> None:
    client_id = no_pkce_app(env)
    add_user(env.store, "alice", "Patient/p1")
    code, verifier = await sign_in(env, client_id, "alice", "launch/patient patient/*.rs")
    wrong, _ = pkce()
    refused = await exchange(env.http, client_id, code, wrong)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    code, verifier = await sign_in(env, client_id, "alice", "launch/patient patient/*.rs")
    missing = await env.http.post(
        "/auth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
        },
    )
    assert missing.status_code == 400, missing.text
    assert missing.json()["error"] == "invalid_request"


@pytest.mark.parametrize(
    "change",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": None},
    ],
)
async def test_plain_and_half_challenges_are_refused_with_pkce_optional(
    env: Env, change: dict[str, str | None]
) -> None:
    client_id = no_pkce_app(env)
    _, challenge = pkce()
    params = auth_params(client_id, challenge)
    for key, value in change.items():
        if value is None:
            del params[key]
        else:
            params[key] = value
    answer = redirect_params(await start(env.http, params))
    assert answer["error"] == "invalid_request", answer


async def test_registration_may_ask_for_pkce_optional(env: Env) -> None:
    app = {"client_name": "Old JS app", "redirect_uris": [REDIRECT]}
    app |= {"token_endpoint_auth_method": "none", "scope": "openid fhirUser user/*.rs"}
    headers = staff_token(env)
    optional = await env.http.post(
        "/auth/register", headers=headers, json={**app, "pkce": "optional"}
    )
    assert optional.status_code == 201, optional.text
    assert optional.json()["pkce"] == "optional"
    default = await env.http.post("/auth/register", headers=headers, json=app)
    assert default.status_code == 201, default.text
    assert default.json()["pkce"] == "required"
    bad = await env.http.post("/auth/register", headers=headers, json={**app, "pkce": "off"})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"] == "invalid_client_metadata"
    # the registered client may leave PKCE out
    client_id = optional.json()["client_id"]
    started = await start(env.http, without_pkce(client_id, scope="openid fhirUser"))
    assert started.status_code == 303, started.text
    assert started.headers["location"].endswith("/auth/login")


@pytest.mark.parametrize("env", ["open"], indirect=True)
async def test_open_registration_cannot_ask_for_pkce_optional(env: Env) -> None:
    app = {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    response = await env.http.post("/auth/register", json={**app, "pkce": "optional"})
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_client_metadata"
    assert "pkce" in response.json()["error_description"]


# -- the command line ---------------------------------------------------------------------------
def cli(capsys: pytest.CaptureFixture[str], env: Env, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--storage", env.data["storage"]])
    out, err = capsys.readouterr()
    return code, out, err


async def test_clients_create_pkce_optional_and_list(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    create = ("clients", "create", "--name", "Old JS app", "--auth", "none")
    code, out, err = cli(capsys, env, *create, "--redirect-uri", REDIRECT, "--pkce", "optional")
    assert code == 0, err
    created = json.loads(out)
    assert created["pkce"] == "optional"
    code, out, err = cli(capsys, env, *create, "--redirect-uri", REDIRECT)
    assert code == 0, err
    default = json.loads(out)
    assert default["pkce"] == "required"
    code, out, err = cli(capsys, env, "clients", "list")
    assert code == 0, err
    listed = {c["client_id"]: c for c in json.loads(out)}
    assert listed[created["client_id"]]["pkce"] == "optional"
    assert listed[default["client_id"]]["pkce"] == "required"
    # the app signs in without PKCE
    started = await start(env.http, without_pkce(created["client_id"]))
    assert started.status_code == 303, started.text
    assert started.headers["location"].endswith("/auth/login")


async def test_clients_create_with_the_client_id_an_app_ships_with(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    create = ("clients", "create", "--name", "Growth chart", "--auth", "none")
    create += ("--redirect-uri", REDIRECT)
    code, out, err = cli(capsys, env, *create, "--client-id", "growth_chart.app-v2~1")
    assert code == 0, err
    assert json.loads(out)["client_id"] == "growth_chart.app-v2~1"
    add_user(env.store, "alice", "Patient/p1")
    code_, verifier = await sign_in(env, "growth_chart.app-v2~1", "alice", "patient/*.rs")
    response = await exchange(env.http, "growth_chart.app-v2~1", code_, verifier)
    assert response.status_code == 200, response.text
    # the same id again: refused, and the first client is unchanged
    code, out, err = cli(capsys, env, *create, "--client-id", "growth_chart.app-v2~1")
    assert code == 2 and out == ""
    assert "growth_chart.app-v2~1 is taken" in err
    assert env.store.get_client("growth_chart.app-v2~1").name == "Growth chart"


@pytest.mark.parametrize("client_id", ["ab", "x" * 129, "has space", "a/b", "a:b", "é-app", ""])
async def test_clients_create_refuses_a_bad_client_id(
    env: Env, capsys: pytest.CaptureFixture[str], client_id: str
) -> None:
    before = len(env.store.list_clients())
    create = ("clients", "create", "--name", "App", "--auth", "none", "--redirect-uri", REDIRECT)
    code, out, err = cli(capsys, env, *create, "--client-id", client_id)
    assert code == 2 and out == ""
    assert "client id" in err
    assert len(env.store.list_clients()) == before

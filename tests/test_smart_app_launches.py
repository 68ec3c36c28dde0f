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

from smart_auth.admin import create_client
from tests.smart_support import (
    ASSERTION_TYPE,
    TOKEN_URL,
    Env,
    public_jwks,
    real_app,
    rsa_key,
)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with real_app(tmp_path) as env:
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


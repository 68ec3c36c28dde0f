"""Helpers for the security tests (tests/test_security_*.py): the real application with
SMART on over any store (SQLite file or the MongoDB stand-in), seeded as
``tests.smart_support.real_app`` seeds it, and the requests those tests repeat: staff
changing FHIR data, a standalone launch with a refresh token, a refresh, a read, tokens
of staff and of backend services, a registration, a client-credentials request."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI

from fhir_server.app import create_app
from fhir_server.config import Settings
from tests.smart_support import (
    ASSERTION_TYPE,
    BASE,
    ORIGIN,
    Env,
    assertion,
    bearer_of,
    exchange,
    get_code,
    pkce,
    public_app,
    public_jwks,
    seed,
    system_headers,
)

OFFLINE = "launch/patient openid fhirUser offline_access patient/*.rs"
"""A patient app's scopes with a refresh token."""


@asynccontextmanager
async def app_on(storage: str, **settings: Any) -> AsyncIterator[Env]:
    """The real application with SMART on over ``storage``, seeded (as
    ``tests.smart_support.real_app``, on any store)."""
    app: FastAPI = create_app(Settings(storage=storage, auth="smart", **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as http:
            auth = app.state.auth
            await seed(http, auth)
            yield Env(auth, auth.store, http, {"storage": storage, "app": app})


async def staff_write(env: Env, method: str, path: str, body: Any = None) -> None:
    """What staff do to the FHIR data (with an unrestricted backend token)."""
    response = await env.http.request(
        method, f"/fhir/{path}", json=body, headers=system_headers(env.auth)
    )
    assert response.status_code in (200, 201, 204), response.text


async def offline_launch(env: Env, username: str, scope: str = OFFLINE) -> tuple[str, dict]:
    """A standalone launch with a refresh token: (client id, token response)."""
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, username, (verifier, challenge), scope=scope)
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    return client_id, response.json()


async def refresh(env: Env, client_id: str, refresh_token: str) -> httpx.Response:
    """The refresh-token grant of a public client."""
    return await env.http.post(
        "/auth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


async def reads(env: Env, tokens: dict[str, Any], path: str = "Patient/p1") -> int:
    """The status of a FHIR read with the token response's access token."""
    return (await env.http.get(f"/fhir/{path}", headers=bearer_of(tokens))).status_code


def token_for(env: Env, scope: str, **claims: Any) -> dict[str, str]:
    """Authorization headers with a token the server signed (staff or backend)."""
    token, _ = env.auth.token_service().issue_access_token(
        issuer=BASE, audience=BASE, scope=scope, **{"client_id": "ehr", **claims}
    )
    return {"Authorization": f"Bearer {token}"}


def staff(env: Env, scope: str) -> dict[str, str]:
    """A token of the seeded Practitioner's user."""
    return token_for(env, scope, subject="u-dr", fhir_user="Practitioner/dr")


def backend(env: Env, scope: str) -> dict[str, str]:
    """A backend service's token (no user)."""
    return token_for(env, scope)


async def register(env: Env, headers: dict[str, str], body: dict[str, Any]) -> httpx.Response:
    """RFC 7591 registration with the given Authorization header."""
    return await env.http.post("/auth/register", json=body, headers=headers)


def system_client(scope: str, key: Any) -> dict[str, Any]:
    """Registration metadata of a backend service (private_key_jwt with ``key``)."""
    return {
        "client_name": "Sync",
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": scope,
        "jwks": public_jwks(key),
        "grant_types": ["client_credentials"],
    }


async def client_credentials(env: Env, key: Any, client_id: str, scope: str) -> httpx.Response:
    """A SMART Backend Services token request signed with ``key`` (RS384)."""
    return await env.http.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion(key, client_id, alg="RS384"),
        },
    )

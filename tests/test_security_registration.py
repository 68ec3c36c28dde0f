"""Dynamic client registration (RFC 7591) under ``token`` never hands on more than the
registering token holds (security review, issue 14): every resource scope the new client
asks for must be within the token's scopes (smart_auth.scope_limits: context, type, v1/v2
letters, wildcards, granular filters), a user's token never registers ``system/``
scopes, and an omitted scope is the default app scopes capped by the token. Over HTTP
against the real application on every store (SQLite and the MongoDB stand-in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import STORES, storage_url
from tests.security_support import (
    app_on,
    backend,
    client_credentials,
    register,
    staff,
    system_client,
)
from tests.smart_support import REDIRECT, Env, rsa_key

LAB = "category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
APP = {"client_name": "Dyn app", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        yield env


def refused_metadata(response: httpx.Response, *words: str) -> None:
    """An RFC 7591 ``invalid_client_metadata`` whose description has ``words``."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "invalid_client_metadata"
    for word in words:
        assert word in body["error_description"]


async def test_backend_token_cannot_register_a_wider_backend_client(env: Env) -> None:
    """The review's attack: a ``system/*.rs`` token registers a ``system/*.cruds`` client
    with its own key (to delete with it). Refused, and nothing is stored."""
    key = rsa_key()
    before = len(env.store.list_clients())
    response = await register(
        env, backend(env, "system/*.rs"), system_client("system/*.cruds", key)
    )
    refused_metadata(response, "system/*.cruds", "registering token")
    assert len(env.store.list_clients()) == before
    # what it holds, or less, it may hand on; and that client works
    for scope in ("system/*.rs", "system/*.read", "system/Observation.rs"):
        ok = await register(env, backend(env, "system/*.rs"), system_client(scope, key))
        assert ok.status_code == 201, ok.text
    client_id = ok.json()["client_id"]
    got = await client_credentials(env, key, client_id, "system/Observation.rs")
    assert got.status_code == 200, got.text


@pytest.mark.parametrize("scope", ["openid fhirUser", "user/*.cruds", "openid fhirUser user/*.rs"])
async def test_user_token_never_registers_system_scopes(env: Env, scope: str) -> None:
    response = await register(env, staff(env, scope), system_client("system/*.cruds", rsa_key()))
    refused_metadata(response, "user's token", "system")
    small = await register(env, staff(env, scope), system_client("system/Patient.r", rsa_key()))
    refused_metadata(small, "system")


@pytest.mark.parametrize(
    ("held", "requested"),
    [
        ("openid fhirUser", "user/*.cruds"),
        ("openid fhirUser", "patient/*.rs"),
        ("user/*.rs", "user/*.cruds"),
        ("user/*.rs", "user/*.*"),
        ("user/*.rs", "user/*.write"),
        ("user/Observation.rs", "user/*.rs"),
        ("user/Observation.rs", "user/Patient.r"),
        (f"user/Observation.rs?{LAB}", "patient/Observation.rs"),
        (f"user/Observation.rs?{LAB}", "patient/Observation.rs?category=vital-signs"),
        ("patient/*.rs", "user/*.rs"),
    ],
)
async def test_staff_cannot_register_an_app_beyond_their_token(
    env: Env, held: str, requested: str
) -> None:
    response = await register(env, staff(env, held), {**APP, "scope": f"openid {requested}"})
    refused_metadata(response, requested.split("?")[0])


@pytest.mark.parametrize(
    ("held", "requested"),
    [
        ("user/*.rs", "openid fhirUser launch/patient offline_access patient/*.rs user/*.rs"),
        ("user/*.rs", "user/*.read patient/Observation.r"),
        ("user/*.cruds", "user/*.*"),
        ("user/*.rs user/Observation.c", "user/Observation.crs"),
        (f"user/Observation.rs?{LAB}", f"patient/Observation.rs?{LAB}"),
        (f"user/Observation.rs?{LAB}", f"patient/Observation.rs?{LAB}&code=1234-5"),
        ("system/*.rs", "patient/*.rs user/Observation.rs"),  # a backend's token
        ("openid fhirUser", "openid fhirUser launch/patient offline_access"),
    ],
)
async def test_an_app_within_the_registering_token_is_registered(
    env: Env, held: str, requested: str
) -> None:
    headers = backend(env, held) if held.startswith("system/") else staff(env, held)
    response = await register(env, headers, {**APP, "scope": requested})
    assert response.status_code == 201, response.text
    assert response.json()["scope"] == requested


async def test_default_scope_is_capped_by_the_registering_token(env: Env) -> None:
    response = await register(env, staff(env, "openid fhirUser user/*.rs"), APP)
    assert response.status_code == 201, response.text
    scope = response.json()["scope"].split()
    assert "patient/*.rs" in scope and "user/*.rs" in scope
    assert not {"patient/*.cruds", "user/*.cruds"} & set(scope)
    bare = await register(env, staff(env, "openid fhirUser"), APP)
    assert bare.status_code == 201, bare.text
    assert not [s for s in bare.json()["scope"].split() if "/" in s and "launch" not in s]

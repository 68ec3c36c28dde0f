"""The account API's connected apps (issue 21, ``smart_auth.account_api``): a user sees
the apps holding their grants and ends one at once (refresh and access tokens), never
another user's; over HTTP against the real application with SMART on, every store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.conftest import STORES, storage_url
from tests.security_support import app_on, offline_launch, refresh, staff
from tests.smart_support import Env, add_user, bearer_of


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        add_user(env.store, "alice", "Patient/p1")
        add_user(env.store, "bob", "Patient/p2")
        yield env


async def _apps(env: Env, tokens: dict) -> list[dict]:
    response = await env.http.get("/auth/account/apps", headers=bearer_of(tokens))
    assert response.status_code == 200, response.text
    return response.json()["apps"]


async def test_a_user_sees_and_ends_a_connected_app(env: Env) -> None:
    first, tokens = await offline_launch(env, "alice")
    second, other = await offline_launch(env, "alice")
    apps = await _apps(env, tokens)
    assert sorted(a["client_id"] for a in apps) == sorted([first, second])
    entry = next(a for a in apps if a["client_id"] == first)
    assert entry["client_name"] == "Portal"
    assert entry["patient"] == "p1"
    assert "patient/*.rs" in entry["scope"]
    assert entry["granted_at"].endswith("Z") and entry["last_used"] >= entry["granted_at"]

    ended = await env.http.delete(f"/auth/account/apps/{second}", headers=bearer_of(tokens))
    assert ended.status_code == 204
    assert (await refresh(env, second, other["refresh_token"])).status_code in (400, 401)
    read = await env.http.get("/fhir/Patient/p1", headers=bearer_of(other))
    assert read.status_code == 401
    assert [a["client_id"] for a in await _apps(env, tokens)] == [first]
    still = await env.http.get("/fhir/Patient/p1", headers=bearer_of(tokens))
    assert still.status_code == 200
    again = await env.http.delete(f"/auth/account/apps/{second}", headers=bearer_of(tokens))
    assert again.status_code == 404


async def test_a_user_never_sees_or_ends_another_users_apps(env: Env) -> None:
    alice_client, alice = await offline_launch(env, "alice")
    _, bob = await offline_launch(env, "bob")
    assert [a["client_id"] for a in await _apps(env, bob)] != [alice_client]
    assert all(a["patient"] == "p2" for a in await _apps(env, bob))
    refused = await env.http.delete(f"/auth/account/apps/{alice_client}", headers=bearer_of(bob))
    assert refused.status_code == 404
    assert (await env.http.get("/fhir/Patient/p1", headers=bearer_of(alice))).status_code == 200


async def test_the_account_api_needs_a_users_openid_token(env: Env) -> None:
    assert (await env.http.get("/auth/account/apps")).status_code == 401
    no_openid = await env.http.get("/auth/account/apps", headers=staff(env, "user/*.rs"))
    assert no_openid.status_code == 403
    assert no_openid.json()["error"] == "insufficient_scope"


async def test_removing_an_app_stops_its_subscriptions(tmp_path: Path) -> None:
    """Issue 21's "a revoked connected app's token and subscriptions stop": the app
    removed through the account API, the Subscription it made ends in error and hears
    nothing more."""
    import asyncio

    from fhir_server.events.grants import GRANT_REVOKED
    from tests.hook_receiver import receiver
    from tests.smart_support import real_app, system_headers
    from tests.test_subscriptions_revocation import (
        JSON,
        observation,
        signed_in,
        status_of,
        subscribe_and_write_one,
    )

    with receiver() as hook:
        async with real_app(tmp_path, outbound_allow="127.0.0.1") as env:
            client_id, tokens = await signed_in(env)
            sid = await subscribe_and_write_one(env, tokens, hook.url)
            await asyncio.to_thread(hook.wait_for, 1)
            admin = {**system_headers(env.auth), **JSON}
            removed = await env.http.delete(
                f"/auth/account/apps/{client_id}", headers=bearer_of(tokens)
            )
            assert removed.status_code == 204
            stopped = await status_of(env, sid, "error")
            assert stopped["error"] == GRANT_REVOKED
            await env.http.post("/fhir/Observation", json=observation(), headers=admin)
            await asyncio.sleep(1.0)
            assert len(hook.snapshot()) == 1

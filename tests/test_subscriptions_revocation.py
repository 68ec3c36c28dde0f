"""A Subscription stops when the authorization of whoever created it ends (issue 17:
"Revoking the token's refresh family or the app stops its subscriptions"): the grant
revoked through ``POST /auth/revoke``, the user account disabled, or the app (client)
deleted; its status becomes ``error`` with the reason and nothing more is delivered.
A real sign-in (authorization code with PKCE) makes the token, so it carries its grant
(``family``) and account like any app's. Runs on SQLite only: the checks ask the
authorization server's records, not the FHIR store."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from fhir_server.events.grants import CLIENT_DELETED, GRANT_REVOKED, USER_DISABLED
from smart_auth.admin import delete_client, disable_user
from tests.hook_receiver import receiver
from tests.smart_support import (
    BASE,
    Env,
    add_user,
    bearer_of,
    exchange,
    get_code,
    pkce,
    public_app,
    real_app,
    system_headers,
)

JSON = {"content-type": "application/fhir+json"}
SCOPE = "launch/patient openid fhirUser offline_access patient/*.cruds"


async def signed_in(env: Env) -> tuple[str, dict[str, Any]]:
    """Alice (Patient p1) signs in to a new app: its client id and the token response."""
    add_user(env.store, "alice", "Patient/p1")
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge), scope=SCOPE)
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    return client_id, dict(response.json())


async def status_of(env: Env, sid: str, want: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        found = await env.http.get(f"/fhir/Subscription/{sid}", headers=system_headers(env.auth))
        if found.json()["status"] == want or time.monotonic() > deadline:
            assert found.json()["status"] == want, found.text
            return dict(found.json())
        await asyncio.sleep(0.05)


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "pulse"},
        "subject": {"reference": "Patient/p1"},
    }


async def subscribe_and_write_one(env: Env, tokens: dict[str, Any], url: str) -> str:
    """The signed-in app subscribes to Observations at ``url``; once the Subscription is
    active, a backend service writes one Observation (the caller waits for its
    notification). The Subscription's id."""
    body = {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "my results",
        "criteria": "Observation?",
        "channel": {"type": "rest-hook", "endpoint": url},
    }
    created = await env.http.post(
        "/fhir/Subscription", json=body, headers={**bearer_of(tokens), **JSON}
    )
    assert created.status_code == 201, created.text
    sid = str(created.json()["id"])
    await status_of(env, sid, "active")
    admin = {**system_headers(env.auth), **JSON}
    await env.http.post("/fhir/Observation", json=observation(), headers=admin)
    return sid


@pytest.mark.parametrize("how", ["revoke", "disable", "delete-client"])
async def test_ending_the_creators_authorization_stops_the_subscription(
    tmp_path: Path, how: str
) -> None:
    settings = {"outbound_allow": "127.0.0.1", "delivery_backoff": 0.2}
    with receiver() as hook:
        async with real_app(tmp_path, **settings) as env:
            client_id, tokens = await signed_in(env)
            sid = await subscribe_and_write_one(env, tokens, hook.url)
            await asyncio.to_thread(hook.wait_for, 1)
            admin = {**system_headers(env.auth), **JSON}

            if how == "revoke":  # RFC 7009, the app signing the user out
                data = {"token": tokens["refresh_token"], "client_id": client_id}
                assert (await env.http.post("/auth/revoke", data=data)).status_code == 200
                reason = GRANT_REVOKED
            elif how == "disable":  # fhir-server users disable
                disable_user(env.store, env.auth.token_service(), "alice")
                reason = GRANT_REVOKED  # disabling ends the account's grants first
            else:  # fhir-server clients delete
                delete_client(env.store, env.auth.token_service(), client_id)
                reason = GRANT_REVOKED
            stopped = await status_of(env, sid, "error")
            assert stopped["error"] == reason
            await env.http.post("/fhir/Observation", json=observation(), headers=admin)
            await asyncio.sleep(1.0)
            assert len(hook.snapshot()) == 1


async def test_a_disabled_account_or_a_deleted_app_is_enough(tmp_path: Path) -> None:
    """Without a revoked grant (a token of the account issued without one): the account
    disabled, or the app deleted, each stops the Subscriptions made with it."""
    with receiver() as hook:
        async with real_app(tmp_path, outbound_allow="127.0.0.1") as env:
            add_user(env.store, "alice", "Patient/p1")
            user = env.store.find_user("alice")
            assert user is not None
            sids = {}
            for name in ("account", "app"):
                client_id = public_app(env.store)
                token, _ = env.auth.token_service().issue_access_token(
                    issuer=BASE,
                    audience=BASE,
                    client_id=client_id,
                    scope="patient/*.cruds",
                    subject=user.user_id,
                    fhir_user="Patient/p1",
                    patient="p1",
                )
                body = {
                    "resourceType": "Subscription",
                    "status": "requested",
                    "reason": name,
                    "criteria": "Observation?",
                    "channel": {"type": "rest-hook", "endpoint": hook.url},
                }
                headers = {"authorization": f"Bearer {token}", **JSON}
                created = await env.http.post("/fhir/Subscription", json=body, headers=headers)
                assert created.status_code == 201, created.text
                sids[name] = (created.json()["id"], client_id)
                await status_of(env, created.json()["id"], "active")
            delete_client(env.store, env.auth.token_service(), sids["app"][1])
            assert (await status_of(env, sids["app"][0], "error"))["error"] == CLIENT_DELETED
            assert await status_of(env, sids["account"][0], "active")
            env.store.set_disabled(user.user_id, True)
            assert (await status_of(env, sids["account"][0], "error"))["error"] == USER_DISABLED
            assert hook.snapshot() == []

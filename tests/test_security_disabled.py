"""Disabled accounts (security review, issue 14, item 5), over HTTP against the real
application on every store (SQLite and the MongoDB stand-in):

- a disabled account cannot sign in: with the right password it is told that the
  account is disabled; a wrong password looks like any wrong password;
- its refresh tokens are refused with ``invalid_grant`` and the grant is revoked;
- the access tokens already issued to it are revoked (every grant family of the user,
  those with refresh tokens and those without);
- a code or a sign-in made before the account was disabled gives no tokens;
- enabled again, the user signs in; the grants that ended stay ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from smart_auth.admin import disable_user, enable_user
from tests.conftest import STORES, storage_url
from tests.security_support import OFFLINE, app_on, offline_launch, reads, refresh
from tests.smart_support import (
    Env,
    add_user,
    auth_params,
    consent,
    exchange,
    get_code,
    launch_tokens,
    login,
    pkce,
    public_app,
    start,
)


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        yield env


def disable(env: Env, username: str) -> dict:
    return disable_user(env.store, env.auth.token_service(), username)


async def test_disabling_revokes_the_users_tokens(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    add_user(env.store, "bob", "Patient/p2")
    client_id, offline = await offline_launch(env, "alice")
    code_only = await launch_tokens(env, "alice")  # no refresh token: the code's family
    assert "refresh_token" not in code_only
    bob_client, bob = await offline_launch(env, "bob")
    assert await reads(env, offline) == 200 and await reads(env, code_only) == 200

    assert disable(env, "alice") == {"username": "alice", "disabled": True, "revoked_grants": 2}
    assert await reads(env, offline) == 401
    assert await reads(env, code_only) == 401
    refused = await refresh(env, client_id, offline["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    # another user's grant is not touched
    assert await reads(env, bob, "Patient/p2") == 200
    assert (await refresh(env, bob_client, bob["refresh_token"])).status_code == 200


async def test_refresh_of_a_disabled_account_revokes_the_grant(env: Env) -> None:
    """The flag alone (set by another process, say) is enough: the refresh is refused
    and the grant's access tokens are revoked."""
    add_user(env.store, "alice", "Patient/p1")
    client_id, tokens = await offline_launch(env, "alice")
    user = env.store.find_user("alice")
    assert user is not None
    env.store.set_disabled(user.user_id, True)
    refused = await refresh(env, client_id, tokens["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert "disabled" in refused.json()["error_description"]
    assert await reads(env, tokens) == 401
    env.store.set_disabled(user.user_id, False)
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code == 400


async def test_a_disabled_account_cannot_sign_in(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    add_user(env.store, "bob", "Patient/p2")
    disable(env, "alice")
    client_id = public_app(env.store)
    _, challenge = pkce()
    assert (await start(env.http, auth_params(client_id, challenge))).status_code == 303

    right = await login(env.http, "alice")
    assert right.status_code == 403
    assert "This account is disabled" in right.text and "Contact" in right.text

    wrong_disabled = await login(env.http, "alice", "not her password")
    wrong_enabled = await login(env.http, "bob", "not his password")
    assert wrong_disabled.status_code == wrong_enabled.status_code == 401
    assert "disabled" not in wrong_disabled.text
    for page in (wrong_disabled, wrong_enabled):
        assert "The username or password is not right." in page.text

    assert enable_user(env.store, "alice") == {"username": "alice", "disabled": False}
    assert (await login(env.http, "alice")).status_code == 303


async def test_a_code_issued_before_disabling_gives_no_tokens(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge), scope=OFFLINE)
    disable(env, "alice")
    refused = await exchange(env.http, client_id, code, verifier)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_a_sign_in_made_before_disabling_gets_no_code(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id = public_app(env.store)
    _, challenge = pkce()
    await start(env.http, auth_params(client_id, challenge))
    assert (await login(env.http, "alice")).status_code == 303
    disable(env, "alice")
    answer = await consent(env.http)
    assert answer.status_code == 403
    assert "location" not in answer.headers
    assert "This account is disabled" in answer.text

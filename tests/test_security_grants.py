"""Grants that must not outlive what they were made for (security review, issue 14), over
HTTP against the real application on every store (SQLite and the MongoDB stand-in):

- refresh (RFC 6749 section 6) and code exchange re-check that the user still may act
  for the patient: a caregiver's RelatedPerson deactivated or ended, a Person link
  removed, a Patient deleted, a Practitioner removed -> ``invalid_grant``, and the grant
  (refresh tokens and access tokens) is revoked;
- a user without a ``fhirUser`` cannot be created, and one made before gets no
  ``user/`` scopes;
- a replayed code (RFC 6749 section 4.1.2), a reused refresh token (RFC 9700 section
  4.14.2) and a revoked refresh token (RFC 7009 section 2.1) revoke the access tokens
  already issued from that grant too.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from smart_auth.admin import AdminError, create_user
from smart_auth.passwords import hash_password
from smart_auth.store import User, open_auth_store
from smart_auth.tokens import TokenError, TokenService
from tests.conftest import STORES, storage_url
from tests.security_support import (
    OFFLINE,
    app_on,
    backend,
    client_credentials,
    offline_launch,
    reads,
    refresh,
    register,
    staff_write,
    system_client,
)
from tests.smart_support import (
    BASE,
    PASSWORD,
    Env,
    add_user,
    auth_params,
    consent,
    exchange,
    get_code,
    login,
    pkce,
    public_app,
    redirect_params,
    rsa_key,
    start,
)

STAFF_SCOPE = "openid fhirUser offline_access user/*.rs"


@pytest.fixture(params=STORES)
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    async with app_on(storage_url(request.param, tmp_path)) as env:
        yield env


# -- refresh re-checks the relationship ---------------------------------------------------
async def test_refresh_works_while_the_relationship_holds(env: Env) -> None:
    add_user(env.store, "mum", "RelatedPerson/rp1")
    client_id, tokens = await offline_launch(env, "mum")
    for _ in range(2):
        refreshed = await refresh(env, client_id, tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        tokens = refreshed.json()
        assert tokens["patient"] == "p1"
    assert await reads(env, tokens) == 200


@pytest.mark.parametrize(
    "change",
    [
        {"active": False},
        {"active": True, "period": {"start": "2020-01-01", "end": "2021-06-30"}},
    ],
    ids=["deactivated", "period-ended"],
)
async def test_refresh_refused_once_the_caregiver_relationship_ends(
    env: Env, change: dict[str, Any]
) -> None:
    add_user(env.store, "mum", "RelatedPerson/rp1")
    client_id, tokens = await offline_launch(env, "mum")
    related = {
        "resourceType": "RelatedPerson",
        "id": "rp1",
        "patient": {"reference": "Patient/p1"},
        "name": [{"family": "Smith", "given": ["Mary"]}],
        **change,
    }
    await staff_write(env, "PUT", "RelatedPerson/rp1", related)
    refused = await refresh(env, client_id, tokens["refresh_token"])
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_grant"
    assert "no longer" in refused.json()["error_description"]
    # the grant is revoked: the access token already issued stops working too
    assert await reads(env, tokens) == 401
    # and restoring the relationship does not bring the old grant back
    restored = {k: v for k, v in related.items() if k != "period"}
    await staff_write(env, "PUT", "RelatedPerson/rp1", {**restored, "active": True})
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code == 400


async def test_refresh_refused_once_a_person_link_is_removed(env: Env) -> None:
    person = {
        "resourceType": "Person",
        "id": "parent",
        "name": [{"family": "Smith", "given": ["Mary"]}],
        "link": [{"target": {"reference": "RelatedPerson/rp1"}}],
    }
    await staff_write(env, "PUT", "Person/parent", person)
    add_user(env.store, "parent", "Person/parent")
    client_id, tokens = await offline_launch(env, "parent")
    assert tokens["patient"] == "p1"
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code == 200
    second_id, second = await offline_launch(env, "parent")
    unlinked = {k: v for k, v in person.items() if k != "link"}
    await staff_write(env, "PUT", "Person/parent", unlinked)
    refused = await refresh(env, second_id, second["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_refresh_refused_once_the_patient_record_is_deleted(env: Env) -> None:
    add_user(env.store, "carol", "Patient/p3")
    client_id, tokens = await offline_launch(env, "carol")
    assert tokens["patient"] == "p3"
    await staff_write(env, "DELETE", "Patient/p3")
    refused = await refresh(env, client_id, tokens["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_refresh_refused_once_the_practitioner_is_removed(env: Env) -> None:
    add_user(env.store, "drwho", "Practitioner/dr")
    client_id, tokens = await offline_launch(env, "drwho", STAFF_SCOPE)
    assert (await refresh(env, client_id, tokens["refresh_token"])).status_code == 200
    second_id, second = await offline_launch(env, "drwho", STAFF_SCOPE)
    await staff_write(env, "DELETE", "Practitioner/dr")
    refused = await refresh(env, second_id, second["refresh_token"])
    assert refused.status_code == 400


def remove_account(env: Env, username: str) -> None:
    """Delete a user's record from the auth store (there is no command for it)."""
    user = env.store.find_user(username)
    assert user is not None
    if hasattr(env.store, "db"):  # MongoDB
        env.store.db.auth_users.delete_one({"_id": user.user_id})
    else:
        with sqlite3.connect(env.data["storage"].removeprefix("sqlite:///")) as conn:
            conn.execute("DELETE FROM auth_users WHERE user_id = ?", (user.user_id,))
    assert env.store.get_user(user.user_id) is None


async def test_refresh_refused_once_the_account_is_removed(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id, tokens = await offline_launch(env, "alice")
    remove_account(env, "alice")
    refused = await refresh(env, client_id, tokens["refresh_token"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"
    assert await reads(env, tokens) == 401  # the grant's access token is revoked too


async def test_code_exchange_refused_when_the_relationship_ended_after_consent(env: Env) -> None:
    add_user(env.store, "mum", "RelatedPerson/rp1")
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "mum", (verifier, challenge), scope=OFFLINE)
    ended = {"resourceType": "RelatedPerson", "id": "rp1", "active": False}
    ended["patient"] = {"reference": "Patient/p1"}
    await staff_write(env, "PUT", "RelatedPerson/rp1", ended)
    refused = await exchange(env.http, client_id, code, verifier)
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_grant"


# -- no user/ scopes without a fhirUser ----------------------------------------------------
async def test_a_user_cannot_be_created_without_a_fhir_user(env: Env) -> None:
    for missing in (None, ""):
        with pytest.raises(AdminError, match="--fhir-user is required"):
            create_user(env.store, "nobody", PASSWORD, missing)
    assert env.store.find_user("nobody") is None


async def test_a_legacy_user_without_fhir_user_gets_no_user_scopes(env: Env) -> None:
    """An account made before fhirUser was required: its user/ scopes are dropped from
    the grant, so its token reads nothing (user/ scopes without a fhirUser would be
    unrestricted)."""
    env.store.add_user(
        User(user_id=uuid.uuid4().hex, username="legacy", password_hash=hash_password(PASSWORD))
    )
    scope = "openid fhirUser offline_access user/*.cruds"
    client_id = public_app(env.store)  # may ask for user/*.cruds
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "legacy", (verifier, challenge), scope=scope)
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert tokens["scope"].split() == ["openid", "fhirUser", "offline_access"]
    policy = env.auth.authenticate(f"Bearer {tokens['access_token']}", BASE)
    assert policy.rules == () and policy.fhir_user is None
    for path in ("Patient/p2", "Observation/o2", "Patient?name=Alice"):
        assert await reads(env, tokens, path) == 403
    refreshed = await refresh(env, client_id, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    assert "user/" not in refreshed.json()["scope"]
    assert await reads(env, refreshed.json(), "Patient/p2") == 403


async def test_unticking_every_scope_grants_none(env: Env) -> None:
    """The consent page's choice is what is granted, also when nothing is left (it used
    to fall back to everything the app asked for)."""
    add_user(env.store, "alice", "Patient/p1")
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    scope = "patient/*.rs offline_access"
    await start(env.http, auth_params(client_id, challenge, scope=scope))
    await login(env.http, "alice")
    code = redirect_params(await consent(env.http, untick=tuple(scope.split())))["code"]
    response = await exchange(env.http, client_id, code, verifier)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == ""
    assert "refresh_token" not in response.json()
    assert await reads(env, response.json()) == 403


# -- revoking a grant revokes its access tokens -------------------------------------------
async def test_code_replay_revokes_the_access_token_already_issued(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id = public_app(env.store)
    verifier, challenge = pkce()
    code = await get_code(env, client_id, "alice", (verifier, challenge), scope=OFFLINE)
    first = await exchange(env.http, client_id, code, verifier)
    assert first.status_code == 200
    assert await reads(env, first.json()) == 200
    replay = await exchange(env.http, client_id, code, verifier)
    assert replay.status_code == 400
    assert await reads(env, first.json()) == 401
    assert (await refresh(env, client_id, first.json()["refresh_token"])).status_code == 400


async def test_refresh_reuse_revokes_every_access_token_of_the_family(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id, first = await offline_launch(env, "alice")
    rotated = await refresh(env, client_id, first["refresh_token"])
    assert rotated.status_code == 200
    second = rotated.json()
    assert await reads(env, first) == 200 and await reads(env, second) == 200
    reuse = await refresh(env, client_id, first["refresh_token"])
    assert reuse.status_code == 400
    assert await reads(env, first) == 401
    assert await reads(env, second) == 401
    # another grant of the same user and app is not touched
    _, other = await offline_launch(env, "alice")
    assert await reads(env, other) == 200


async def test_revoking_a_refresh_token_revokes_its_access_tokens(env: Env) -> None:
    add_user(env.store, "alice", "Patient/p1")
    client_id, tokens = await offline_launch(env, "alice")
    revoked = await env.http.post(
        "/auth/revoke",
        data={
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            "client_id": client_id,
        },
    )
    assert revoked.status_code == 200, revoked.text
    assert await reads(env, tokens) == 401


async def test_family_revocation_reaches_other_processes(env: Env) -> None:
    """Another server process on the same store refuses the family's tokens once it
    polls the revocation list (every 2 s by default; at once here)."""
    add_user(env.store, "alice", "Patient/p1")
    client_id, first = await offline_launch(env, "alice")
    rotated = (await refresh(env, client_id, first["refresh_token"])).json()
    store = open_auth_store(env.data["storage"])
    try:
        other = TokenService(env.auth.keys_ready(), store, revocation_poll_interval=0)
        token = rotated["access_token"]
        assert other.verify_access_token(token, issuer=BASE, audience=BASE)["family"]
        assert (await refresh(env, client_id, first["refresh_token"])).status_code == 400
        with pytest.raises(TokenError) as caught:
            other.verify_access_token(token, issuer=BASE, audience=BASE)
        assert caught.value.reason == "revoked"
    finally:
        store.close()


async def test_backend_tokens_carry_no_family(env: Env) -> None:
    key = rsa_key()
    response = await register(env, backend(env, "system/*.rs"), system_client("system/*.rs", key))
    client_id = response.json()["client_id"]
    got = await client_credentials(env, key, client_id, "system/*.rs")
    assert got.status_code == 200, got.text
    claims = env.auth.token_service().verify_access_token(
        got.json()["access_token"], issuer=BASE, audience=BASE
    )
    assert "family" not in claims

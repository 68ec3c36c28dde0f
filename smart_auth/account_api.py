"""The signed-in user's connected apps, as JSON for apps such as the portal (issue 21):

- ``GET /auth/account/apps``: the clients holding a live refresh token of the user, one
  entry per client: ``client_id``, ``client_name``, ``scope`` (what its newest live
  grant allows), ``patient`` (the launch patient, if any), ``granted_at`` (the first
  sign-in of its live grants) and ``last_used`` (the newest refresh), instants in
  RFC 3339;
- ``DELETE /auth/account/apps/{client_id}``: ends every grant of the user to that client
  at once: its refresh tokens and the access tokens issued from them (RFC 7009 style
  revocation, ``smart_auth.admin.revoke_grants``); the Subscriptions the app made with
  them stop being served (``fhir_server.events`` checks the creator's grant). ``204``;
  ``404`` when the user has no grant to that client.

Both take a Bearer access token of the user that carries ``openid`` and ``fhirUser``
(RFC 6750): a missing or bad token is ``401 invalid_token``, a token without those
scopes or without a user ``403 insufficient_scope``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth.bearer import bearer_policy
from smart_auth.core import AuthCore
from smart_auth.scopes import AccessPolicy
from smart_auth.server import oauth_error
from smart_auth.store.base import AuthStore, RefreshToken
from smart_auth.tokens import TokenService

_NEEDED = ("openid", "fhirUser")


async def _user(auth: AuthCore, request: Request) -> AccessPolicy | Response:
    policy = await bearer_policy(auth, request)
    if isinstance(policy, Response):
        return policy
    scopes = set(policy.scope.split())
    if policy.subject is None or not all(s in scopes for s in _NEEDED):
        return oauth_error(
            403,
            "insufficient_scope",
            "The account API needs a user's access token granted openid and fhirUser.",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid fhirUser"'},
        )
    return policy


def _instant(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat().replace("+00:00", "Z")


def _live_families(tokens: list[RefreshToken]) -> dict[str, list[RefreshToken]]:
    """Family id -> its tokens, for the families with a usable token."""
    now = int(time.time())
    families: dict[str, list[RefreshToken]] = {}
    for token in tokens:
        families.setdefault(token.family_id or token.token_hash, []).append(token)
    return {f: ts for f, ts in families.items() if any(t.usable(now) for t in ts)}


def connected_apps(store: AuthStore, user_id: str) -> list[dict[str, Any]]:
    """The clients holding live grants of the user (see the module docstring), sorted by
    name; instants as RFC 3339 strings."""
    now = int(time.time())
    apps: dict[str, dict[str, Any]] = {}
    for family in _live_families(store.user_refresh_tokens(user_id)).values():
        live = [t for t in family if t.usable(now)]
        newest = max(live, key=lambda t: t.created_at)
        first = min(t.created_at for t in family)
        entry = apps.get(newest.client_id)
        if entry is None:
            client = store.get_client(newest.client_id)
            entry = apps[newest.client_id] = {
                "client_id": newest.client_id,
                "client_name": client.name if client is not None else newest.client_id,
                "granted_at": first,
                "last_used": newest.created_at,
                "scope": newest.scope,
            }
            if newest.patient:
                entry["patient"] = newest.patient
        entry["granted_at"] = min(entry["granted_at"], first)
        if newest.created_at >= entry["last_used"]:
            entry["last_used"] = newest.created_at
            entry["scope"] = newest.scope
    body = sorted(apps.values(), key=lambda a: (a["client_name"].lower(), a["client_id"]))
    for app in body:
        app["granted_at"] = _instant(app["granted_at"])
        app["last_used"] = _instant(app["last_used"])
    return body


def end_app(store: AuthStore, tokens: TokenService, user_id: str, client_id: str) -> bool:
    """End every live grant of the user to ``client_id`` (refresh tokens and the access
    tokens issued from them); False when there was none."""
    families = sorted(
        f
        for f, ts in _live_families(store.user_refresh_tokens(user_id)).items()
        if any(t.client_id == client_id for t in ts)
    )
    for family in families:
        store.revoke_family(family)
        tokens.revoke_family_tokens(family)
    return bool(families)


async def list_apps(auth: AuthCore, request: Request) -> Response:
    policy = await _user(auth, request)
    if isinstance(policy, Response):
        return policy
    assert policy.subject is not None
    apps = await run_in_threadpool(connected_apps, auth.store, policy.subject)
    return JSONResponse({"apps": apps}, headers={"Cache-Control": "no-store"})


async def revoke_app(auth: AuthCore, request: Request, client_id: str) -> Response:
    policy = await _user(auth, request)
    if isinstance(policy, Response):
        return policy
    assert policy.subject is not None
    ended = await run_in_threadpool(
        end_app, auth.store, auth.token_service(), policy.subject, client_id
    )
    if not ended:
        return oauth_error(404, "not_found", "You have not connected this app.")
    return Response(status_code=204, headers={"Cache-Control": "no-store"})

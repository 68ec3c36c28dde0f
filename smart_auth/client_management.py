"""Dynamic client registration management (RFC 7592,
https://www.rfc-editor.org/rfc/rfc7592): a client registered through ``/auth/register``
gets a ``registration_access_token`` and a ``registration_client_uri``
(``/auth/register/{client_id}``), with which it reads (``GET``), updates (``PUT``) and
deletes (``DELETE``) its own registration.

- The token is stored as a SHA-256 hash (``Client.registration_token_hash``, never
  shown); a wrong token, an unknown client and a client
  registered without one (by an operator) all answer ``401 invalid_token``
  (section 2: nothing tells whether the client exists).
- An update replaces the metadata (section 2.2) under the checks of a registration, and
  may not widen what the client holds: its scopes only narrow (each resource scope
  within a held one, ``smart_auth.scope_limits``; other scopes among the held ones),
  the authentication method stays, ``client_id`` must match; the secret and the token
  stay the same.
- A delete ends the client's grants and tokens at once (as ``fhir-server clients
  delete``) and answers ``204``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth.admin import delete_client
from smart_auth.core import AuthCore
from smart_auth.passwords import secret_matches
from smart_auth.registration import client_from_metadata, client_json, schema_problem
from smart_auth.scope_limits import scopes_beyond
from smart_auth.scopes import ScopeError, parse_scope, parse_scopes
from smart_auth.server import json_body, oauth_error
from smart_auth.store.base import Client


def client_uri(auth: AuthCore, request: Request, client_id: str) -> str:
    return f"{auth.auth_base(auth.fhir_base(request))}/register/{client_id}"


def _unauthorized(message: str) -> Response:
    return oauth_error(
        401, "invalid_token", message, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    )


def _authorized(auth: AuthCore, request: Request, client_id: str) -> Client | Response:
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return _unauthorized("Send the registration access token as a Bearer token.")
    client = auth.store.get_client(client_id)
    stored = client.registration_token_hash if client is not None else None
    if client is None or not isinstance(stored, str) or not secret_matches(token.strip(), stored):
        return _unauthorized("The registration access token is not valid for this client.")
    return client


def _answer(auth: AuthCore, request: Request, client: Client, status: int = 200) -> Response:
    body = client_json(client, None)
    body["registration_client_uri"] = client_uri(auth, request, client.client_id)
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def read_client(auth: AuthCore, request: Request, client_id: str) -> Response:
    """RFC 7592 section 2.1."""
    client = _authorized(auth, request, client_id)
    if isinstance(client, Response):
        return client
    return _answer(auth, request, client)


async def delete_registration(auth: AuthCore, request: Request, client_id: str) -> Response:
    """RFC 7592 section 2.3: the client, its grants and tokens end."""
    client = _authorized(auth, request, client_id)
    if isinstance(client, Response):
        return client
    delete_client(auth.store, auth.token_service(), client.client_id)
    return Response(status_code=204, headers={"Cache-Control": "no-store"})


async def update_client(auth: AuthCore, request: Request, client_id: str) -> Response:
    """RFC 7592 section 2.2."""
    client = _authorized(auth, request, client_id)
    if isinstance(client, Response):
        return client
    try:
        body = json_body(await request.body())
    except (ValueError, UnicodeDecodeError):
        return oauth_error(400, "invalid_client_metadata", "The body is not JSON.")
    if not isinstance(body, dict) or body.get("client_id") != client.client_id:
        return oauth_error(
            400, "invalid_client_metadata", "The body must carry this client's client_id."
        )
    if "registration_access_token" in body or "registration_client_uri" in body:
        return oauth_error(
            400,
            "invalid_client_metadata",
            "registration_access_token and registration_client_uri are not to be sent",
        )
    if "client_secret" in body:
        return oauth_error(400, "invalid_client_metadata", "The client secret cannot be changed.")
    ignored = ("client_id", "client_secret_expires_at", "client_id_issued_at")
    metadata = {k: v for k, v in body.items() if k not in ignored}
    metadata.setdefault("scope", client.scope)
    metadata.setdefault("token_endpoint_auth_method", client.token_endpoint_auth_method)
    problem = schema_problem(metadata) or _widening(client, metadata)
    if problem:
        return oauth_error(400, "invalid_client_metadata", problem)
    system = any(rule.context == "system" for rule in parse_scopes(client.scope).rules)
    pkce_optional = metadata.pop("pkce", None) == "optional"
    try:
        updated, _ = client_from_metadata(metadata, allow_system=system)
    except ValueError as error:
        return oauth_error(400, "invalid_client_metadata", str(error))
    updated.client_id = client.client_id
    updated.client_secret_hash = client.client_secret_hash
    updated.created_at = client.created_at
    updated.registration_token_hash = client.registration_token_hash
    if "rate_limit" in client.metadata:  # the operator's, not the client's to change
        updated.metadata["rate_limit"] = client.metadata["rate_limit"]
    if pkce_optional:
        updated.metadata["pkce"] = "optional"
    auth.store.update_client(updated)
    return _answer(auth, request, updated)


def _widening(client: Client, metadata: dict[str, Any]) -> str | None:
    """Why the update would give the client more than it holds (None: it does not)."""
    if metadata.get("token_endpoint_auth_method") != client.token_endpoint_auth_method:
        return "token_endpoint_auth_method cannot be changed"
    if metadata.get("pkce") == "optional" and client.metadata.get("pkce") != "optional":
        return "pkce optional needs an authorized registration"
    scope = metadata.get("scope")
    if not isinstance(scope, str):
        return "scope must be a string"
    try:
        beyond = scopes_beyond(scope, parse_scopes(client.scope).rules)
    except ScopeError as error:
        return f"scope: {error}"
    held = set(client.scope.split())
    others = [w for w in scope.split() if parse_scope(w) is None and w not in held]
    wider = beyond + others
    if wider:
        return f"scope can only narrow: {' '.join(wider)} is not held by this client"
    return None

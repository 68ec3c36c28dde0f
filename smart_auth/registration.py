"""Dynamic client registration (RFC 7591, https://www.rfc-editor.org/rfc/rfc7591) with
Authlib's registration endpoint.

The request body is first checked against ``registration.schema.json`` (jsonschema), so
a bad request fails with a precise ``invalid_client_metadata`` message, then by Authlib's
RFC 7591 metadata claims. The policy (``FHIR_SERVER_REGISTRATION``): ``off`` (404),
``token`` (a bearer token of a practitioner or a backend service, see
:func:`smart_auth.bearer.is_staff_or_system`) or ``open`` (anyone; ``system/`` scopes
are then refused). Redirect URIs must be https, http on a loopback host, or a private-use
scheme of a native app (RFC 8252 section 7), without a fragment.

Under ``token``, a client never gets more than the token that registers it: every
resource scope it asks for must be within the registering token's scopes
(:mod:`smart_auth.scope_limits`: same or wider context, type, letters, no wider granular
filter), and ``system/`` scopes need a backend service's token (a user's token never
registers them). Otherwise the answer is ``invalid_client_metadata`` naming the scopes
beyond the token. Without a ``scope``, the client gets the default app scopes narrowed to
what the registering token covers.

PKCE (S256) is required of every app, unless its registration says otherwise with the
client metadata member ``"pkce": "optional"`` (this server's own; ``"required"`` is the
default and is what the answer shows for every app): for apps that cannot send PKCE (the
SMART JavaScript client before 2.3). A challenge such an app sends is still verified, and
``plain`` is still refused. Only an authorized registration (``token``, or an operator's
``fhir-server clients create --pkce optional``) may ask for it; under ``open`` it is
refused.
"""

from __future__ import annotations

import json
import time
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7591 import (
    ClientRegistrationEndpoint,
    InvalidClientMetadataError,
    InvalidRedirectURIError,
)
from jsonschema import Draft202012Validator
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.bearer import bearer_policy, is_staff_or_system
from smart_auth.client_auth import JWKS_URI_REFUSED
from smart_auth.core import AuthCore
from smart_auth.discovery import AUTH_METHODS
from smart_auth.models import safe_text
from smart_auth.passwords import hash_secret, new_identifier, new_secret
from smart_auth.scope_limits import cap_scopes, scopes_beyond
from smart_auth.scopes import AccessPolicy, ScopeError, parse_scopes
from smart_auth.server import RawResponse, SmartJsonRequest, json_body, oauth_error, run_grant
from smart_auth.store.base import Client

SCHEMA = Path(__file__).parent / "registration.schema.json"
DEFAULT_APP_SCOPE = (
    "openid fhirUser profile launch launch/patient launch/encounter offline_access"
    " online_access patient/*.cruds user/*.cruds"
)
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


@cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(json.loads(SCHEMA.read_text()))


def schema_problem(body: Any) -> str | None:
    """The first schema violation of a registration request, in words (None: valid)."""
    errors = sorted(_validator().iter_errors(body), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    error = errors[0]
    where = "/".join(str(p) for p in error.absolute_path) or "(body)"
    if error.validator == "not":
        return "give jwks or jwks_uri, not both"
    return f"{where}: {error.message}"


def check_redirect_uri(uri: str) -> str | None:
    """Why a redirect URI is refused (None: fine)."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        return f"{uri} has a fragment"
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and (parts.hostname or "") in _LOOPBACK:
        return None
    if parts.scheme not in ("http", "https", "") and "." in parts.scheme:
        return None  # a native app's private-use scheme (RFC 8252 section 7.1)
    return f"{uri} must be https, http on a loopback address, or a private-use scheme"


def client_from_metadata(
    metadata: dict[str, Any], *, allow_system: bool, registrar: AccessPolicy | None = None
) -> tuple[Client, str | None]:
    """A client record (and its secret, if any) from checked RFC 7591 metadata; raises
    ValueError with the reason. ``registrar``: the policy of the token registering the
    client, whose scopes cap the client's (None: no cap, an operator's registration)."""
    method = metadata.get("token_endpoint_auth_method", "client_secret_basic")
    redirect_uris = list(metadata.get("redirect_uris", []))
    for uri in redirect_uris:
        problem = check_redirect_uri(uri)
        if problem:
            raise ValueError(problem)
    if method == "private_key_jwt" and not (metadata.get("jwks") or metadata.get("jwks_uri")):
        raise ValueError("private_key_jwt needs jwks or jwks_uri")
    jwks_uri = urlsplit(metadata.get("jwks_uri") or "https://x")
    loopback = jwks_uri.scheme == "http" and (jwks_uri.hostname or "") in _LOOPBACK
    if not (jwks_uri.scheme == "https" and jwks_uri.hostname) and not loopback:
        raise ValueError("the jwks_uri must use https (http only on localhost)")
    try:
        scope = _scope_for(metadata.get("scope"), registrar)
        rules = parse_scopes(scope).rules
    except ScopeError as error:
        raise ValueError(f"scope: {error}") from error
    has_system = any(rule.context == "system" for rule in rules)
    if metadata.get("pkce") == "optional" and not allow_system:
        raise ValueError("pkce optional needs an authorized registration")
    if has_system and not allow_system:
        raise ValueError("system scopes need an authorized registration")
    if has_system and method != "private_key_jwt":
        raise ValueError("system scopes need private_key_jwt")
    grants = list(metadata.get("grant_types") or [])
    if not grants:
        grants = (
            ["client_credentials"] if has_system and not redirect_uris else ["authorization_code"]
        )
    if "authorization_code" in grants:
        if not redirect_uris:
            raise ValueError("authorization_code needs redirect_uris")
        if "refresh_token" not in grants:
            grants.append("refresh_token")
    if "client_credentials" in grants and (method != "private_key_jwt" or not has_system):
        raise ValueError("client_credentials needs private_key_jwt and system scopes")
    secret = new_secret() if method == "client_secret_basic" else None
    extra = {"pkce": "optional"} if metadata.get("pkce") == "optional" else {}
    extra |= {
        k: metadata[k]
        for k in (
            "client_uri",
            "logo_uri",
            "tos_uri",
            "policy_uri",
            "contacts",
            "software_id",
            "software_version",
        )
        if k in metadata
    }
    client = Client(
        client_id=new_identifier(),
        name=metadata.get("client_name") or "",
        token_endpoint_auth_method=method,
        client_secret_hash=hash_secret(secret) if secret else None,
        redirect_uris=redirect_uris,
        scope=scope,
        grant_types=grants,
        jwks=metadata.get("jwks"),
        jwks_uri=metadata.get("jwks_uri"),
        created_at=int(time.time()),
        metadata=extra,
    )
    return client, secret


def _scope_for(requested: str | None, registrar: AccessPolicy | None) -> str:
    """The scope to register: as requested (or the default), within what the registering
    token holds; raises ValueError naming the scopes beyond it."""
    if registrar is None:
        return requested or DEFAULT_APP_SCOPE
    if not requested:
        return cap_scopes(DEFAULT_APP_SCOPE, registrar.rules)
    wants_system = any(rule.context == "system" for rule in parse_scopes(requested).rules)
    if wants_system and registrar.subject is not None:
        raise ValueError("a user's token cannot register system scopes (a backend service's can)")
    beyond = scopes_beyond(requested, registrar.rules)
    if not beyond:
        return requested
    raise ValueError(
        f"scope: {' '.join(beyond)} goes beyond the scopes of the registering token"
        f" ({' '.join(r.scope_text() for r in registrar.rules) or 'no resource scopes'})"
    )


def client_json(client: Client, secret: str | None) -> dict[str, Any]:
    """The RFC 7591 section 3.2.1 answer (also printed by ``clients create``)."""
    body: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.name,
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"] if "authorization_code" in client.grant_types else [],
        "scope": client.scope,
        **client.metadata,
    }
    if "authorization_code" in client.grant_types:
        body.setdefault("pkce", "required")
    if secret:
        body["client_secret"] = secret
        body["client_secret_expires_at"] = 0
    if client.jwks:
        body["jwks"] = client.jwks
    if client.jwks_uri:
        body["jwks_uri"] = client.jwks_uri
    return body


def issue_token(client: Client) -> str:
    """A new RFC 7592 registration access token for ``client`` (its hash stored in the
    record; see :mod:`smart_auth.client_management`)."""
    token = new_secret()
    client.registration_token_hash = hash_secret(token)
    return token


class Registration(ClientRegistrationEndpoint):
    """Authlib's endpoint over the auth store."""

    def __init__(
        self, auth: AuthCore, allow_system: bool, registrar: AccessPolicy | None = None
    ) -> None:
        super().__init__(server=auth.oauth())
        self.auth = auth
        self.allow_system = allow_system
        self.registrar = registrar

    def authenticate_token(self, request: Any) -> bool:
        return True  # the policy was applied by the route

    def get_server_metadata(self) -> dict[str, Any]:
        return {
            "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
            "response_types_supported": ["code"],
            "token_endpoint_auth_methods_supported": AUTH_METHODS,
        }

    def create_registration_response(self, request: Any) -> RawResponse:
        for uri in request.payload.data.get("redirect_uris", []):
            problem = check_redirect_uri(uri)
            if problem:
                raise InvalidRedirectURIError(safe_text(problem))
        self.extract_client_metadata(request)  # Authlib's RFC 7591 checks
        try:
            client, secret = client_from_metadata(
                request.payload.data, allow_system=self.allow_system, registrar=self.registrar
            )
        except ValueError as error:
            if "redirect" in str(error) or "loopback" in str(error) or "fragment" in str(error):
                raise InvalidRedirectURIError(safe_text(str(error))) from error
            raise InvalidClientMetadataError(safe_text(str(error))) from error
        token = issue_token(client)  # RFC 7592: the client manages its registration
        self.auth.store.add_client(client)
        body = client_json(client, secret)
        body["registration_access_token"] = token
        manage = f"{self.auth.auth_base(request.fhir_base)}/register/{client.client_id}"
        body["registration_client_uri"] = manage
        return RawResponse(201, body, [("Cache-Control", "no-store")])


async def register(auth: AuthCore, request: Request) -> Response:
    policy = auth.config.registration
    if policy == "off":
        return oauth_error(404, "not_found", "Dynamic client registration is off on this server.")
    registrar: AccessPolicy | None = None
    if policy == "token":
        caller = await bearer_policy(auth, request)
        if isinstance(caller, Response):
            return caller
        if not is_staff_or_system(caller):
            return oauth_error(
                403, "access_denied", "Registration needs a practitioner or backend token."
            )
        registrar = caller
    try:
        body = json_body(await request.body())
    except (ValueError, UnicodeDecodeError):
        return oauth_error(400, "invalid_client_metadata", "The body is not JSON.")
    problem = schema_problem(body)
    if problem:
        if problem.startswith("redirect_uris"):
            return oauth_error(400, "invalid_redirect_uri", problem)
        return oauth_error(400, "invalid_client_metadata", problem)
    jwks_uri = body.get("jwks_uri")
    if isinstance(jwks_uri, str) and auth.jwks_cache.refusal(jwks_uri) is not None:
        # the outbound guard's rules, checked now without any network activity
        return oauth_error(400, "invalid_client_metadata", JWKS_URI_REFUSED)
    base = auth.fhir_base(request)
    req = SmartJsonRequest("POST", str(request.url), request.headers, body, fhir_base=base)
    endpoint = Registration(auth, registrar is not None, registrar)
    try:
        return await run_grant(endpoint.create_registration_response, req)
    except OAuth2Error as error:  # pragma: no cover - run_grant answers OAuth errors
        return oauth_error(error.status_code, str(error.error), str(error.description))

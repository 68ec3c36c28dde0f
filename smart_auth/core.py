"""The core of the SMART on FHIR authorization server, without its HTTP routes: the
settings (:class:`AuthConfig`), the auth store, signing keys, token service, Authlib
server with its grants, the session codec, bearer-token checks on FHIR requests
(:meth:`AuthCore.authenticate`, no database round trip) and the description for the
CapabilityStatement (:meth:`AuthCore.security`).

SMART App Launch 2.x (https://hl7.org/fhir/smart-app-launch/) and Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html) over OAuth 2.0 (RFC 6749)
with PKCE (RFC 7636), registration (RFC 7591), introspection (RFC 7662), revocation
(RFC 7009), JWT client authentication (RFC 7523) and OpenID Connect id_tokens.

The pages and routes (:mod:`smart_auth.pages`, :mod:`smart_auth.routes`, ...) are built
on an ``AuthCore``; :class:`smart_auth.service.SmartAuth` puts the two together. What the
server needs to know about FHIR data comes from :class:`smart_auth.hooks.FhirHooks`.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import anyio.from_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

from smart_auth.client_auth import JwksCache, JwksFetcher, PrivateKeyJwt, fetch_jwks
from smart_auth.discovery import capability_security
from smart_auth.endpoints import Introspection, Revocation
from smart_auth.entitlement import still_entitled
from smart_auth.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
    S256CodeChallenge,
    SmartAuthorizationRequest,
)
from smart_auth.hooks import AuditHook, FhirHooks
from smart_auth.keys import KeyManager
from smart_auth.models import Grantee
from smart_auth.scopes import AccessPolicy
from smart_auth.server import DAY, ServerSettings, SmartAuthorizationServer
from smart_auth.session import SessionCodec
from smart_auth.store import AuthStore, open_auth_store
from smart_auth.tokens import TokenError, TokenService

log = logging.getLogger("smart_auth")

TEMPLATES = Path(__file__).parent / "templates"


_VERIFIED_MAX = 10_000
"""Verified access tokens remembered per process."""


@dataclass
class AuthConfig:
    """Settings of the authorization server.

    ``base_url``: the public FHIR base (``https://host/fhir``); None derives it from each
    request (fine for development; set it behind a proxy). Lifetimes are in seconds:
    access tokens are short (5 minutes); ``offline_access`` refresh tokens last 90 days,
    ``online_access`` ones 8 hours (a working day of being signed in); both are rotated
    on every use. ``registration``: RFC 7591 dynamic registration ``off``, ``token``
    (needs a bearer token of staff or a backend service) or ``open``.
    """

    storage_url: str
    base_url: str | None = None
    access_token_lifetime: int = 300
    offline_refresh_lifetime: int = 90 * DAY
    online_refresh_lifetime: int = 8 * 3600
    id_token_lifetime: int = 300
    code_lifetime: int = 120
    launch_lifetime: int = 600
    session_lifetime: int = 1800
    registration: Literal["off", "token", "open"] = "token"
    lockout_after: int = 5
    lockout_seconds: int = 900
    invitation_lifetime: int = 7 * DAY
    min_password_length: int = 8
    mfa: Literal["off", "optional", "staff", "all"] = "optional"
    """Multi-factor sign-in (``smart_auth.mfa``): who must enrol a TOTP second factor."""


class AuthError(Exception):
    """A FHIR request that cannot be served: ``status`` 401 (no or bad token; send
    ``www_authenticate``) or 403."""

    def __init__(
        self, status: int, code: str, message: str, www_authenticate: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.www_authenticate = www_authenticate


class AuthCore:
    """The authorization server without its routes: store, keys, tokens, grants, token
    checks, discovery."""

    def __init__(
        self,
        config: AuthConfig,
        hooks: FhirHooks,
        *,
        store: AuthStore | None = None,
        fetch_client_jwks: JwksFetcher = fetch_jwks,
    ) -> None:
        """``store``: an already open auth store (else opened from ``storage_url`` by
        :meth:`open`). ``fetch_client_jwks``: how client ``jwks_uri`` documents are
        fetched (none by default: the assembly hands in ``fhir_server.outbound``'s
        guard)."""
        self.config = config
        self.hooks = hooks
        self.audit: AuditHook | None = None
        """The audit trail's hook (set by ``fhir_server`` when audit is on)."""
        self._given_store = store
        self._store: AuthStore | None = store
        self.jwks_cache = JwksCache(fetch_client_jwks)
        self._verified: OrderedDict[
            tuple[str, str], tuple[float, str, str | None, AccessPolicy]
        ] = OrderedDict()
        self.settings = ServerSettings(
            access_token_lifetime=config.access_token_lifetime,
            id_token_lifetime=config.id_token_lifetime,
            offline_refresh_lifetime=config.offline_refresh_lifetime,
            online_refresh_lifetime=config.online_refresh_lifetime,
            code_lifetime=config.code_lifetime,
        )
        self.templates = Environment(
            loader=FileSystemLoader(TEMPLATES),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.keys: KeyManager | None = None
        self.tokens: TokenService | None = None
        self.server: SmartAuthorizationServer | None = None
        self.sessions: SessionCodec | None = None
        if store is not None:
            self._assemble(store)

    def record(
        self,
        kind: str,
        request: Request,
        details: dict[str, str],
        status: int,
        body: bytes | None = None,
    ) -> None:
        """Tell the audit trail of a sign-in, token, revocation or consent event."""
        if self.audit is not None:
            self.audit(kind, request, details, status, body)

    # -- lifetime ----------------------------------------------------------------------
    async def open(self) -> None:
        if self._store is None:
            self._store = open_auth_store(self.config.storage_url)
            self._assemble(self._store)
        self.keys_ready().current_key()

    async def close(self) -> None:
        if self._store is not None and self._given_store is None:
            self._store.close()
            self._store = None

    def _assemble(self, store: AuthStore) -> None:
        longest = max(self.config.access_token_lifetime, self.config.id_token_lifetime)
        self.keys = KeyManager(store, max_token_lifetime=longest + 60)
        self.tokens = TokenService(
            self.keys,
            store,
            self.config.access_token_lifetime,
            id_token_lifetime=self.config.id_token_lifetime,
        )
        self.sessions = SessionCodec(self.keys, self.config.session_lifetime)
        server = SmartAuthorizationServer(
            store,
            self.tokens,
            self.settings,
            self._entitled,
            is_type=getattr(self.hooks, "is_resource_type", None),
        )
        server.register_client_auth_method(
            "private_key_jwt",
            PrivateKeyJwt(store, self.jwks_cache, self.settings.assertion_max_lifetime),
        )
        server.register_grant(
            AuthorizationCodeGrant, [S256CodeChallenge(required=True), SmartAuthorizationRequest()]
        )
        server.register_grant(RefreshTokenGrant)
        server.register_grant(ClientCredentialsGrant)
        server.register_endpoint(Introspection)
        server.register_endpoint(Revocation)
        self.server = server

    def _entitled(self, grantee: Grantee) -> bool:
        """:func:`smart_auth.entitlement.still_entitled`, asked from a grant's worker
        thread (grants run in the threadpool, :func:`smart_auth.server.run_grant`) on the
        event loop that owns the FHIR store."""
        return anyio.from_thread.run(still_entitled, self.hooks, grantee.fhir_user, grantee.patient)

    @property
    def store(self) -> AuthStore:
        if self._store is None:
            raise RuntimeError("SmartAuth is not open")
        return self._store

    def keys_ready(self) -> KeyManager:
        if self.keys is None:
            raise RuntimeError("SmartAuth is not open")
        return self.keys

    def token_service(self) -> TokenService:
        if self.tokens is None:
            raise RuntimeError("SmartAuth is not open")
        return self.tokens

    def oauth(self) -> SmartAuthorizationServer:
        if self.server is None:
            raise RuntimeError("SmartAuth is not open")
        return self.server

    def codec(self) -> SessionCodec:
        if self.sessions is None:
            raise RuntimeError("SmartAuth is not open")
        return self.sessions

    # -- URLs ---------------------------------------------------------------------------
    def fhir_base(self, request: Request) -> str:
        """The public FHIR base URL (configured, or from the request)."""
        if self.config.base_url:
            return self.config.base_url.rstrip("/")
        return str(request.base_url).rstrip("/") + "/fhir"

    @staticmethod
    def auth_base(fhir_base: str) -> str:
        """Where the /auth endpoints are, next to the FHIR base."""
        if fhir_base.endswith("/fhir"):
            return fhir_base[: -len("/fhir")] + "/auth"
        parts = urlsplit(fhir_base)
        return f"{parts.scheme}://{parts.netloc}/auth"

    def endpoints(self, fhir_base: str) -> dict[str, str]:
        auth = self.auth_base(fhir_base)
        urls = {
            "authorize": f"{auth}/authorize",
            "token": f"{auth}/token",
            "introspect": f"{auth}/introspect",
            "revoke": f"{auth}/revoke",
            "jwks": f"{auth}/jwks",
            "launch": f"{auth}/launch",
            "activate": f"{auth}/activate",
            "userinfo": f"{auth}/userinfo",
        }
        if self.config.registration != "off":
            urls["register"] = f"{auth}/register"
        return urls

    # -- resource server side ----------------------------------------------------------------
    def authenticate(self, authorization: str | None, fhir_base_url: str) -> AccessPolicy:
        """The access policy of a request's ``Authorization: Bearer`` token; raises
        :class:`AuthError` (401 with ``WWW-Authenticate``, RFC 6750 section 3)."""
        realm = 'Bearer realm="fhir"'
        if not authorization:
            raise AuthError(401, "login", "An access token is required.", realm)
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError(
                401,
                "login",
                "Send the token as: Authorization: Bearer <token>.",
                f'{realm}, error="invalid_request"',
            )
        base = fhir_base_url.rstrip("/")
        cached = self._verified.get((token, base))
        if cached is not None:
            expires, jti, family, policy = cached
            if time.time() < expires and not self.token_service().is_revoked(jti, family):
                return policy
            del self._verified[(token, base)]  # verified again below, and refused
        try:
            claims = self.token_service().verify_access_token(token, issuer=base, audience=base)
        except TokenError as error:
            message = f"The access token is not valid ({error.reason})."
            raise AuthError(
                401,
                "invalid_token",
                message,
                f'{realm}, error="invalid_token", error_description="{message}"',
            ) from error
        policy = AccessPolicy.from_claims(claims)
        self._remember(token, base, claims, policy)
        return policy

    def _remember(
        self, token: str, base: str, claims: dict[str, Any], policy: AccessPolicy
    ) -> None:
        """Keep a verified token's policy until it expires, so a client's next requests
        skip the signature check (~150 µs); expiry and revocation are still checked on
        every request. Bounded: the oldest entries go first."""
        family = claims.get("family")
        self._verified[(token, base)] = (
            float(claims["exp"]),
            str(claims["jti"]),
            family if isinstance(family, str) else None,
            policy,
        )
        while len(self._verified) > _VERIFIED_MAX:
            self._verified.popitem(last=False)

    def security(self, fhir_base_url: str) -> dict[str, Any]:
        """``CapabilityStatement.rest.security``: the SMART service and the oauth-uris
        extension (https://hl7.org/fhir/smart-app-launch/conformance.html)."""
        return capability_security(self.endpoints(fhir_base_url.rstrip("/")))

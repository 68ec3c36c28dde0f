"""Adapters between the store's records and Authlib's model mixins.

Authlib expects a client object with the methods of ``ClientMixin``
(https://docs.authlib.org/en/latest/specs/rfc6749.html) and grant objects that answer
``get_scope`` / ``get_redirect_uri``. Redirect URIs are compared exactly (RFC 6749
section 3.1.2.3, https://www.rfc-editor.org/rfc/rfc6749#section-3.1.2.3); client
secrets are stored hashed and compared in constant time.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import ClientMixin

from smart_auth.passwords import secret_matches
from smart_auth.scopes import ScopeError, grantable_scopes, narrow_scopes, parse_scopes
from smart_auth.store.base import AuthorizationCode, Client, RefreshToken

# RFC 6749 section 5.2: error_description is limited to %x20-21 / %x23-5B / %x5D-7E.
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")


def safe_text(text: str, limit: int = 300) -> str:
    """``text`` made fit for an OAuth ``error_description`` (no quotes, backslashes or
    non-ASCII), shortened to ``limit`` characters."""
    return _UNSAFE.sub("'", text)[:limit]


class ClientModel(ClientMixin):
    """A registered client, as Authlib sees it. ``is_type``: whether a resource type
    exists (scopes of other types are never granted; None: any well-formed name)."""

    def __init__(self, record: Client, is_type: Callable[[str], bool] | None = None) -> None:
        self.record = record
        self.is_type = is_type

    @property
    def client_id(self) -> str:
        return self.record.client_id

    @property
    def is_public(self) -> bool:
        return self.record.token_endpoint_auth_method == "none"

    @property
    def pkce_optional(self) -> bool:
        """Registered with ``"pkce": "optional"``: may leave PKCE out."""
        return self.record.metadata.get("pkce") == "optional"

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        # SMART requires redirect_uri on every authorization request: no default.
        return None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        """What of ``scope`` this client may be granted (None: nothing): the requested
        scopes within its registered ones; malformed scopes and scopes of types that do
        not exist are left out (:func:`~smart_auth.scopes.grantable_scopes`)."""
        if not scope:
            return None
        try:
            allowed = narrow_scopes(grantable_scopes(scope, self.is_type), self.record.scope)
        except ScopeError:
            return None
        return grantable_scopes(allowed, self.is_type) or None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.record.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.record.client_secret_hash
        return bool(stored) and secret_matches(client_secret, stored or "")

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.record.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.record.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.record.grant_types

    def has_system_scopes(self) -> bool:
        try:
            rules = parse_scopes(self.record.scope).rules
        except ScopeError:
            return False
        return any(rule.context == "system" for rule in rules)


@dataclass
class Grantee:
    """The person an authorization is for, with the launch context chosen for it.

    ``granted_scope`` is what the user agreed to on the consent page (None: as asked).
    """

    user_id: str
    fhir_user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    auth_time: int | None = None
    nonce: str | None = None
    granted_scope: str | None = None

    def get_user_id(self) -> str:
        return self.user_id


class CodeModel:
    """An authorization code taken from the store (already single-used)."""

    def __init__(self, record: AuthorizationCode) -> None:
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = record.code_challenge_method

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope

    def get_nonce(self) -> str | None:
        return self.record.nonce

    def get_auth_time(self) -> int | None:
        return self.record.auth_time


class RefreshModel:
    """A refresh token record for Authlib's refresh-token grant."""

    def __init__(self, record: RefreshToken) -> None:
        self.record = record

    def check_client(self, client: ClientModel) -> bool:
        return client.client_id == self.record.client_id

    def get_scope(self) -> str:
        return self.record.scope

    def is_expired(self) -> bool:
        expires = self.record.expires_at
        return expires is not None and expires <= time.time()

    def is_revoked(self) -> bool:
        return self.record.revoked or self.record.replaced_by is not None


@dataclass
class PresentedToken:
    """A token sent to the introspection or revocation endpoint: an access token (its
    verified ``claims``) or a refresh token (its ``refresh`` record)."""

    kind: str
    client_id: str
    claims: dict[str, Any] | None = None
    refresh: RefreshToken | None = None
    raw: str = ""

    def check_client(self, client: ClientModel) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        if self.claims is not None:
            return str(self.claims.get("scope", ""))
        return self.refresh.scope if self.refresh else ""

    def is_expired(self) -> bool:
        if self.claims is not None:
            return int(self.claims.get("exp", 0)) <= time.time()
        return RefreshModel(self.refresh).is_expired() if self.refresh else True

    def is_revoked(self) -> bool:
        if self.refresh is not None:
            return RefreshModel(self.refresh).is_revoked()
        return False

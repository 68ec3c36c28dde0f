"""The grants: authorization code with PKCE (RFC 6749 section 4.1, RFC 7636), refresh
token with rotation (RFC 6749 section 6, RFC 9700 section 4.14.2) and client
credentials for SMART Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html).

SMART App Launch 2.x (https://hl7.org/fhir/smart-app-launch/app-launch.html#request-4)
adds to the authorization request: ``code_challenge`` with ``code_challenge_method=S256``
for every client (``plain`` and a missing challenge are refused; a client registered with
``"pkce": "optional"`` may send none, but one it sends is verified), ``aud`` equal to the
FHIR base URL, and for an EHR launch the ``launch`` parameter naming a launch context.

Scopes: what cannot be granted is left out of the grant, not refused (RFC 6749 section
3.3): malformed scopes, scopes of types that do not exist, scopes beyond the client's
registration, ``system/`` scopes (Backend Services only) and, without a ``launch``
parameter, the ``launch`` scope. A request carrying a valid ``launch`` parameter is an
EHR launch even without the ``launch`` scope (the SMART JavaScript client 2.x sends
``launch/patient`` alone), for a client registered for ``launch``, which is then granted.
Only a request left with nothing to grant is ``invalid_scope``.

Before tokens are issued for a user (code exchange and every refresh), the user must
still exist and not be disabled, and must still be entitled to the grant's context
(:meth:`SmartAuthorizationServer.entitled`: a caregiver's RelatedPerson still active and
within its period, a Person still linking the patient, a Patient record not deleted);
otherwise the grant is revoked (its refresh tokens and the access tokens issued from it)
and the answer is ``invalid_grant``.
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749 import (
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
    grants,
)
from authlib.oauth2.rfc7636 import CodeChallenge

from smart_auth.models import ClientModel, CodeModel, Grantee, RefreshModel, safe_text
from smart_auth.passwords import hash_secret
from smart_auth.scopes import parse_scope, parse_scopes
from smart_auth.store.base import AuthorizationCode, LaunchContext

APP_AUTH_METHODS = ["none", "client_secret_basic", "private_key_jwt"]


_NOT_ENTITLED = (
    "The user may no longer act for this patient (the relationship ended, or the record"
    " was removed); sign in again."
)


def _active_user(server: Any, user_id: str) -> bool:
    """The user account still exists and is not disabled."""
    user = server.store.get_user(user_id)
    return user is not None and not user.disabled


class S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only (SMART App Launch 2.x)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_verifier(self, grant: Any, result: Any) -> None:
        """As Authlib, except that a client registered with ``"pkce": "optional"`` whose
        code was asked for without a challenge exchanges it without a verifier."""
        request = grant.request
        code: CodeModel = request.authorization_code
        client: ClientModel = request.client
        if (
            client.pkce_optional
            and not code.code_challenge
            and not request.form.get("code_verifier")
        ):
            return
        super().validate_code_verifier(grant, result)


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


class SmartAuthorizationRequest:
    """Extension of the authorization code grant: the SMART checks, run after Authlib
    validated the client, the redirect URI and the scope (errors then go back to the
    registered redirect URI)."""

    def __call__(self, grant: grants.AuthorizationCodeGrant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)

    def validate(self, grant: grants.AuthorizationCodeGrant, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        method = data.get("code_challenge_method")
        if challenge and method != "S256":
            raise InvalidRequestError("code_challenge_method must be S256.")
        if not challenge and (method or not grant.request.client.pkce_optional):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256).")
        aud = data.get("aud")
        if not aud:
            raise InvalidRequestError("Missing aud: send the FHIR base URL.")
        if not _same_url(aud, grant.request.fhir_base):
            raise InvalidRequestError(safe_text(f"aud must be {grant.request.fhir_base}"))
        scope_words = (grant.request.scope or "").split()  # within the client's scopes
        launch = data.get("launch")
        if launch:
            preset = getattr(grant.request, "preset_launch", None)
            context = preset if preset is not None else grant.server.store.get_launch(launch)
            if context is None or context.launch_id != launch:
                raise InvalidRequestError("Unknown or expired launch context.")
            if "launch" not in scope_words:
                # an EHR launch named by its parameter alone (the SMART JavaScript client
                # 2.x asks for launch/patient but adds no bare launch scope)
                if grant.request.client.get_allowed_scope("launch") is None:
                    raise InvalidScopeError("This client is not registered for EHR launch.")
                scope_words.insert(0, "launch")
            grant.request.launch_context = context
        else:
            scope_words = [word for word in scope_words if word != "launch"]
        kept = [word for word in scope_words if not _is_system(word)]
        if not kept:
            raise InvalidScopeError(
                "None of the requested scopes can be granted to this client (system scopes"
                " are for backend services only)."
            )
        grant.request.scope = " ".join(kept)


def _is_system(word: str) -> bool:
    rule = parse_scope(word)  # words of a narrowed scope are well formed
    return rule is not None and rule.context == "system"


def launch_context(grant: grants.AuthorizationCodeGrant) -> LaunchContext | None:
    """The EHR launch context the validated request names, if any."""
    return getattr(grant.request, "launch_context", None)


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    """Authorization code grant over the auth store; codes are stored hashed and used
    once (a second use revokes the refresh tokens issued from the code)."""

    TOKEN_ENDPOINT_AUTH_METHODS = APP_AUTH_METHODS

    def save_authorization_code(self, code: str, request: Any) -> None:
        grantee: Grantee = request.user
        data = request.payload.data
        now = int(time.time())
        self.server.store.add_code(
            AuthorizationCode(
                code_hash=hash_secret(code),
                client_id=request.client.client_id,
                redirect_uri=request.payload.redirect_uri,
                scope=request.scope if grantee.granted_scope is None else grantee.granted_scope,
                user_id=grantee.user_id,
                fhir_user=grantee.fhir_user,
                patient=grantee.patient,
                encounter=grantee.encounter,
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                nonce=data.get("nonce"),
                auth_time=grantee.auth_time,
                expires_at=now + self.server.settings.code_lifetime,
                state=data.get("state"),
                audience=data.get("aud"),
                created_at=now,
            )
        )

    def query_authorization_code(self, code: str, client: ClientModel) -> CodeModel | None:
        if not isinstance(code, str) or len(code) > 200:
            return None
        store = self.server.store
        code_hash = hash_secret(code)
        record = store.take_code(code_hash)
        if record is None:
            used = store.get_code(code_hash)
            if used is not None and used.used_at is not None:
                self.server.revoke_grant(code_hash)  # RFC 6749 section 4.1.2: a replayed code
            return None
        if record.client_id != client.client_id:
            return None
        return CodeModel(record)

    def delete_authorization_code(self, authorization_code: CodeModel) -> None:
        """Already used up by :meth:`query_authorization_code`."""

    def authenticate_user(self, authorization_code: CodeModel) -> Grantee | None:
        record = authorization_code.record
        if not _active_user(self.server, record.user_id):
            return None
        return Grantee(
            user_id=record.user_id,
            fhir_user=record.fhir_user,
            patient=record.patient,
            encounter=record.encounter,
            auth_time=record.auth_time,
            nonce=record.nonce,
        )

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client = self.request.client
        code: CodeModel = self.request.authorization_code
        grantee = self.authenticate_user(code)
        if grantee is None:
            self.server.revoke_grant(code.record.code_hash)
            raise InvalidGrantError("The user of this code no longer exists or is disabled.")
        if not self.server.entitled(grantee):
            self.server.revoke_grant(code.record.code_hash)
            raise InvalidGrantError(_NOT_ENTITLED)
        self.request.user = grantee
        body = self.server.issue_tokens(
            self.request, client, grantee, code.get_scope(), family_id=code.record.code_hash
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


class RefreshTokenGrant(grants.RefreshTokenGrant):
    """Refresh tokens are rotated on every use; presenting a rotated one again revokes
    its family (RFC 9700 section 4.14.2)."""

    TOKEN_ENDPOINT_AUTH_METHODS = APP_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshModel | None:
        if not isinstance(refresh_token, str) or len(refresh_token) > 200:
            return None
        store = self.server.store
        record = store.get_refresh(hash_secret(refresh_token))
        if record is None:
            return None
        token = RefreshModel(record)
        if record.replaced_by is not None:
            self.server.revoke_grant(record.family_id)
            return None
        if token.is_revoked() or token.is_expired():
            return None
        return token

    def authenticate_user(self, refresh_token: RefreshModel) -> Grantee | None:
        record = refresh_token.record
        if not record.user_id or not _active_user(self.server, record.user_id):
            return None
        return Grantee(
            user_id=record.user_id,
            fhir_user=record.fhir_user,
            patient=record.patient,
            encounter=record.encounter,
            auth_time=record.auth_time,
        )

    def revoke_old_credential(self, refresh_token: RefreshModel) -> None:
        """Done atomically by the rotation in :meth:`create_token_response`."""

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        token: RefreshModel = self.request.refresh_token
        grantee = self.authenticate_user(token)
        if grantee is None:
            self.server.revoke_grant(token.record.family_id)
            raise InvalidGrantError(
                "The user of this refresh token no longer exists or is disabled."
            )
        if not self.server.entitled(grantee):
            self.server.revoke_grant(token.record.family_id)
            raise InvalidGrantError(_NOT_ENTITLED)
        self.request.user = grantee
        scope = self.request.payload.scope or token.get_scope()
        body = self.server.issue_tokens(
            self.request, self.request.client, grantee, scope, rotate=token.record
        )
        return 200, body, self.TOKEN_RESPONSE_HEADER


class ClientCredentialsGrant(grants.ClientCredentialsGrant):
    """SMART Backend Services: ``private_key_jwt`` clients get ``system/`` scopes."""

    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: ClientModel = self.request.client
        requested = self.request.payload.scope or ""
        granted = client.get_allowed_scope(requested) or ""
        system = [r for r in parse_scopes(granted, strict=False).rules if r.context == "system"]
        kept = [word for word in granted.split() if word.startswith("system/")]
        if not system or not kept:
            raise InvalidScopeError("Ask for system/ scopes this client is registered for.")
        body = self.server.issue_tokens(self.request, client, None, " ".join(kept))
        return 200, body, self.TOKEN_RESPONSE_HEADER

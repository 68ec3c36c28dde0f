"""Token introspection (RFC 7662, https://www.rfc-editor.org/rfc/rfc7662) and token
revocation (RFC 7009, https://www.rfc-editor.org/rfc/rfc7009), as SMART describes them
(https://hl7.org/fhir/smart-app-launch/token-introspection.html).

Introspection needs a confidential client (``client_secret_basic`` or
``private_key_jwt``); it may introspect the tokens issued to it, and a client registered
with ``system/`` scopes (a resource server or backend) may introspect any token. An
unknown, expired or revoked token is ``{"active": false}``. Revocation accepts public
clients too; revoking a refresh token revokes its whole grant: the refresh tokens rotated
from the same grant and the access tokens issued from it (RFC 7009 section 2.1);
revoking an access token records its ``jti``. Both are checked on every FHIR request
within the revocation poll interval.
"""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from smart_auth.models import ClientModel, PresentedToken
from smart_auth.passwords import hash_secret
from smart_auth.tokens import TokenError


def _find_token(server: Any, request: Any, token: str, hint: str | None) -> PresentedToken | None:
    if not isinstance(token, str) or not token or len(token) > 8192:
        return None
    if hint != "refresh_token" and token.count(".") == 2:
        try:
            claims = server.tokens.verify_access_token(
                token, issuer=request.fhir_base, audience=None
            )
        except TokenError:
            return None
        return PresentedToken(
            "access_token", str(claims.get("client_id")), claims=claims, raw=token
        )
    if "." in token or len(token) > 200:
        return None
    record = server.store.get_refresh(hash_secret(token))
    if record is None:
        return None
    return PresentedToken("refresh_token", record.client_id, refresh=record, raw=token)


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "private_key_jwt"]

    def authenticate_token(self, request: Any, client: ClientModel) -> PresentedToken | None:
        self.check_params(request, client)
        token = _find_token(
            self.server, request, request.form["token"], request.form.get("token_type_hint")
        )
        if token and self.check_permission(token, client, request):
            return token
        return None

    def check_permission(self, token: PresentedToken, client: ClientModel, request: Any) -> bool:
        return token.client_id == client.client_id or client.has_system_scopes()

    def introspect_token(self, token: PresentedToken) -> dict[str, Any]:
        if token.claims is not None:
            claims = token.claims
            body = {
                "active": True,
                "token_type": "Bearer",
                "client_id": token.client_id,
                "scope": claims.get("scope", ""),
                "sub": claims.get("sub"),
                "iss": claims.get("iss"),
                "aud": claims.get("aud"),
                "exp": claims.get("exp"),
                "iat": claims.get("iat"),
                "jti": claims.get("jti"),
            }
            for claim in ("patient", "encounter", "fhirUser"):
                if claims.get(claim):
                    body[claim] = claims[claim]
            return body
        record = token.refresh
        assert record is not None
        body = {
            "active": True,
            "token_type": "refresh_token",
            "client_id": record.client_id,
            "scope": record.scope,
            "sub": record.user_id,
            "exp": record.expires_at,
            "iat": record.created_at,
        }
        if record.patient:
            body["patient"] = record.patient
        if record.encounter:
            body["encounter"] = record.encounter
        if record.fhir_user:
            body["fhirUser"] = record.fhir_user
        return {k: v for k, v in body.items() if v is not None}


class Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["none", "client_secret_basic", "private_key_jwt"]

    def authenticate_token(self, request: Any, client: ClientModel) -> PresentedToken | None:
        self.check_params(request, client)
        token = _find_token(
            self.server, request, request.form["token"], request.form.get("token_type_hint")
        )
        # RFC 7009 section 2.2: an unknown token, or another client's, is not an error.
        if token is None or not token.check_client(client):
            return None
        return token

    def revoke_token(self, token: PresentedToken, request: Any) -> None:
        if token.refresh is not None:
            self.server.revoke_grant(token.refresh.family_id)
        else:
            self.server.tokens.revoke_access_token(token.raw)

"""Authlib's OAuth 2.0 authorization server (RFC 6749,
https://www.rfc-editor.org/rfc/rfc6749) behind a thin Starlette adapter.

Authlib's server core is synchronous and framework-agnostic: the async routes read the
request (query and form) first, build a :class:`SmartRequest` from plain data, and run
the grant in a threadpool (:func:`run_grant`) against the synchronous auth store. The
token response (RFC 6749 section 5.1, SMART App Launch 2.x
https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5) carries ``scope`` as
granted, the ``patient`` / ``encounter`` launch context, an ``id_token`` for ``openid``,
a rotated refresh token for ``offline_access`` / ``online_access``, and
``Cache-Control: no-store``.

Transport security: Authlib refuses ``http://`` request URIs; this adapter leaves TLS to
the deployment (a reverse proxy terminating https in front of the server), so it does
not repeat that check.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidGrantError,
    JsonPayload,
    JsonRequest,
    OAuth2Payload,
    OAuth2Request,
)
from authlib.oauth2.rfc6749.errors import OAuth2Error
from pymongo.errors import PyMongoError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from smart_auth.bodies import parse_json
from smart_auth.models import ClientModel, Grantee, safe_text
from smart_auth.passwords import hash_secret, new_secret
from smart_auth.scope_limits import without_user_scopes
from smart_auth.store.base import AuthStore, RefreshToken
from smart_auth.tokens import TokenService

log = logging.getLogger("smart_auth")

DAY = 24 * 3600


@dataclass
class ServerSettings:
    """Lifetimes and limits the server applies (seconds)."""

    access_token_lifetime: int = 300
    id_token_lifetime: int = 300
    offline_refresh_lifetime: int = 90 * DAY
    online_refresh_lifetime: int = 8 * 3600
    code_lifetime: int = 120
    assertion_max_lifetime: int = 300


class _Payload(OAuth2Payload):
    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        self._data: dict[str, str] = {}
        for key, value in items:
            self._datalist[key].append(value)
            self._data.setdefault(key, value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class SmartRequest(OAuth2Request):
    """An OAuth 2.0 request built from data the async route has already read."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Mapping[str, str],
        query: Sequence[tuple[str, str]] = (),
        form: Sequence[tuple[str, str]] = (),
        *,
        fhir_base: str,
        auth_base: str,
    ) -> None:
        # Authlib's __init__ would refuse http:// URIs (see the module docstring).
        self.method = method
        self.uri = uri
        self.headers = headers
        self._body = None
        self.payload = _Payload([*query, *form])
        self.client = None
        self.auth_method = None
        self.user = None
        self.authorization_code = None
        self.refresh_token = None
        self.credential = None
        self._scope = None
        self._args = _first(query)
        self._form = _first(form)
        self.fhir_base = fhir_base
        self.auth_base = auth_base

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form

    @property
    def token_url(self) -> str:
        return f"{self.auth_base}/token"


class SmartJsonRequest(JsonRequest):
    """A JSON request (client registration, RFC 7591) built from a parsed body."""

    def __init__(
        self, method: str, uri: str, headers: Mapping[str, str], body: Any, *, fhir_base: str
    ) -> None:
        super().__init__(method, uri, headers)
        self.payload = _JsonPayload(body)
        self.fhir_base = fhir_base


class _JsonPayload(JsonPayload):
    def __init__(self, data: Any) -> None:
        self._data = data

    @property
    def data(self) -> Any:
        return self._data


def _first(items: Sequence[tuple[str, str]]) -> dict[str, str]:
    result: dict[str, str] = {}
    for key, value in items:
        result.setdefault(key, value)
    return result


@dataclass
class RawResponse:
    """What Authlib answers (status, body, headers), made into a Starlette response
    back in the event loop."""

    status: int
    body: Any
    headers: list[tuple[str, str]]

    def to_response(self) -> Response:
        headers = {k: v for k, v in self.headers if k.lower() != "content-type"}
        if isinstance(self.body, dict):
            headers.setdefault("Cache-Control", "no-store")
            headers.setdefault("Pragma", "no-cache")
            return JSONResponse(self.body, status_code=self.status, headers=headers)
        return Response(self.body or b"", status_code=self.status, headers=headers)

    @property
    def location(self) -> str | None:
        for key, value in self.headers:
            if key.lower() == "location":
                return value
        return None


def oauth_error(
    status: int, error: str, description: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An OAuth 2.0 error response (RFC 6749 section 5.2)."""
    return JSONResponse(
        {"error": error, "error_description": safe_text(description)},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})},
    )


async def run_grant(func: Callable[..., Any], *args: Any) -> Response:
    """Run a synchronous Authlib call in the threadpool; turn its answer, or an OAuth
    error it raised, into a response. A store out of space is a ``temporarily_unavailable``
    (503, https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1); other unexpected
    failures are logged and answered with a ``server_error`` (500)."""
    try:
        result = await run_in_threadpool(func, *args)
    except OAuth2Error as error:
        status, body, headers = error()
        return RawResponse(status, body, list(headers)).to_response()
    except Exception as failure:
        if storage_full(failure):
            log.error("authorization server: storage full: %s", failure)
            return oauth_error(
                503,
                "temporarily_unavailable",
                "The server has no storage space left; try again later.",
                {"Retry-After": "60"},
            )
        log.exception("authorization server failure")
        return oauth_error(500, "server_error", "The server could not process the request.")
    if isinstance(result, RawResponse):
        return result.to_response()
    if isinstance(result, Response):
        return result
    return JSONResponse(result)


class SmartAuthorizationServer(AuthorizationServer):
    """Authlib's server with SMART token issuing over the auth store."""

    def __init__(
        self,
        store: AuthStore,
        tokens: TokenService,
        settings: ServerSettings,
        entitled: Callable[[Grantee], bool] | None = None,
        is_type: Callable[[str], bool] | None = None,
    ) -> None:
        """``entitled``: whether the person of a grant may still act as it says (called
        from the grant's worker thread before tokens are issued; None: always).
        ``is_type``: whether a FHIR resource type exists (scopes of other types are left
        out of every grant; None: any well-formed type name)."""
        super().__init__(scopes_supported=None)
        self.store = store
        self.tokens = tokens
        self.settings = settings
        self._entitled = entitled
        self.is_type = is_type

    def entitled(self, grantee: Grantee) -> bool:
        """Whether the user of a grant still may act for its patient (or as its fhirUser)."""
        return self._entitled is None or self._entitled(grantee)

    def revoke_grant(self, family_id: str) -> None:
        """Revoke a grant: its refresh tokens (the family) and the access tokens issued
        from it (RFC 7009 section 2.1; RFC 6749 section 4.1.2 for a replayed code)."""
        self.store.revoke_family(family_id)
        self.tokens.revoke_family_tokens(family_id)

    # -- Authlib framework hooks ------------------------------------------------------
    def query_client(self, client_id: str) -> ClientModel | None:
        if not isinstance(client_id, str) or not client_id or len(client_id) > 200:
            return None
        record = self.store.get_client(client_id)
        return ClientModel(record, self.is_type) if record else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        """Tokens are saved where they are issued (:meth:`issue_tokens`)."""

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        if isinstance(request, OAuth2Request):
            return request
        raise TypeError("build a SmartRequest in the route")

    def create_json_request(self, request: Any) -> JsonRequest:
        if isinstance(request, JsonRequest):
            return request
        raise TypeError("build a SmartJsonRequest in the route")

    def handle_response(self, status: int, body: Any, headers: Any) -> RawResponse:
        return RawResponse(status, body, list(headers or []))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        log.debug("signal %s", name)

    def validate_requested_scope(self, scope: str | None) -> None:
        """No scope is refused by itself: what cannot be granted (malformed, a type that
        does not exist, beyond the client's registration) is left out of the grant
        (:meth:`ClientModel.get_allowed_scope`, RFC 6749 section 3.3); only a request left
        with nothing to grant is ``invalid_scope``."""

    # -- token issuing ------------------------------------------------------------------
    def issue_tokens(
        self,
        request: SmartRequest,
        client: ClientModel,
        grantee: Grantee | None,
        scope: str,
        *,
        family_id: str | None = None,
        rotate: RefreshToken | None = None,
    ) -> dict[str, Any]:
        """The token response body: a JWT access token, and for a user an id_token
        (``openid``) and a refresh token (``offline_access`` / ``online_access``;
        ``rotate``: the refresh token it replaces, atomically). A user without a
        ``fhirUser`` gets no ``user/`` scopes (they would have no record to act as)."""
        base = request.fhir_base
        if rotate is not None:
            family_id = rotate.family_id
        elif grantee is not None and family_id is None:
            family_id = new_secret(16)
        if grantee is not None and not grantee.fhir_user:
            scope = without_user_scopes(scope)
        access, claims = self.tokens.issue_access_token(
            issuer=base,
            audience=base,
            client_id=client.client_id,
            scope=scope,
            subject=grantee.user_id if grantee else None,
            fhir_user=grantee.fhir_user if grantee else None,
            patient=grantee.patient if grantee else None,
            encounter=grantee.encounter if grantee else None,
            lifetime=self.settings.access_token_lifetime,
            family_id=family_id if grantee else None,
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": int(claims["exp"]) - int(claims["iat"]),
            "scope": scope,
        }
        if grantee is None:
            return body
        if grantee.patient:
            body["patient"] = grantee.patient
        if grantee.encounter:
            body["encounter"] = grantee.encounter
        words = scope.split()
        refresh_scope = rotate.scope if rotate else scope
        if not grantee.fhir_user:
            refresh_scope = without_user_scopes(refresh_scope)
        refresh_words = refresh_scope.split()
        wants_refresh = "offline_access" in refresh_words or "online_access" in refresh_words
        if wants_refresh and client.check_grant_type("refresh_token"):
            raw = new_secret()
            lifetime = (
                self.settings.offline_refresh_lifetime
                if "offline_access" in refresh_words
                else self.settings.online_refresh_lifetime
            )
            now = int(time.time())
            record = RefreshToken(
                token_hash=hash_secret(raw),
                client_id=client.client_id,
                user_id=grantee.user_id,
                scope=refresh_scope,
                fhir_user=grantee.fhir_user,
                patient=grantee.patient,
                encounter=grantee.encounter,
                expires_at=now + lifetime,
                family_id=family_id or "",
                auth_time=grantee.auth_time,
                created_at=now,
            )
            if rotate is not None:
                if not self.store.rotate_refresh(rotate.token_hash, record):
                    # used twice at once (the store revoked the family), or revoked meanwhile
                    self.tokens.revoke_access_token(str(claims["jti"]))
                    self.tokens.revoke_family_tokens(rotate.family_id)
                    raise InvalidGrantError("The refresh token was already used or revoked.")
            else:
                self.store.add_refresh(record)
            body["refresh_token"] = raw
        if "openid" in words:
            fhir_user = None
            if grantee.fhir_user and "fhirUser" in words:
                fhir_user = f"{base}/{grantee.fhir_user}"
            body["id_token"] = self.tokens.issue_id_token(
                issuer=base,
                client_id=client.client_id,
                subject=grantee.user_id,
                fhir_user=fhir_user,
                nonce=grantee.nonce,
                auth_time=grantee.auth_time,
                lifetime=self.settings.id_token_lifetime,
                access_token=access,
            )
        return body


def storage_full(error: BaseException) -> bool:
    """Whether ``error`` is the auth store saying it has no space left: SQLite's
    ``SQLITE_FULL`` or MongoDB's ``OutOfDiskSpace`` (14031)."""
    if isinstance(error, sqlite3.Error):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    if isinstance(error, PyMongoError):
        return getattr(error, "code", None) == 14031
    return False


def json_body(raw: bytes) -> Any:
    """The parsed JSON body (None when empty), or a ValueError: not UTF-8 JSON, or
    nested deeper than :data:`smart_auth.bodies.MAX_JSON_DEPTH`."""
    return parse_json(raw)

"""Websocket binding tokens of the Subscriptions R5 Backport IG
(https://hl7.org/fhir/uv/subscriptions-backport/OperationDefinition-backport-subscription-get-ws-binding-token.html):
a browser cannot set ``Authorization`` on a websocket, so it asks
``Subscription/[id]/$get-ws-binding-token`` (with its access token) for a short-lived
token and sends ``bind-with-token [token]`` on the socket.

A binding token is a JWT the server signs with its access-token keys
(``smart_auth.keys``), with its own type (``typ`` :data:`TOKEN_TYPE`: it is refused as
an access token, and an access token is refused as a binding token), the FHIR base as
issuer, and the claims of the access token that asked for it (client, user, scopes,
patient, grant ``family``) plus the Subscription ids it binds (``subscriptions``). It
lives :data:`LIFETIME` seconds and is verified without a database round trip, in any
process (the keys are shared through the store): a socket may connect to another worker
than the one that issued it. Its grant is checked when it binds (a revoked grant, a
disabled account, a deleted app refuse it) and the Subscriptions are read again with its
claims' access, so it binds no more than the access token could see.

Without authorization (``FHIR_SERVER_AUTH=off``) nothing is protected: the token is an
unsigned note of the ids and expiry (``open.`` prefix).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jws import extract_compact

from smart_auth.keys import ALGORITHM
from smart_auth.scopes import AccessPolicy

TOKEN_TYPE = "ws-binding+jwt"
LIFETIME = 60
"""Seconds a binding token may be used to bind (a bound socket stays bound)."""
AUDIENCE = "urn:fhir-server:websocket"
_OPEN = "open."
_POLICY_CLAIMS = ("sub", "client_id", "scope", "fhirUser", "patient", "family")


class BadToken(Exception):
    """A binding token that must be refused (the reason is told to the client)."""


@dataclass(frozen=True)
class Binding:
    """What a valid binding token allows: the Subscriptions and whose access."""

    subscriptions: tuple[str, ...]
    policy: AccessPolicy | None
    """None: authorization is off."""
    expires: int


def issue_token(
    auth: Any, base: str, policy: AccessPolicy | None, ids: list[str]
) -> tuple[str, int]:
    """The token binding ``ids`` for the caller of ``policy`` and its expiry (seconds)."""
    now = int(time.time())
    expires = now + LIFETIME
    if auth is None or policy is None:
        note = json.dumps({"subscriptions": ids, "exp": expires}).encode()
        return _OPEN + base64.urlsafe_b64encode(note).decode().rstrip("="), expires
    claims: dict[str, Any] = {
        "iss": base.rstrip("/"),
        "aud": AUDIENCE,
        "sub": policy.subject or policy.client_id,
        "client_id": policy.client_id,
        "scope": policy.scope,
        "iat": now,
        "exp": expires,
        "jti": uuid.uuid4().hex,
        "subscriptions": ids,
    }
    context = {
        "fhirUser": policy.fhir_user,
        "patient": policy.patient,
        "family": policy.family,
    }
    claims.update({k: v for k, v in context.items() if v})
    key = auth.token_service().keys.current_key()
    header = {"alg": ALGORITHM, "kid": key.kid, "typ": TOKEN_TYPE}
    return jwt.encode(header, claims, key, algorithms=[ALGORITHM]), expires


def verify(auth: Any, base: str, token: str) -> Binding:
    """The binding of a valid token; raises :class:`BadToken`."""
    now = time.time()
    if auth is None:
        return _open(token, now)
    service = auth.token_service()
    try:
        header = extract_compact(token.encode()).headers()
        kid = header.get("kid")
        key = service.keys.key_for(kid) if isinstance(kid, str) else None
        if key is None or header.get("alg") != ALGORITHM:
            raise BadToken("the token is not one of this server's")
        claims = dict(jwt.decode(token, key, algorithms=[ALGORITHM]).claims)
    except (JoseError, ValueError, UnicodeError):
        raise BadToken("the token is not one of this server's") from None
    if header.get("typ") != TOKEN_TYPE or claims.get("aud") != AUDIENCE:
        raise BadToken("not a binding token (get one from $get-ws-binding-token)")
    if str(claims.get("iss", "")).rstrip("/") != base.rstrip("/"):
        raise BadToken("the token was issued for another server address")
    expires = claims.get("exp")
    if not isinstance(expires, int) or now > expires:
        raise BadToken("the token has expired")
    ids = claims.get("subscriptions")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadToken("the token names no subscriptions")
    if service.is_revoked(str(claims.get("jti") or ""), claims.get("family")):
        raise BadToken("the authorization of the token was revoked")
    policy = AccessPolicy.from_claims({k: claims[k] for k in _POLICY_CLAIMS if k in claims})
    return Binding(tuple(ids), policy, expires)


def _open(token: str, now: float) -> Binding:
    if not token.startswith(_OPEN):
        raise BadToken("the token is not one of this server's")
    try:
        text = token[len(_OPEN) :]
        note = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        ids, expires = note["subscriptions"], note["exp"]
    except (ValueError, KeyError, TypeError):
        raise BadToken("the token is not one of this server's") from None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BadToken("the token names no subscriptions")
    if not isinstance(expires, int) or now > expires:
        raise BadToken("the token has expired")
    return Binding(tuple(ids), None, expires)

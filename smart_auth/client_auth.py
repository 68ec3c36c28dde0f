"""``private_key_jwt`` client authentication (RFC 7523 section 2.2 and 3,
https://www.rfc-editor.org/rfc/rfc7523#section-3) as SMART profiles it
(https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html).

The client signs an assertion with RS384 or ES384; its public keys come from its
registered ``jwks`` or are fetched from its ``jwks_uri`` (cached, refetched when a kid is
unknown). Fetching is not done here: the assembly hands :class:`SmartAuth` a
:class:`JwksFetcher` (the server's guard of outbound requests, ``fhir_server.outbound``:
https, public addresses only unless allow-listed, time and size limits); without one no
``jwks_uri`` is fetched. Whatever goes wrong with a fetch, the client is told the same
text (:data:`JWKS_URI_FAILED`), so the token endpoint is no probe of the server's network.
Checked: ``iss`` = ``sub`` = client_id, ``aud`` = the token endpoint URL (or
the endpoint called), ``exp`` present and at most five minutes ahead, ``jti`` never seen
before (kept in the auth store until the assertion expires, so a replay fails in any
server process).

The JOSE header may carry parameters this server does not know (some bulk-data clients
put the key's ``kty`` there): RFC 7515 section 4
(https://www.rfc-editor.org/rfc/rfc7515#section-4) has a recipient ignore those unless
``crit`` lists them. This server implements no extension, so an assertion with ``crit``
is refused, and so is any ``alg`` but RS384 and ES384 (``none`` included).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from smart_auth.models import ClientModel, safe_text
from smart_auth.store.base import AuthStore

ALGORITHMS = ["RS384", "ES384"]
_REGISTRY = JWSRegistry(algorithms=ALGORITHMS, strict_check_header=False)
"""Verifies RS384 / ES384 only; header parameters it does not know are ignored (RFC 7515
section 4), those it knows are still checked (``kid`` a string, ...)."""
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
LEEWAY = 10

JWKS_URI_FAILED = (
    "Could not get the client's keys from its jwks_uri (an https URL of a public host"
    " serving a JWKS)."
)
"""The one answer for every failure of a ``jwks_uri`` fetch: refused address, connection
refused, TLS error, HTTP error status, time or size limit, not a JWKS."""
JWKS_URI_REFUSED = (
    "jwks_uri: must be an https URL of a public host (or of one the server's outbound"
    " allow list names)"
)
"""The registration answer for a ``jwks_uri`` the outbound guard would refuse."""


class JwksFetcher(Protocol):
    """How client ``jwks_uri`` documents are fetched (``fhir_server.outbound``'s guard)."""

    def get_json(self, url: str) -> Any:
        """The JSON document at ``url``; raises on any failure."""
        ...

    def refusal(self, url: str) -> str | None:
        """Why ``url`` would be refused, without any network activity (None: it may be
        tried)."""
        ...


class NoFetching:
    """The default :class:`JwksFetcher`: this server fetches no ``jwks_uri``."""

    def get_json(self, url: str) -> Any:
        raise ValueError("no outbound requests are configured")

    def refusal(self, url: str) -> str | None:
        return "this server fetches no jwks_uri"


fetch_jwks: JwksFetcher = NoFetching()
"""The fetcher of :class:`SmartAuth` when the assembly gives none."""


class JwksCache:
    """Client key sets fetched from ``jwks_uri``: kept ``ttl`` seconds; an unknown kid
    refetches at most once every ``min_refetch`` seconds, and after a failed fetch the
    next one waits as long (token requests cannot make the server fetch in a loop)."""

    def __init__(self, fetch: JwksFetcher, ttl: float = 300.0, min_refetch: float = 10.0):
        self.fetch = fetch
        self.ttl = ttl
        self.min_refetch = min_refetch
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._failed: dict[str, float] = {}
        self._lock = threading.Lock()

    def refusal(self, uri: str) -> str | None:
        """Why a ``jwks_uri`` would not be fetched (no network activity; None: it may)."""
        return self.fetch.refusal(uri)

    def get(self, uri: str, kid: str | None) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(uri)
        if cached is not None:
            fetched_at, jwks = cached
            known = kid is None or any(k.get("kid") == kid for k in jwks.get("keys", []))
            fresh = now - fetched_at < self.ttl
            if fresh and (known or now - fetched_at < self.min_refetch):
                return jwks
        with self._lock:
            failed_at = self._failed.get(uri)
        if failed_at is not None and now - failed_at < self.min_refetch:
            raise InvalidClientError(description=JWKS_URI_FAILED)
        try:
            jwks = self.fetch.get_json(uri)
            keys = jwks.get("keys") if isinstance(jwks, dict) else None
            if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
                raise ValueError("not a JWKS")
        except Exception as error:  # one answer, whatever the failure (see the docstring)
            with self._lock:
                self._failed[uri] = now
            raise InvalidClientError(description=JWKS_URI_FAILED) from error
        with self._lock:
            self._cache[uri] = (now, jwks)
            self._failed.pop(uri, None)
        return jwks


class PrivateKeyJwt(JWTBearerClientAssertion):
    """Authlib's RFC 7523 client assertion, with SMART's rules."""

    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, store: AuthStore, jwks: JwksCache, max_lifetime: int = 300) -> None:
        super().__init__(validate_jti=True, leeway=LEEWAY)
        self.store = store
        self.jwks = jwks
        self.max_lifetime = max_lifetime

    def __call__(self, query_client: Callable[[str], Any], request: Any) -> Any:
        data = request.form
        assertion = data.get("client_assertion")
        if not assertion:
            return None
        if data.get("client_assertion_type") != ASSERTION_TYPE:
            raise InvalidClientError(description=f"client_assertion_type must be {ASSERTION_TYPE}")
        headers, claims = self.extract_assertion(assertion)
        if headers.get("alg") not in ALGORITHMS:
            raise InvalidClientError(description="The assertion must be signed RS384 or ES384.")
        if "crit" in headers:
            raise InvalidClientError(
                description="The assertion header lists crit extensions; this server supports"
                " none (RFC 7515 section 4.1.11)."
            )
        client_id = claims.get("sub")
        if not isinstance(client_id, str):
            raise InvalidClientError(description="Missing or invalid claim: sub")
        if data.get("client_id") not in (None, client_id):
            raise InvalidClientError(description="client_id and the assertion sub differ.")
        client: ClientModel | None = query_client(client_id)
        if client is None:
            raise InvalidClientError(description="The client does not exist on this server.")
        if client.record.token_endpoint_auth_method != self.CLIENT_AUTH_METHOD:
            raise InvalidClientError(description="This client does not use private_key_jwt.")
        jku = headers.get("jku")
        if jku is not None and jku != client.record.jwks_uri:
            raise InvalidClientError(description="The jku header is not the registered jwks_uri.")
        keys = self._key_set(client, headers.get("kid"))
        audiences = {request.token_url, request.uri.split("?")[0]}
        try:
            token = jwt.decode(assertion, keys, algorithms=ALGORITHMS, registry=_REGISTRY)
        except (JoseError, ValueError) as error:
            raise InvalidClientError(
                description=safe_text(f"Invalid client assertion: {error}")
            ) from error
        self._check_claims(token.claims, client_id, audiences)
        request.client = client
        return self.authenticate_client(client)

    def _key_set(self, client: ClientModel, kid: str | None) -> KeySet:
        record = client.record
        if record.jwks:
            jwks = record.jwks
        elif record.jwks_uri:
            jwks = self.jwks.get(record.jwks_uri, kid)
        else:
            raise InvalidClientError(description="The client has no registered keys.")
        try:
            keys = [k for k in jwks.get("keys", []) if k.get("kty") in ("RSA", "EC")]
            return KeySet.import_key_set({"keys": keys})
        except (JoseError, ValueError, TypeError) as error:
            raise InvalidClientError(description="The client keys are unusable.") from error

    def _check_claims(self, claims: dict[str, Any], client_id: str, audiences: set[str]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": client_id},
            sub={"essential": True, "value": client_id},
            exp={"essential": True},
            jti={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as error:
            raise InvalidClientError(
                description=safe_text(f"Invalid client assertion: {error}")
            ) from error
        aud = claims.get("aud")
        aud_values = aud if isinstance(aud, list) else [aud]
        if not any(isinstance(a, str) and a in audiences for a in aud_values):
            raise InvalidClientError(description="The assertion aud must be the token URL.")
        exp = claims["exp"]
        now = int(time.time())
        if not isinstance(exp, int) or exp > now + self.max_lifetime + LEEWAY:
            raise InvalidClientError(description="The assertion exp is more than 5 minutes away.")
        jti = claims["jti"]
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise InvalidClientError(description="Invalid claim: jti")
        if not self.store.remember_jti(f"{client_id}:{jti}", exp + LEEWAY):
            raise InvalidClientError(description="The assertion jti was used before.")

"""JWT access tokens and OpenID Connect id_tokens.

Access tokens follow the JWT profile for OAuth 2.0 access tokens (RFC 9068,
https://www.rfc-editor.org/rfc/rfc9068): header ``typ: at+jwt``, claims ``iss``, ``aud``
(the FHIR base URL), ``sub``, ``client_id``, ``scope``, ``iat``, ``exp``, ``jti``, plus the
SMART launch context (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html):
``patient``, ``encounter`` and ``fhirUser``. id_tokens follow OpenID Connect Core 1.0
section 2 (https://openid.net/specs/openid-connect-core-1_0.html#IDToken), signed RS256.

Verification needs no database round trip: keys are cached (:mod:`smart_auth.keys`) and
revoked token ids (RFC 7009) are read from the store at most once every
``revocation_poll_interval`` seconds (2 by default) into a per-process cache, so a
revocation made by another process takes effect within that interval (bounded
staleness); one made through this process's :meth:`TokenService.revoke_access_token`
takes effect at once.

Tokens issued from one authorization grant (an authorization code and the refresh tokens
rotated from it: one refresh "family") carry a ``family`` claim, a digest of the family
id. Revoking a family (:meth:`TokenService.revoke_family_tokens`: a replayed code, a
reused refresh token, a revoked refresh token, a relationship that ended) records
``family:<digest>`` in the same revocation list, until the longest-lived token of the
family has expired, so every access token issued from that grant is refused too (RFC 7009
section 2.1, RFC 6749 section 4.1.2).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from joserfc.jws import extract_compact

from smart_auth.keys import ALGORITHM, KeyManager
from smart_auth.store.base import AuthStore

ACCESS_TOKEN_TYPE = "at+jwt"
_FAMILY = "family:"
"""Prefix of a revoked family in the revocation list (jtis are hex, so never clash)."""
_POLL_OVERLAP = 60
"""Seconds each revocation poll reaches back before the previous one (clock skew
between processes, revocations committed late in the same second)."""


class TokenError(Exception):
    """A token that must be refused; ``reason`` is one of: malformed, unknown_kid,
    bad_signature, wrong_type, wrong_issuer, wrong_audience, expired, not_yet_valid,
    missing_claim, revoked."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class TokenService:
    """Issues and verifies the server's JWTs."""

    def __init__(
        self,
        keys: KeyManager,
        store: AuthStore,
        access_lifetime: int = 300,
        *,
        id_token_lifetime: int = 300,
        leeway: int = 10,
        revocation_poll_interval: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``revocation_poll_interval``: how stale this process's view of revocations
        made elsewhere may get (0: read the store on every verification, for tests)."""
        self.keys = keys
        self.store = store
        self.access_lifetime = access_lifetime
        self.id_token_lifetime = id_token_lifetime
        self.leeway = leeway
        self._poll_interval = revocation_poll_interval
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._polled_at: float | None = None
        self._poll_lock = threading.Lock()

    # -- access tokens ---------------------------------------------------------------------

    def issue_access_token(
        self,
        *,
        issuer: str,
        audience: str,
        client_id: str,
        scope: str,
        subject: str | None = None,
        fhir_user: str | None = None,
        patient: str | None = None,
        encounter: str | None = None,
        lifetime: int | None = None,
        family_id: str | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """A signed access token and its claims (with ``jti``, ``iat`` and ``exp``).
        ``sub`` is ``subject``, or ``client_id`` for a backend service (no user).
        ``family_id``: the grant the token comes from (its refresh family), revocable as
        a whole by :meth:`revoke_family_tokens`."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject or client_id,
            "client_id": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + (lifetime if lifetime is not None else self.access_lifetime),
            "jti": uuid.uuid4().hex,
        }
        optional = {"fhirUser": fhir_user, "patient": patient, "encounter": encounter}
        if family_id:
            optional["family"] = family_tag(family_id)
        claims.update({k: v for k, v in optional.items() if v is not None})
        return self._sign(claims, ACCESS_TOKEN_TYPE), claims

    def verify_access_token(
        self, token: str, *, issuer: str, audience: str | None
    ) -> dict[str, Any]:
        """The claims of a valid access token; raises :class:`TokenError`. Checks the
        signature (by kid), ``typ``, ``iss``, ``aud`` (None: any audience, for
        introspection only), ``exp``/``nbf``/``iat`` with ``leeway`` seconds, and that
        the jti is not revoked."""
        header, claims = self._decode(token)
        if str(header.get("typ", "")).lower() not in (ACCESS_TOKEN_TYPE, "application/at+jwt"):
            raise TokenError("wrong_type", "not an access token")
        _check_issuer(claims, issuer)
        if audience is not None:
            _check_audience(claims, audience)
        self._check_times(claims)
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise TokenError("missing_claim", "jti")
        if self.is_revoked(jti, claims.get("family")):
            raise TokenError("revoked")
        return claims

    def revoke_access_token(self, token_or_jti: str) -> str | None:
        """Revoke an access token (a JWT this server signed, whatever its audience or
        expiry) or a bare jti; returns the jti, or None if the token is not ours."""
        now = int(self._clock())
        if token_or_jti.count(".") == 2:
            try:
                _, claims = self._decode(token_or_jti)
            except TokenError:
                return None
            jti, exp = claims.get("jti"), claims.get("exp")
            if not isinstance(jti, str) or not isinstance(exp, int):
                return None
        else:
            jti, exp = token_or_jti, now + self.keys.max_token_lifetime
        expires_at = exp + self.leeway
        self.store.revoke_jti(jti, expires_at, now)
        with self._poll_lock:
            self._revoked[jti] = expires_at
        return jti

    def revoke_family_tokens(self, family_id: str) -> None:
        """Revoke every access token issued from a grant (its ``family`` claim), until
        the longest-lived of them has expired."""
        now = int(self._clock())
        key = _FAMILY + family_tag(family_id)
        expires_at = now + self.keys.max_token_lifetime + self.leeway
        self.store.revoke_jti(key, expires_at, now)
        with self._poll_lock:
            self._revoked[key] = expires_at

    def is_revoked(self, jti: str, family: Any = None) -> bool:
        """Whether a jti, or the family (``family`` claim) of its token, is revoked, as
        this process knows it (see the module docstring)."""
        self._poll_revocations()
        if jti in self._revoked:
            return True
        return isinstance(family, str) and bool(family) and _FAMILY + family in self._revoked

    # -- id tokens -------------------------------------------------------------------------

    def issue_id_token(
        self,
        *,
        issuer: str,
        client_id: str,
        subject: str,
        fhir_user: str | None = None,
        nonce: str | None = None,
        auth_time: int | None = None,
        lifetime: int | None = None,
        access_token: str | None = None,
    ) -> str:
        """A signed OpenID Connect id_token for ``client_id``; ``fhir_user`` should be an
        absolute URL (SMART). With ``access_token``, ``at_hash`` is included."""
        now = int(self._clock())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": subject,
            "aud": client_id,
            "iat": now,
            "exp": now + (lifetime if lifetime is not None else self.id_token_lifetime),
        }
        optional = {"fhirUser": fhir_user, "nonce": nonce, "auth_time": auth_time}
        claims.update({k: v for k, v in optional.items() if v is not None})
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token)
        return self._sign(claims, "JWT")

    # -- helpers ---------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self.keys.current_key()
        header = {"alg": ALGORITHM, "kid": key.kid, "typ": typ}
        return jwt.encode(header, claims, key, algorithms=[ALGORITHM])

    def _decode(self, token: str) -> tuple[dict[str, Any], dict[str, Any]]:
        key = self._key_of(token)
        try:
            decoded = jwt.decode(token, key, algorithms=[ALGORITHM])
        except JoseError as exc:
            raise TokenError("bad_signature", exc.description or exc.error) from None
        except ValueError as exc:
            raise TokenError("malformed", str(exc)) from None
        return dict(decoded.header), dict(decoded.claims)

    def _key_of(self, token: str) -> RSAKey:
        try:
            header = extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise TokenError("malformed", str(exc)) from None
        kid = header.get("kid")
        if header.get("alg") != ALGORITHM:
            raise TokenError("bad_signature", f"alg must be {ALGORITHM}")
        key = self.keys.key_for(kid) if isinstance(kid, str) else None
        if key is None:
            raise TokenError("unknown_kid", str(kid))
        return key

    def _check_times(self, claims: dict[str, Any]) -> None:
        now = self._clock()
        exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
        if not isinstance(exp, int | float):
            raise TokenError("missing_claim", "exp")
        if now > exp + self.leeway:
            raise TokenError("expired")
        for name, value in (("nbf", nbf), ("iat", iat)):
            if value is None:
                continue
            if not isinstance(value, int | float) or value > now + self.leeway:
                raise TokenError("not_yet_valid", name)

    def _poll_revocations(self) -> None:
        now = self._clock()
        with self._poll_lock:
            if self._polled_at is not None and now - self._polled_at < self._poll_interval:
                return
            since = 0 if self._polled_at is None else int(self._polled_at) - _POLL_OVERLAP
            for revocation in self.store.revoked_since(since, int(now)):
                self._revoked[revocation.jti] = revocation.expires_at
            self._revoked = {j: e for j, e in self._revoked.items() if e >= now}
            self._polled_at = now


def _check_issuer(claims: dict[str, Any], issuer: str) -> None:
    if str(claims.get("iss", "")).rstrip("/") != issuer.rstrip("/"):
        raise TokenError("wrong_issuer", str(claims.get("iss")))


def _check_audience(claims: dict[str, Any], audience: str) -> None:
    aud = claims.get("aud")
    values = aud if isinstance(aud, list) else [aud]
    if audience.rstrip("/") not in {str(v).rstrip("/") for v in values if v}:
        raise TokenError("wrong_audience", str(aud))


def family_tag(family_id: str) -> str:
    """The ``family`` claim of a grant's access tokens: a digest of its family id (which
    may be the hash of the authorization code), never the id itself."""
    return hashlib.sha256(f"family:{family_id}".encode()).hexdigest()[:32]


def at_hash(access_token: str) -> str:
    """OpenID Connect ``at_hash`` for RS256: the left half of the SHA-256, base64url."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()

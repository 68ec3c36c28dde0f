"""Signing keys (RFC 7517), JWT access tokens (RFC 9068), OpenID Connect id_tokens,
revocation (RFC 7009) with bounded staleness, and password / secret hashing."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from smart_auth.keys import KeyManager
from smart_auth.passwords import (
    burn_password_check,
    hash_password,
    hash_secret,
    needs_rehash,
    new_secret,
    secret_matches,
    verify_password,
)
from smart_auth.scopes import AccessPolicy
from smart_auth.store import AuthStore, open_auth_store
from smart_auth.tokens import TokenError, TokenService, at_hash

ISS = "https://ehr.example/auth"
AUD = "https://ehr.example/fhir"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fhir.sqlite3'}"


@pytest.fixture
def store(url: str) -> Iterator[AuthStore]:
    opened = open_auth_store(url)
    yield opened
    opened.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys(store: AuthStore, clock: Clock) -> KeyManager:
    return KeyManager(store, max_token_lifetime=600, clock=clock)


@pytest.fixture
def tokens(keys: KeyManager, store: AuthStore, clock: Clock) -> TokenService:
    return TokenService(keys, store, 300, revocation_poll_interval=0, clock=clock)


def issue(tokens: TokenService, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    arguments: dict[str, Any] = {
        "issuer": ISS,
        "audience": AUD,
        "client_id": "app",
        "scope": "openid fhirUser launch/patient patient/*.rs",
        "subject": "user-1",
        "fhir_user": "Patient/123",
        "patient": "123",
    }
    return tokens.issue_access_token(**{**arguments, **kwargs})


def verify(tokens: TokenService, token: str, **kwargs: Any) -> dict[str, Any]:
    return tokens.verify_access_token(token, **{"issuer": ISS, "audience": AUD, **kwargs})


def refused(tokens: TokenService, token: str, **kwargs: Any) -> str:
    with pytest.raises(TokenError) as caught:
        verify(tokens, token, **kwargs)
    return caught.value.reason


def segments(token: str) -> list[bytes]:
    return [base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) for part in token.split(".")]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- keys ------------------------------------------------------------------------------


def test_key_is_created_once_and_kept_in_the_store(store: AuthStore, clock: Clock) -> None:
    first = KeyManager(store, clock=clock).current_key()
    assert first.kid == first.thumbprint()
    restarted = KeyManager(store, clock=clock).current_key()
    assert restarted.kid == first.kid
    assert len(store.list_keys()) == 1
    assert store.list_keys()[0]["d"]  # the private part is stored


def test_jwks_is_public(keys: KeyManager) -> None:
    (published,) = keys.jwks()["keys"]
    assert published["kid"] == keys.current_key().kid
    assert published["alg"] == "RS256" and published["use"] == "sig" and published["kty"] == "RSA"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & published.keys()


def test_rotation_keeps_old_tokens_valid(
    tokens: TokenService, keys: KeyManager, clock: Clock
) -> None:
    old_token, _ = issue(tokens)
    old_kid = keys.current_key().kid
    new_kid = keys.rotate().kid
    assert new_kid != old_kid and keys.current_key().kid == new_kid
    new_token, _ = issue(tokens)
    assert json.loads(segments(new_token)[0])["kid"] == new_kid
    assert verify(tokens, old_token)["sub"] == "user-1"
    assert {k["kid"] for k in keys.jwks()["keys"]} == {old_kid, new_kid}


def test_a_retired_key_is_dropped_after_the_longest_token_lifetime(
    tokens: TokenService, keys: KeyManager, clock: Clock
) -> None:
    long_lived, _ = issue(tokens, lifetime=3600)
    old_kid = keys.current_key().kid
    keys.rotate()
    clock.now += 601  # max_token_lifetime is 600
    assert old_kid not in {k["kid"] for k in keys.jwks()["keys"]}
    assert refused(tokens, long_lived) == "unknown_kid"


def test_a_rotation_in_another_process_is_seen(store: AuthStore, clock: Clock) -> None:
    here = KeyManager(store, reload_interval=5, current_ttl=60, clock=clock)
    there = KeyManager(store, reload_interval=5, current_ttl=60, clock=clock)
    old_kid = here.current_key().kid
    assert there.current_key().kid == old_kid
    new_kid = there.rotate().kid
    clock.now += 59
    assert here.current_key().kid == old_kid  # signs with the retired key a little longer
    clock.now += 1
    assert here.current_key().kid == new_kid


def test_a_token_signed_by_a_key_rotated_elsewhere_verifies(store: AuthStore, clock: Clock) -> None:
    here = KeyManager(store, reload_interval=5, clock=clock)
    there = KeyManager(store, clock=clock)
    here.current_key()
    there.rotate()
    clock.now += 5
    token, _ = issue(TokenService(there, store, clock=clock))
    assert verify(TokenService(here, store, clock=clock), token)  # unknown kid: reloaded
    assert here.current_key().kid == there.current_key().kid


def test_unknown_kid_reloads_at_most_once_per_interval(store: AuthStore, clock: Clock) -> None:
    here = KeyManager(store, reload_interval=5, clock=clock)
    here.current_key()
    there = KeyManager(store, clock=clock)
    token, _ = issue(TokenService(there, store, clock=clock))  # same key: known
    other_tokens = TokenService(here, store, clock=clock)
    assert verify(other_tokens, token)
    clock.now += 5
    assert here.key_for("not-there-yet") is None  # reloads now
    new_kid = there.rotate().kid
    clock.now += 1
    assert here.key_for(new_kid) is None  # no reload within 5 s
    clock.now += 4
    assert here.key_for(new_kid) is not None


def test_racing_first_keys_agree(store: AuthStore, clock: Clock) -> None:
    one = KeyManager(store, current_ttl=60, clock=clock)
    two = KeyManager(store, current_ttl=60, clock=clock)
    one.reload(), two.reload()  # both start before either has made a key
    one.current_key(), two.current_key()
    assert len(store.list_keys()) == 2
    clock.now += 60
    assert one.current_key().kid == two.current_key().kid
    assert one.jwks() == two.jwks()


# -- access tokens ---------------------------------------------------------------------


def test_access_token_round_trip(tokens: TokenService, clock: Clock) -> None:
    token, claims = issue(tokens, encounter="e1")
    header = json.loads(segments(token)[0])
    assert header["typ"] == "at+jwt" and header["alg"] == "RS256"
    assert claims["exp"] == claims["iat"] + 300 == int(clock.now) + 300
    verified = verify(tokens, token, audience=AUD + "/")
    assert verified == claims
    assert verified["patient"] == "123" and verified["encounter"] == "e1"
    assert verified["fhirUser"] == "Patient/123" and verified["client_id"] == "app"
    policy = AccessPolicy.from_claims(verified)
    assert policy.patient == "123" and policy.subject == "user-1" and policy.jti == claims["jti"]
    assert policy.allows("Observation", "s")


def test_backend_service_token(tokens: TokenService) -> None:
    token, claims = issue(
        tokens, subject=None, fhir_user=None, patient=None, scope="system/*.rs", lifetime=60
    )
    assert claims["sub"] == "app" and "patient" not in claims and "fhirUser" not in claims
    assert claims["exp"] - claims["iat"] == 60
    assert AccessPolicy.from_claims(verify(tokens, token)).subject is None


def test_each_token_has_its_own_jti(tokens: TokenService) -> None:
    assert issue(tokens)[1]["jti"] != issue(tokens)[1]["jti"]


def test_tampered_claims_are_refused(tokens: TokenService) -> None:
    token, claims = issue(tokens)
    header, _, signature = token.split(".")
    forged = b64(json.dumps({**claims, "patient": "999"}).encode())
    assert refused(tokens, f"{header}.{forged}.{signature}") == "bad_signature"


def test_tampered_signature_is_refused(tokens: TokenService) -> None:
    token, _ = issue(tokens)
    header, payload, signature = token.split(".")
    flipped = b64(bytes([segments(token)[2][0] ^ 1]) + segments(token)[2][1:])
    assert flipped != signature
    assert refused(tokens, f"{header}.{payload}.{flipped}") == "bad_signature"


def test_expired_token_is_refused(tokens: TokenService, clock: Clock) -> None:
    token, _ = issue(tokens)
    clock.now += 300 + 10  # exp plus the leeway: still accepted
    assert verify(tokens, token)
    clock.now += 1
    assert refused(tokens, token) == "expired"


def test_token_from_the_future_is_refused(tokens: TokenService, clock: Clock) -> None:
    clock.now += 3600
    token, _ = issue(tokens)
    clock.now -= 3600
    assert refused(tokens, token) == "not_yet_valid"


def test_wrong_audience_or_issuer_is_refused(tokens: TokenService) -> None:
    token, _ = issue(tokens)
    assert refused(tokens, token, audience="https://other.example/fhir") == "wrong_audience"
    assert refused(tokens, token, issuer="https://other.example/auth") == "wrong_issuer"
    assert verify(tokens, token, audience=None)["aud"] == AUD  # introspection: any audience


def test_foreign_keys_are_refused(tokens: TokenService, keys: KeyManager) -> None:
    token, claims = issue(tokens)
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    forged = jwt.encode({"alg": "RS256", "kid": "stranger", "typ": "at+jwt"}, claims, stranger)
    assert refused(tokens, forged) == "unknown_kid"
    # a stranger's key with our kid: the signature does not match
    kid = keys.current_key().kid
    same_kid = jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, claims, stranger)
    assert refused(tokens, same_kid) == "bad_signature"


def test_other_algorithms_are_refused(tokens: TokenService, keys: KeyManager) -> None:
    _, claims = issue(tokens)
    kid = keys.current_key().kid
    header = b64(json.dumps({"alg": "none", "kid": kid, "typ": "at+jwt"}).encode())
    unsigned = f"{header}.{b64(json.dumps(claims).encode())}."
    assert refused(tokens, unsigned) == "bad_signature"
    public_n = keys.current_key().as_dict(private=False)["n"]
    hmac_key = OctKey.import_key(public_n)  # HS256 with the public key as the secret
    forged = jwt.encode({"alg": "HS256", "kid": kid, "typ": "at+jwt"}, claims, hmac_key)
    assert refused(tokens, forged) == "bad_signature"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x.y.z", "...."])
def test_garbage_is_malformed(tokens: TokenService, garbage: str) -> None:
    assert refused(tokens, garbage) in ("malformed", "unknown_kid", "bad_signature")


def test_id_token_is_not_an_access_token(tokens: TokenService) -> None:
    id_token = tokens.issue_id_token(issuer=ISS, client_id=AUD, subject="user-1")
    assert refused(tokens, id_token) == "wrong_type"


# -- revocation ------------------------------------------------------------------------


def test_revoked_token_is_refused_at_once_here(tokens: TokenService) -> None:
    token, claims = issue(tokens)
    assert tokens.revoke_access_token(token) == claims["jti"]
    assert refused(tokens, token) == "revoked"


def test_revocation_elsewhere_is_seen_after_the_poll_interval(
    store: AuthStore, url: str, keys: KeyManager, clock: Clock
) -> None:
    here = TokenService(keys, store, revocation_poll_interval=2, clock=clock)
    other_store = open_auth_store(url)
    elsewhere = TokenService(KeyManager(other_store, clock=clock), other_store, clock=clock)
    token, _ = issue(here)
    assert verify(here, token)  # polls now
    elsewhere.revoke_access_token(token)
    assert verify(here, token)  # bounded staleness: not seen within the interval
    clock.now += 2
    assert refused(here, token) == "revoked"
    other_store.close()


def test_revoking_a_bare_jti(tokens: TokenService, url: str, clock: Clock) -> None:
    token, claims = issue(tokens)
    other_store = open_auth_store(url)
    fresh = TokenService(KeyManager(other_store, clock=clock), other_store, clock=clock)
    assert fresh.revoke_access_token(claims["jti"]) == claims["jti"]
    assert refused(tokens, token) == "revoked"
    other_store.close()


def test_revoking_something_that_is_not_our_token(tokens: TokenService) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
    foreign = jwt.encode({"alg": "RS256", "kid": "stranger"}, {"jti": "x", "exp": 1}, stranger)
    assert tokens.revoke_access_token(foreign) is None


def test_expired_revocations_are_forgotten(tokens: TokenService, clock: Clock) -> None:
    token, claims = issue(tokens)
    tokens.revoke_access_token(token)
    clock.now += 300 + 11
    assert not tokens.is_revoked(claims["jti"])  # pruned: the token is expired anyway
    assert refused(tokens, token) == "expired"


# -- id tokens -------------------------------------------------------------------------


def test_id_token(tokens: TokenService, keys: KeyManager, clock: Clock) -> None:
    access, _ = issue(tokens)
    id_token = tokens.issue_id_token(
        issuer=ISS,
        client_id="app",
        subject="user-1",
        fhir_user=f"{AUD}/Patient/123",
        nonce="n-0S6",
        auth_time=int(clock.now) - 5,
        access_token=access,
    )
    decoded = jwt.decode(id_token, KeySet.import_key_set(keys.jwks()), algorithms=["RS256"])
    claims = decoded.claims
    assert decoded.header["kid"] == keys.current_key().kid
    assert (claims["iss"], claims["aud"], claims["sub"]) == (ISS, "app", "user-1")
    assert claims["fhirUser"] == f"{AUD}/Patient/123" and claims["nonce"] == "n-0S6"
    assert claims["exp"] - claims["iat"] == 300 and claims["auth_time"] == int(clock.now) - 5
    assert claims["at_hash"] == at_hash(access)


def test_at_hash_example_from_the_openid_spec() -> None:
    # OpenID Connect Core 1.0, Appendix A.3: RS256 at_hash of this access token
    assert at_hash("jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y") == "77QmUPtjPfzWtF2AnpK9RQ"


# -- passwords and secrets -------------------------------------------------------------


def test_password_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$") and "correct" not in hashed
    assert verify_password(hashed, "correct horse battery staple")
    assert not verify_password(hashed, "Correct horse battery staple")
    assert not verify_password("not a hash", "x")
    assert not needs_rehash(hashed) and needs_rehash("not a hash")
    burn_password_check("anything")


def test_secrets_are_stored_as_hashes() -> None:
    secret = new_secret()
    assert len(secret) >= 43 and new_secret() != secret
    stored = hash_secret(secret)
    assert len(stored) == 64 and secret not in stored
    assert secret_matches(secret, stored) and not secret_matches(secret + "x", stored)

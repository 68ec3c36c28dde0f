"""The synchronous store behind the SMART authorization server.

Records of the OAuth 2.0 / SMART App Launch 2.x server
(https://hl7.org/fhir/smart-app-launch/app-launch.html): signing keys (RFC 7517),
clients (RFC 7591 metadata), users, invitations, EHR launch contexts, authorization
codes (RFC 6749 section 4.1, single use), refresh tokens (RFC 6749 section 6, rotated
on use with reuse detection as in https://datatracker.ietf.org/doc/html/rfc9700#section-4.14.2),
revoked access-token ids (RFC 7009), seen client-assertion ids (RFC 7523 section 3, "jti")
and the counts of failed sign-ins that throttle guessing (:mod:`smart_auth.throttle`).

All times are int epoch seconds. Secrets (client secrets, codes, refresh tokens,
invitation codes, registration tokens) are stored only as hashes
(:func:`smart_auth.passwords.hash_secret`). The store is synchronous: Authlib's grants
are synchronous and run in a threadpool. Every implementation is safe to call from
several threads, and the single-use operations are atomic across processes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol


def username_key(username: str) -> str:
    """How usernames are compared: NFKC-normalised and case-folded."""
    return unicodedata.normalize("NFKC", username).strip().casefold()


class DuplicateError(Exception):
    """A record with the same unique key (client id, username, ...) already exists."""


@dataclass(slots=True)
class Client:
    """A registered client (RFC 7591 section 2 metadata)."""

    client_id: str
    name: str = ""
    token_endpoint_auth_method: str = "none"
    """``none`` (public), ``client_secret_basic`` or ``private_key_jwt``."""
    client_secret_hash: str | None = None
    redirect_uris: list[str] = field(default_factory=list)
    scope: str = ""
    """Every scope the client may ask for (space separated)."""
    grant_types: list[str] = field(default_factory=lambda: ["authorization_code"])
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    created_at: int = 0
    registration_token_hash: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    """Other RFC 7591 metadata kept as sent (client_uri, logo_uri, contacts, software_id...)."""


@dataclass(slots=True)
class User:
    """A person who logs in; ``fhir_user`` links to their Patient, Practitioner or
    RelatedPerson ("Patient/123")."""

    user_id: str
    username: str
    """Unique, compared case-insensitively."""
    password_hash: str
    fhir_user: str | None = None
    failed_logins: int = 0
    locked_until: int = 0
    """``failed_logins`` and ``locked_until`` are no longer used (sign-ins are throttled by
    :mod:`smart_auth.throttle`, not locked); kept, as zeros, for the servers of an earlier
    release that share the store during an upgrade."""
    created_at: int = 0
    disabled: bool = False
    """A disabled account cannot sign in and gets no tokens (``fhir-server users disable``);
    records of an earlier release, without the field, are enabled."""
    email: str | None = None
    """Where password-reset links go (``fhir-server users create --email``); None: the
    first email in the ``telecom`` of the user's FHIR resource."""


@dataclass(slots=True)
class Invitation:
    """A one-time activation code a member of staff issued for a Patient."""

    code_hash: str
    fhir_user: str
    expires_at: int
    used_at: int | None = None
    created_at: int = 0
    created_by: str | None = None

    def usable(self, now: int) -> bool:
        """Not used and not expired."""
        return self.used_at is None and self.expires_at > now


@dataclass(slots=True)
class LaunchContext:
    """An EHR launch context (the opaque ``launch`` parameter of an EHR launch)."""

    launch_id: str
    patient: str | None = None
    encounter: str | None = None
    created_by: str | None = None
    expires_at: int = 0
    created_at: int = 0


@dataclass(slots=True)
class AuthorizationCode:
    """An authorization code (RFC 6749 section 4.1.2) with what it grants."""

    code_hash: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    fhir_user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    nonce: str | None = None
    auth_time: int | None = None
    expires_at: int = 0
    state: str | None = None
    audience: str | None = None
    """The ``aud`` the app asked for (the FHIR base URL)."""
    used_at: int | None = None
    """Set by :meth:`AuthStore.take_code`; a used code is kept until it expires so that
    a second use can be detected (RFC 6749 section 4.1.2)."""
    created_at: int = 0


@dataclass(slots=True)
class RefreshToken:
    """An opaque refresh token (stored hashed). Tokens rotated from one another share a
    ``family_id``; presenting a rotated token again revokes the whole family."""

    token_hash: str
    client_id: str
    user_id: str | None
    scope: str
    fhir_user: str | None = None
    patient: str | None = None
    encounter: str | None = None
    expires_at: int | None = None
    """None: no expiry of its own (offline_access until revoked)."""
    revoked: bool = False
    family_id: str = ""
    replaced_by: str | None = None
    """Hash of the token this one was rotated to (None: not rotated)."""
    auth_time: int | None = None
    created_at: int = 0

    def usable(self, now: int) -> bool:
        """Not revoked, not rotated and not expired."""
        live = not self.revoked and self.replaced_by is None
        return live and (self.expires_at is None or self.expires_at > now)


class Throttle(NamedTuple):
    """Failed sign-ins counted under one (hashed) key of :mod:`smart_auth.throttle`."""

    failures: int
    blocked_until: int
    """No attempt under this key is admitted before this time."""
    window_end: int
    """When the count starts again from zero."""


class Revocation(NamedTuple):
    """A revoked access token id, until when it would have been valid, and when it was revoked."""

    jti: str
    expires_at: int
    revoked_at: int


class AuthStore(Protocol):
    """Synchronous, thread-safe storage of the authorization server's records.

    Methods taking ``now`` use the current time when it is None.
    """

    def close(self) -> None: ...

    # -- signing keys (private JWKs with "kid", "created" and optionally "retired") --------
    def list_keys(self) -> list[dict[str, Any]]:
        """Every key, oldest first (by ``created`` then ``kid``)."""
        ...

    def add_key(self, jwk: dict[str, Any]) -> None:
        """Save a private JWK; it must carry "kid" and "created". DuplicateError on a known kid."""
        ...

    def retire_key(self, kid: str, at: int) -> None:
        """Mark a key retired at ``at`` (kept to verify tokens signed before)."""
        ...

    def delete_key(self, kid: str) -> None:
        """Forget a key (a compromised one): tokens it signed stop verifying."""
        ...

    # -- clients ---------------------------------------------------------------------------
    def add_client(self, client: Client) -> None:
        """DuplicateError if the client id exists."""
        ...

    def get_client(self, client_id: str) -> Client | None: ...

    def list_clients(self) -> list[Client]: ...

    def update_client(self, client: Client) -> bool:
        """Replace a client's record; False if it does not exist."""
        ...

    def delete_client(self, client_id: str) -> bool: ...

    # -- users -----------------------------------------------------------------------------
    def add_user(self, user: User) -> None:
        """DuplicateError if the user id or the username (case-insensitively) exists."""
        ...

    def get_user(self, user_id: str) -> User | None: ...

    def find_user(self, username: str) -> User | None:
        """The user with this username, compared case-insensitively."""
        ...

    def list_users(self) -> list[User]: ...

    def update_password(self, user_id: str, password_hash: str) -> bool: ...

    def set_disabled(self, user_id: str, disabled: bool) -> bool:
        """Disable or enable a user; False if there is no such user."""
        ...

    def users_for(self, fhir_user: str) -> list[User]:
        """The users whose ``fhir_user`` is this reference ("Patient/123"), oldest first."""
        ...

    # -- sign-in throttling ----------------------------------------------------------------
    def get_throttle(self, key: str) -> Throttle | None:
        """The failed sign-ins counted under ``key`` (None: none)."""
        ...

    def swap_throttle(self, key: str, old: Throttle | None, new: Throttle | None) -> bool:
        """Compare-and-set: replace what ``key`` holds by ``new`` (None: forget it) if it
        still holds ``old`` (None: nothing); False, and nothing changes, otherwise.
        Atomic across threads and processes."""
        ...

    # -- invitations -----------------------------------------------------------------------
    def add_invitation(self, invitation: Invitation) -> None: ...

    def get_invitation(self, code_hash: str) -> Invitation | None:
        """The invitation whatever its state (the activation page shows why it cannot be used)."""
        ...

    def use_invitation(self, code_hash: str, now: int | None = None) -> Invitation | None:
        """Atomically mark an unused, unexpired invitation used and return it (with
        ``used_at`` set); None if unknown, expired or already used. At most one caller
        ever gets it."""
        ...

    def release_invitation(self, code_hash: str) -> bool:
        """Undo :meth:`use_invitation` when the account could not be created after all
        (e.g. the username was taken meanwhile); False if it was not used."""
        ...

    def retire_invitations(self, fhir_user: str, now: int | None = None) -> int:
        """End (expire now) the usable invitations of ``fhir_user``, when a newer one
        replaces them; how many there were."""
        ...

    # -- EHR launch contexts ---------------------------------------------------------------
    def add_launch(self, launch: LaunchContext) -> None: ...

    def get_launch(self, launch_id: str, now: int | None = None) -> LaunchContext | None:
        """The launch context, or None if unknown or expired."""
        ...

    # -- authorization codes ---------------------------------------------------------------
    def add_code(self, code: AuthorizationCode) -> None: ...

    def take_code(self, code_hash: str, now: int | None = None) -> AuthorizationCode | None:
        """Atomically use a code: the record (``used_at`` set) the first time, if it has
        not expired; None afterwards, or if unknown or expired."""
        ...

    def get_code(self, code_hash: str) -> AuthorizationCode | None:
        """The record whatever its state (``used_at`` shows a used one: detect a replay)."""
        ...

    # -- refresh tokens --------------------------------------------------------------------
    def add_refresh(self, token: RefreshToken) -> None:
        """Store a new refresh token; an empty ``family_id`` starts a family named by
        its ``token_hash``."""
        ...

    def get_refresh(self, token_hash: str) -> RefreshToken | None: ...

    def rotate_refresh(self, old_hash: str, new: RefreshToken, now: int | None = None) -> bool:
        """Atomically replace a live refresh token by ``new`` (which gets the old one's
        family). False, and nothing is stored, if the old token is unknown, revoked,
        expired or already rotated; presenting an already rotated token also revokes
        its whole family (refresh token reuse detection)."""
        ...

    def revoke_refresh(self, token_hash: str) -> bool: ...

    def revoke_family(self, family_id: str) -> int:
        """Revoke every refresh token of a family; how many were live."""
        ...

    def user_refresh_tokens(self, user_id: str) -> list[RefreshToken]:
        """Every refresh token of a user, whatever its state (the account page's
        connected apps), oldest first."""
        ...

    def grant_families(
        self, *, user_id: str | None = None, client_id: str | None = None
    ) -> list[str]:
        """The grants of a user or of a client (give one): the family ids of their
        refresh tokens and the hashes of their authorization codes (the family of the
        access tokens issued from a code), whatever their state, sorted."""
        ...

    # -- password resets -------------------------------------------------------------------
    def add_reset(self, reset: PasswordReset) -> None: ...

    def get_reset(self, token_hash: str) -> PasswordReset | None: ...

    def take_reset(self, token_hash: str, now: int | None = None) -> PasswordReset | None:
        """Atomically use a reset link: the record if it was usable (now used up), else
        None (unknown, used or expired)."""
        ...

    def users_with_email(self, email: str) -> list[User]:
        """The users whose recorded ``email`` is ``email`` (compared without case)."""
        ...

    # -- second factors (TOTP) -------------------------------------------------------------
    def put_second_factor(self, factor: SecondFactor) -> None:
        """Store the user's second factor, replacing any earlier one."""
        ...

    def get_second_factor(self, user_id: str) -> SecondFactor | None: ...

    def delete_second_factor(self, user_id: str) -> bool: ...

    def use_totp_step(self, user_id: str, step: int) -> bool:
        """Atomically record that a code of time step ``step`` was accepted; False (and
        nothing changes) when a code of that step or a later one was already used."""
        ...

    def use_recovery_code(self, user_id: str, code_hash: str) -> bool:
        """Atomically take a recovery code (by hash) out of the unused ones; False when it
        is not among them."""
        ...

    # -- access-token revocation (RFC 7009) ------------------------------------------------
    def revoke_jti(self, jti: str, expires_at: int, now: int | None = None) -> None:
        """Record a revoked access token id (kept until ``expires_at``)."""
        ...

    def revoked_since(self, ts: int, now: int | None = None) -> list[Revocation]:
        """Revocations recorded at or after ``ts`` that have not expired."""
        ...

    # -- client assertion replay (RFC 7523 section 3, "jti") -------------------------------
    def remember_jti(self, jti: str, expires_at: int, now: int | None = None) -> bool:
        """Remember a client assertion id until ``expires_at``; False if it was already
        seen and has not expired (a replay). Atomic across threads and processes."""
        ...

    # -- housekeeping ----------------------------------------------------------------------
    def purge_expired(self, now: int | None = None) -> None:
        """Delete expired codes, launch contexts, refresh tokens, revocations, jtis and
        sign-in throttle counts."""
        ...


@dataclass(slots=True)
class SecondFactor:
    """A user's TOTP second factor (RFC 6238, :mod:`smart_auth.mfa`): enrolled once the
    user confirmed it with a first code (``confirmed``)."""

    user_id: str
    secret: str
    """The shared secret, base32 (what the authenticator app holds)."""
    confirmed: bool = False
    created_at: int = 0
    last_step: int = 0
    """The newest time step a code was accepted for: each code works once."""
    recovery_hashes: list[str] = field(default_factory=list)
    """SHA-256 of the one-time recovery codes not used yet."""


@dataclass(slots=True)
class PasswordReset:
    """A one-time link to choose a new password (``/auth/forgot``), stored hashed."""

    token_hash: str
    user_id: str
    expires_at: int
    used: bool = False
    created_at: int = 0

    def usable(self, now: int) -> bool:
        return not self.used and self.expires_at > now


RECORDS: dict[type, tuple[str, str]] = {
    Client: ("auth_clients", "client_id"),
    User: ("auth_users", "user_id"),
    Invitation: ("auth_invitations", "code_hash"),
    LaunchContext: ("auth_launches", "launch_id"),
    AuthorizationCode: ("auth_codes", "code_hash"),
    RefreshToken: ("auth_refresh_tokens", "token_hash"),
    SecondFactor: ("auth_second_factors", "user_id"),
    PasswordReset: ("auth_password_resets", "token_hash"),
}
"""Each record type: its table (SQLite) or collection (MongoDB), and its key field."""

"""Administration behind the command line (``fhir-server invite``, ``users
create|list|reset-password``, ``clients create|list|delete``, ``keys list``): plain
functions over an :class:`~smart_auth.store.base.AuthStore` that return what to print
(never a secret: no password hash, client secret or private key).

Taking access away revokes what was granted: a disabled account (``disable_user``), a
new password (``reset_password``) and a deleted client (``delete_client``) end every
grant of the user or client, that is its
refresh tokens and the access tokens issued from them (``family:<digest>`` entries of
the revocation list, see :mod:`smart_auth.tokens`), through :func:`revoke_grants`.

Invitations follow the clinic workflow of issue 6: staff invite a Patient, the patient
activates an account at ``/auth/activate`` with the one-time code (hashed in the store,
single use, expiring). One person, one account: a Patient who has an account is not
invited again (the error names the account), and a new invitation replaces the unused
ones before it (their codes stop working), so two codes cannot make two accounts.

Clients are registered as in RFC 7591
(https://www.rfc-editor.org/rfc/rfc7591#section-2): ``none`` (public),
``client_secret_basic`` (the secret is shown once) or ``private_key_jwt`` (RFC 7523,
with a JWKS). The operator may give the ``client_id`` an app ships with (``--client-id``:
3 to 128 letters, digits or ``. _ ~ -``, the unreserved characters of RFC 3986 section
2.3; a taken one is refused), and may let an app that cannot send PKCE leave it out
(``--pkce optional``, the client metadata member ``"pkce": "optional"``).
"""

from __future__ import annotations

import re
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from smart_auth.password_rules import password_problem
from smart_auth.passwords import hash_password, hash_secret
from smart_auth.registration import client_from_metadata, client_json, schema_problem
from smart_auth.store.base import AuthStore, DuplicateError, Invitation, User
from smart_auth.tokens import TokenService

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,255}")
"""What ``users create --email`` takes: one address, without display name."""
FHIR_USER = re.compile(r"(Patient|Practitioner|RelatedPerson|Person)/[A-Za-z0-9\-.]{1,64}")
USERNAME = re.compile(r"[A-Za-z0-9._@+-]{3,64}")
CLIENT_ID = re.compile(r"[A-Za-z0-9._~-]{3,128}")
"""A client id the operator chooses: unreserved URI characters (RFC 3986 section 2.3), so
it needs no escaping in a URL, a form or a JWT claim."""
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I


class AdminError(ValueError):
    """A refused administration request (the message says why)."""


def normalize_code(code: str) -> str:
    """An activation code as stored: upper case, without spaces or dashes."""
    return re.sub(r"[\s-]", "", code).upper()


def auth_base_url(server_url: str) -> str:
    """``https://host/auth`` from the server's public URL or FHIR base."""
    url = server_url.rstrip("/")
    return (url.removesuffix("/fhir")) + "/auth"


def create_invitation(
    store: AuthStore,
    fhir_user: str,
    *,
    server_url: str,
    lifetime: int = 7 * 24 * 3600,
    created_by: str | None = None,
) -> dict[str, Any]:
    """A one-time activation code for a Patient (or RelatedPerson) and the link to
    activate it: ``{"code", "link", "fhir_user", "expires_at", "replaced"}`` (ISO 8601,
    UTC; ``replaced``: how many unused invitations of the same person it ends).
    AdminError if the person already has an account."""
    if not FHIR_USER.fullmatch(fhir_user) or not fhir_user.startswith(
        ("Patient/", "RelatedPerson/", "Person/")
    ):
        raise AdminError("invite a Patient/<id>, RelatedPerson/<id> or Person/<id>")
    if lifetime <= 0:
        raise AdminError("the lifetime must be positive")
    accounts = store.users_for(fhir_user)
    if accounts:
        names = ", ".join(user.username for user in accounts)
        raise AdminError(
            f"{fhir_user} already has an account ({names}): they sign in with it;"
            " no invitation was made"
        )
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(16))
    code = "-".join(raw[i : i + 4] for i in range(0, 16, 4))
    now = int(time.time())
    replaced = store.retire_invitations(fhir_user, now)
    store.add_invitation(
        Invitation(
            code_hash=hash_secret(normalize_code(code)),
            fhir_user=fhir_user,
            expires_at=now + lifetime,
            created_at=now,
            created_by=created_by,
        )
    )
    expires = datetime.fromtimestamp(now + lifetime, UTC).isoformat(timespec="seconds")
    return {
        "code": code,
        "link": f"{auth_base_url(server_url)}/activate?code={code}",
        "fhir_user": fhir_user,
        "expires_at": expires.replace("+00:00", "Z"),
        "replaced": replaced,
    }


def create_user(
    store: AuthStore,
    username: str,
    password: str,
    fhir_user: str | None,
    *,
    min_length: int = 8,
    email: str | None = None,
) -> dict[str, Any]:
    """Create a user (argon2 password hash); returns ``{"user_id", "username", "fhir_user"}``.

    Every user names the FHIR resource they are (``fhirUser``): staff their Practitioner,
    patients and caregivers their Patient, RelatedPerson or Person (usually through an
    invitation instead). A user without one would have no record for ``user/`` scopes
    to act as, so ``fhir_user`` is required."""
    if not USERNAME.fullmatch(username):
        raise AdminError("a username is 3 to 64 letters, digits or . _ @ + -")
    if not fhir_user:
        raise AdminError(
            "--fhir-user is required: staff name their Practitioner (Practitioner/<id>);"
            " patients and caregivers are invited (fhir-server invite Patient/<id>) or named"
            " as Patient/<id>, RelatedPerson/<id> or Person/<id>"
        )
    if not FHIR_USER.fullmatch(fhir_user):
        raise AdminError(
            "--fhir-user must be Patient/<id>, Practitioner/<id>, RelatedPerson/<id> or Person/<id>"
        )
    weak = password_problem(password, username, min_length)
    if weak:
        raise AdminError(weak)
    if store.find_user(username) is not None:
        raise AdminError(f"the username {username} is taken")
    if email is not None and not EMAIL.fullmatch(email):
        raise AdminError("--email must be an email address (name@example.org)")
    user = User(
        user_id=uuid.uuid4().hex,
        username=username,
        password_hash=hash_password(password),
        fhir_user=fhir_user,
        created_at=int(time.time()),
        email=email,
    )
    store.add_user(user)
    created = {"user_id": user.user_id, "username": username, "fhir_user": fhir_user}
    return {**created, "email": email} if email else created


def create_client(
    store: AuthStore,
    name: str,
    *,
    auth: str,
    redirect_uris: list[str] | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    scope: str | None = None,
    client_id: str | None = None,
    pkce: str = "required",
    rate_limit: str | None = None,
) -> dict[str, Any]:
    """Register a client; returns its RFC 7591 JSON with ``client_id`` and, for
    ``client_secret_basic``, the ``client_secret`` (shown only now). A
    ``private_key_jwt`` client with ``system/`` scopes may use client_credentials
    (SMART Backend Services). ``client_id``: the id the app ships with (None: a new
    random one). ``pkce``: ``required`` (default) or ``optional`` (the app may leave PKCE
    out; a challenge it sends is still verified)."""
    if client_id is not None:
        _check_client_id(store, client_id)
    metadata: dict[str, Any] = {
        "client_name": name,
        "token_endpoint_auth_method": auth,
        "redirect_uris": list(redirect_uris or []),
    }
    if jwks is not None:
        metadata["jwks"] = jwks
    if jwks_uri is not None:
        metadata["jwks_uri"] = jwks_uri
    if scope:
        metadata["scope"] = scope
    if pkce != "required":
        metadata["pkce"] = pkce
    problem = schema_problem(metadata)
    if problem:
        raise AdminError(problem)
    grants: list[str] = []
    if metadata["redirect_uris"]:
        grants += ["authorization_code", "refresh_token"]
    if auth == "private_key_jwt" and scope and "system/" in scope:
        grants.append("client_credentials")
    if not grants:
        raise AdminError("give --redirect-uri for an app, or private_key_jwt with system/ scopes")
    metadata["grant_types"] = grants
    try:
        client, secret = client_from_metadata(metadata, allow_system=True)
    except ValueError as error:
        raise AdminError(str(error)) from error
    if client_id is not None:
        client.client_id = client_id
    if rate_limit:
        client.metadata["rate_limit"] = rate_limit
    try:
        store.add_client(client)
    except DuplicateError:
        raise AdminError(_taken(client.client_id)) from None
    return client_json(client, secret)


def _check_client_id(store: AuthStore, client_id: str) -> None:
    if not CLIENT_ID.fullmatch(client_id):
        raise AdminError(
            "a client id is 3 to 128 letters, digits or . _ ~ - (RFC 3986 unreserved characters)"
        )
    if store.get_client(client_id) is not None:
        raise AdminError(_taken(client_id))


def _taken(client_id: str) -> str:
    return f"the client id {client_id} is taken by another client; nothing was registered"


def list_clients(store: AuthStore) -> list[dict[str, Any]]:
    """Every client (without secrets)."""
    return [client_json(client, None) for client in store.list_clients()]


def update_client(store: AuthStore, client_id: str, *, rate_limit: str | None) -> dict[str, Any]:
    """Change what an operator decides of a client: its rate limit on the FHIR API
    (``"600/minute"``; ``""``: the server's default; checked by the caller). Returns the
    client's JSON."""
    client = store.get_client(client_id)
    if client is None:
        raise AdminError(f"there is no client {client_id}")
    if rate_limit is not None:
        if rate_limit:
            client.metadata["rate_limit"] = rate_limit
        else:
            client.metadata.pop("rate_limit", None)
    store.update_client(client)
    return client_json(client, None)


def delete_client(store: AuthStore, tokens: TokenService, client_id: str) -> dict[str, Any]:
    """Delete a client and end its grants (refresh tokens, and the access tokens issued
    from them); ``{"client_id", "deleted", "revoked_grants"}``. An access token of a
    backend service (client credentials, no grant) lives out its short lifetime."""
    if store.get_client(client_id) is None:
        raise AdminError(f"there is no client {client_id}")
    revoked = revoke_grants(store, tokens, client_id=client_id)
    store.delete_client(client_id)
    return {"client_id": client_id, "deleted": True, "revoked_grants": revoked}


def list_users(store: AuthStore) -> list[dict[str, Any]]:
    """Every user: id, username, fhirUser, when created and whether disabled (no
    password hash)."""
    return [
        {
            "user_id": user.user_id,
            "username": user.username,
            "fhir_user": user.fhir_user,
            "created_at": _iso(user.created_at),
            "disabled": user.disabled,
        }
        for user in store.list_users()
    ]


def reset_mfa(store: AuthStore, username: str) -> dict[str, Any]:
    """Remove a user's second factor (the help desk, when a phone is lost and the
    recovery codes are gone): they sign in with the password alone, or enrol again where
    ``FHIR_SERVER_MFA`` requires it. ``{"username", "mfa_removed"}``."""
    user = _user(store, username)
    return {"username": user.username, "mfa_removed": store.delete_second_factor(user.user_id)}


def reset_password(
    store: AuthStore, tokens: TokenService, username: str, password: str, *, min_length: int = 8
) -> dict[str, Any]:
    """A new password for a user; every grant the user made ends (refresh tokens and the
    access tokens issued from them), so a stolen session does not outlive the reset.
    ``{"username", "revoked_grants"}``."""
    user = _user(store, username)
    weak = password_problem(password, user.username, min_length)
    if weak:
        raise AdminError(weak)
    store.update_password(user.user_id, hash_password(password))
    revoked = revoke_grants(store, tokens, user_id=user.user_id)
    return {"username": user.username, "revoked_grants": revoked}


def disable_user(store: AuthStore, tokens: TokenService, username: str) -> dict[str, Any]:
    """Disable an account: it cannot sign in (told so only with the right password), its
    refresh tokens are refused, and every grant it made ends (refresh tokens and the
    access tokens issued from them). ``{"username", "disabled", "revoked_grants"}``."""
    user = _user(store, username)
    store.set_disabled(user.user_id, True)
    revoked = revoke_grants(store, tokens, user_id=user.user_id)
    return {"username": user.username, "disabled": True, "revoked_grants": revoked}


def enable_user(store: AuthStore, username: str) -> dict[str, Any]:
    """Enable a disabled account again: the user may sign in; the grants that ended when
    it was disabled stay ended (the apps ask the user to sign in again)."""
    user = _user(store, username)
    store.set_disabled(user.user_id, False)
    return {"username": user.username, "disabled": False}


def revoke_grants(
    store: AuthStore,
    tokens: TokenService,
    *,
    user_id: str | None = None,
    client_id: str | None = None,
) -> int:
    """End every grant of a user or a client: its refresh tokens and the access tokens
    issued from it (at once in this process, within the revocation poll interval in the
    others); how many grants there were."""
    families = store.grant_families(user_id=user_id, client_id=client_id)
    for family in families:
        store.revoke_family(family)
        tokens.revoke_family_tokens(family)
    return len(families)


def list_keys(store: AuthStore) -> list[dict[str, Any]]:
    """The signing keys, oldest first: ``kid``, ``created``, ``retired`` and ``current``
    (the key new tokens are signed with: the oldest one not retired, as
    :class:`~smart_auth.keys.KeyManager` picks it); no key material."""
    records = store.list_keys()
    current = next((r["kid"] for r in records if r.get("retired") is None), None)
    return [
        {
            "kid": r["kid"],
            "created": r.get("created"),
            "retired": r.get("retired"),
            "current": r["kid"] == current,
        }
        for r in records
    ]


def _user(store: AuthStore, username: str) -> User:
    user = store.find_user(username)
    if user is None:
        raise AdminError(f"there is no user {username}")
    return user


def _iso(epoch: int) -> str | None:
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")

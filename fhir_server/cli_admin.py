"""Administration commands of the SMART authorization server
(https://hl7.org/fhir/smart-app-launch/): what clinic staff and operators run.

- ``fhir-server invite Patient/123 [--days N]``: a one-time activation code and link with
  which the patient (or a caregiver, ``RelatedPerson/…``) registers a username and password;
  the link is on ``--base-url`` or ``FHIR_SERVER_BASE_URL`` (the server's public FHIR
  base); without either it assumes ``http://FHIR_SERVER_HOST:FHIR_SERVER_PORT/fhir``
  (``127.0.0.1:8080``) and says so on standard error; ``--email [ADDRESS]`` also emails
  the link (``fhir_server.notifications.invitations``);
- ``fhir-server users create --username NAME --fhir-user Practitioner/9``: a user (the
  FHIR resource they are is required), the password read from standard input;
- ``fhir-server users list``; ``users reset-password USERNAME``: a new password (from
  standard input) that ends every grant the user made; ``users disable USERNAME``: the
  account cannot sign in and every grant it made ends; ``users enable USERNAME``;
  ``users mfa-reset USERNAME``: the user's second factor is removed (``smart_auth.mfa``);
- ``fhir-server clients create --name NAME [--redirect-uri URI]… --auth
  none|client_secret_basic|private_key_jwt [--jwks FILE | --jwks-uri URL] [--scope S]
  [--client-id ID] [--pkce required|optional] [--rate-limit 600/minute]``: a client,
  printed as JSON with its ``client_id`` (and ``client_secret``); ``--client-id``
  registers the id an app ships with, ``--pkce optional`` lets an app that cannot send
  PKCE leave it out, ``--rate-limit`` overrides ``FHIR_SERVER_RATE_LIMIT`` for it
  (:mod:`fhir_server.rate_limit`);
- ``fhir-server clients list``; ``clients delete CLIENT_ID`` (its grants end too);
  ``clients update CLIENT_ID --rate-limit 600/minute`` ('' for the default);
- ``fhir-server keys rotate|list``: a new token signing key (the old one keeps verifying
  the tokens it signed until they expire; other processes pick the new key up within a
  minute).

They write to the store named by ``--storage`` / ``FHIR_SERVER_STORAGE`` (the auth tables
live next to the FHIR data) and print JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from fhir_server.config import Settings


def add_admin_commands(commands: Any) -> None:
    invite = commands.add_parser(
        "invite",
        help="one-time activation code for a Patient (or RelatedPerson) to register",
        description="Print a one-time activation code and link with which a Patient,"
        " RelatedPerson or Person registers a username and password at /auth/activate.",
    )
    invite.add_argument(
        "fhir_user",
        metavar="Patient/ID",
        help="Patient/<id>, RelatedPerson/<id> or Person/<id> (a caregiver of several)",
    )
    invite.add_argument("--days", type=float, default=7, help="valid for N days (default: 7)")
    invite.add_argument(
        "--email",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="also email the link (to ADDRESS, else to the person's email telecom) through"
        " FHIR_SERVER_SMTP_URL; the message is recorded as a Communication (default: the"
        " link is only printed)",
    )
    _common(invite)

    users = commands.add_parser(
        "users", help="manage users", description="Manage the users who sign in."
    ).add_subparsers(dest="users_command", required=True, metavar="COMMAND")
    create_user = users.add_parser(
        "create",
        help="create a user (password from stdin)",
        description="Create a user; the password is read from standard input (a prompt on"
        " a terminal).",
    )
    create_user.add_argument(
        "--username", required=True, help="required: 3 to 64 letters, digits or . _ @ + -"
    )
    create_user.add_argument(
        "--fhir-user",
        help="required: Practitioner/<id> for staff; Patient/<id>, RelatedPerson/<id> or"
        " Person/<id>",
    )
    create_user.add_argument(
        "--email",
        help="where password-reset links go (default: the first email in the telecom of the"
        " user's FHIR resource)",
    )
    _common(create_user)
    _common(users.add_parser("list", help="list users (no password hashes)"))
    reset = users.add_parser(
        "reset-password",
        help="set a new password (from stdin); ends the user's grants",
        description="Set a user's password (read from standard input, like create). Every"
        " grant the user made ends: its refresh tokens and the access tokens issued from"
        " them are revoked.",
    )
    reset.add_argument("username", metavar="USERNAME", help="the user's username")
    _common(reset)
    mfa_reset = users.add_parser(
        "mfa-reset",
        help="remove a user's two-step sign-in (lost phone)",
        description="Remove a user's second factor (TOTP and recovery codes): they sign in"
        " with their password, and enrol again where FHIR_SERVER_MFA requires it.",
    )
    mfa_reset.add_argument("username", metavar="USERNAME", help="the user's username")
    _common(mfa_reset)
    disable = users.add_parser(
        "disable",
        help="disable an account; ends the user's grants",
        description="Disable an account: it cannot sign in, its refresh tokens are refused"
        " and the access tokens already issued to it are revoked.",
    )
    disable.add_argument("username", metavar="USERNAME", help="the user's username")
    _common(disable)
    enable = users.add_parser(
        "enable",
        help="enable a disabled account again",
        description="Enable a disabled account: the user may sign in again (the grants"
        " ended by disabling stay ended).",
    )
    enable.add_argument("username", metavar="USERNAME", help="the user's username")
    _common(enable)

    clients = commands.add_parser(
        "clients", help="manage OAuth clients", description="Manage OAuth clients (apps)."
    ).add_subparsers(dest="clients_command", required=True, metavar="COMMAND")
    create_client = clients.add_parser(
        "create",
        help="register a client; prints it as JSON",
        description="Register a client and print it as JSON, with its client_id (and its"
        " client_secret, shown only now).",
    )
    create_client.add_argument("--name", required=True, help="required: the app's name")
    create_client.add_argument(
        "--redirect-uri",
        action="append",
        default=[],
        help="an exact redirect URI of the app; repeat for several (default: none, for a"
        " backend service)",
    )
    create_client.add_argument(
        "--auth",
        required=True,
        choices=["none", "client_secret_basic", "private_key_jwt"],
        help="required: how the client authenticates: none (a public app),"
        " client_secret_basic or private_key_jwt",
    )
    create_client.add_argument(
        "--jwks", type=Path, help="JWKS file (private_key_jwt; default: none)"
    )
    create_client.add_argument("--jwks-uri", help="JWKS URL (private_key_jwt; default: none)")
    create_client.add_argument(
        "--scope",
        help="the scopes the client may ask for, space separated (default: the default app scopes)",
    )
    create_client.add_argument(
        "--client-id",
        help="the client_id the app ships with (3 to 128 letters, digits or . _ ~ -;"
        " default: a new random one)",
    )
    create_client.add_argument(
        "--pkce",
        choices=["required", "optional"],
        default="required",
        help="optional: the app may leave PKCE out (a challenge it sends is still"
        " verified; default: required)",
    )
    create_client.add_argument("--rate-limit", type=_rate_limit, help=_RATE_LIMIT_HELP)
    _common(create_client)
    _common(clients.add_parser("list", help="list clients (without secrets)"))
    update_client = clients.add_parser(
        "update",
        help="change a client's rate limit",
        description="Change what the operator decides of a client; prints it as JSON.",
    )
    update_client.add_argument("client_id", metavar="CLIENT_ID", help="the client's client_id")
    update_client.add_argument(
        "--rate-limit",
        type=_rate_limit,
        required=True,
        help=_RATE_LIMIT_HELP + "; '' (empty): back to the server's default",
    )
    _common(update_client)
    delete_client = clients.add_parser(
        "delete",
        help="delete a client; ends its grants",
        description="Delete a client. Its grants end: its refresh tokens and the access"
        " tokens issued from them are revoked.",
    )
    delete_client.add_argument("client_id", metavar="CLIENT_ID", help="the client's client_id")
    _common(delete_client)

    keys = commands.add_parser(
        "keys", help="token signing keys", description="Token signing keys."
    ).add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    rotate = keys.add_parser(
        "rotate",
        help="create a new signing key; tokens signed with the old one stay valid until"
        " they expire",
    )
    _common(rotate)
    list_keys = keys.add_parser(
        "list", help="list signing keys: kid, created, retired, current (no key material)"
    )
    _common(list_keys)


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--storage",
        help="storage URL (default: FHIR_SERVER_STORAGE or sqlite:///data/fhir.sqlite3)",
    )
    cmd.add_argument(
        "--base-url",
        help="public FHIR base URL, for links (default: FHIR_SERVER_BASE_URL or"
        " http://HOST:PORT/fhir)",
    )


def run_admin(args: argparse.Namespace) -> int:
    from smart_auth.admin import AdminError

    settings = Settings(
        **{
            k: v
            for k, v in {"storage": args.storage, "base_url": args.base_url}.items()
            if v is not None
        }
    )
    try:
        result = _dispatch(args, settings)
    except AdminError as error:
        print(f"fhir-server {args.command}: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


def _dispatch(args: argparse.Namespace, settings: Settings) -> Any:
    from smart_auth import admin
    from smart_auth.store import open_auth_store

    if args.command == "invite":
        _require_resource(settings, args.fhir_user)
    store = open_auth_store(settings.storage)
    try:
        if args.command == "invite":
            invitation = admin.create_invitation(
                store,
                args.fhir_user,
                server_url=_invitation_base(settings),
                lifetime=int(args.days * 86400),
            )
            if args.email is not None:
                invitation.update(_email_invitation(settings, invitation, args.email))
            return invitation
        if args.command == "users":
            return _users(store, args, settings)
        if args.command == "keys":
            return _keys(store, args.keys_command, settings)
        if args.clients_command == "list":
            return admin.list_clients(store)
        if args.clients_command == "delete":
            return admin.delete_client(store, _tokens(store, settings), args.client_id)
        if args.clients_command == "update":
            return admin.update_client(store, args.client_id, rate_limit=args.rate_limit)
        jwks = json.loads(args.jwks.read_text()) if args.jwks else None
        return admin.create_client(
            store,
            args.name,
            auth=args.auth,
            redirect_uris=args.redirect_uri,
            jwks=jwks,
            jwks_uri=args.jwks_uri,
            scope=args.scope,
            client_id=args.client_id,
            pkce=args.pkce,
            rate_limit=args.rate_limit,
        )
    finally:
        store.close()


_RATE_LIMIT_HELP = (
    "requests this client may make to the FHIR API, e.g. 600/minute or off (default: the"
    " server's FHIR_SERVER_RATE_LIMIT)"
)


def _rate_limit(text: str) -> str:
    from fhir_server.rate_limit import parse_limit

    try:
        parse_limit(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text.strip()


def _users(store: Any, args: argparse.Namespace, settings: Settings) -> Any:
    from smart_auth import admin

    command = args.users_command
    if command == "list":
        return admin.list_users(store)
    if command == "create":
        return admin.create_user(
            store, args.username, _read_password(), args.fhir_user, email=args.email
        )
    if command == "disable":
        return admin.disable_user(store, _tokens(store, settings), args.username)
    if command == "enable":
        return admin.enable_user(store, args.username)
    if command == "mfa-reset":
        return admin.reset_mfa(store, args.username)
    return admin.reset_password(store, _tokens(store, settings), args.username, _read_password())


def _email_invitation(settings: Settings, invitation: dict[str, Any], address: str) -> Any:
    """``invite --email``: fhir_server.notifications.invitations."""
    from fhir_server.notifications.invitations import InvitationError, email_invitation
    from smart_auth.admin import AdminError

    try:
        return asyncio.run(email_invitation(settings, invitation, address or None))
    except InvitationError as error:
        raise AdminError(
            f"{error}; the invitation was made, give the person this link another way:"
            f" {invitation['link']}"
        ) from None


def _tokens(store: Any, settings: Settings) -> Any:
    """The token service that records revocations (signing keys are not touched)."""
    from smart_auth.keys import KeyManager
    from smart_auth.tokens import TokenService

    manager = KeyManager(store, max_token_lifetime=settings.access_token_lifetime + 60)
    return TokenService(manager, store, settings.access_token_lifetime)


def _invitation_base(settings: Settings) -> str:
    """The FHIR base URL of an invitation's link: ``--base-url`` or ``FHIR_SERVER_BASE_URL``;
    without either, where ``serve`` listens by default, with a note on standard error (this
    command cannot know the port or the public address the server is reached at)."""
    if settings.base_url:
        return settings.base_url
    base = f"http://{settings.host}:{settings.port}/fhir"
    print(
        f"fhir-server invite: note: the link assumes the server is at {base}, as neither"
        " --base-url nor FHIR_SERVER_BASE_URL is set; if patients reach it at another"
        " address or port, give its public FHIR base URL with --base-url URL (or"
        " FHIR_SERVER_BASE_URL=URL), e.g. --base-url https://fhir.example.org/fhir",
        file=sys.stderr,
    )
    return base


def _keys(store: Any, command: str, settings: Settings) -> Any:
    from smart_auth.keys import KeyManager

    longest = settings.access_token_lifetime + 60
    manager = KeyManager(store, max_token_lifetime=longest)
    if command == "rotate":
        key = manager.rotate()
        return {"kid": key.thumbprint(), "note": "new tokens are signed with this key"}
    from smart_auth import admin

    return admin.list_keys(store)


def _read_password() -> str:
    if sys.stdin.isatty():
        return getpass.getpass("Password: ")
    return sys.stdin.readline().rstrip("\r\n")


def _require_resource(settings: Settings, reference: str) -> None:
    """An invitation is for a resource that exists."""
    from smart_auth.admin import AdminError

    type_, _, id_ = reference.partition("/")

    async def exists() -> bool:
        from fhir_server.storage.open import open_store

        store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
        await store.open()
        try:
            stored = await store.read(type_, id_)
        finally:
            await store.close()
        return stored is not None and not stored.deleted

    if type_ not in ("Patient", "RelatedPerson", "Person") or not id_ or not asyncio.run(exists()):
        raise AdminError(f"{reference} is not a Patient, RelatedPerson or Person in this store")

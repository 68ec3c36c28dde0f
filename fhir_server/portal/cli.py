"""The portal's command-line parts:

- ``fhir-server portal register [--storage URL] [--base-url URL] [--port P]``: register
  the portal as a public SMART client (or bring its redirect URIs up to date), as the
  server does on start-up; prints the client as JSON;
- ``fhir-server demo-data --users [N]``: demo sign-ins (:mod:`fhir_server.demo.users`),
  printed with their one password.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from fhir_server.config import Settings


def add_portal_command(commands: Any) -> None:
    portal = commands.add_parser(
        "portal", help="the patient portal app", description="The patient portal app (/portal/)."
    ).add_subparsers(dest="portal_command", required=True, metavar="COMMAND")
    register = portal.add_parser(
        "register",
        help="register the portal as a public SMART client; prints it as JSON",
        description="Register the portal (client id FHIR_SERVER_PORTAL_CLIENT_ID, default"
        " fhir-server-portal) as a public SMART client with PKCE, redirecting to /portal/ on"
        " the public base URL and on 127.0.0.1 and localhost at the port; an existing"
        " registration gets the redirect URIs it lacks. The server does this itself on"
        " start-up (unless FHIR_SERVER_PORTAL=off).",
    )
    register.add_argument(
        "--storage",
        help="storage URL (default: FHIR_SERVER_STORAGE or sqlite:///data/fhir.sqlite3)",
    )
    register.add_argument(
        "--base-url",
        help="the server's public FHIR base URL, e.g. https://portal.example.org/fhir"
        " (default: FHIR_SERVER_BASE_URL; none: loopback addresses only)",
    )
    register.add_argument(
        "--port", type=int, help="the port served on loopback (default: FHIR_SERVER_PORT or 8080)"
    )


def run_portal(args: argparse.Namespace) -> int:
    from fhir_server.portal.client import register_portal
    from smart_auth.admin import AdminError
    from smart_auth.store import open_auth_store

    overrides = {"storage": args.storage, "base_url": args.base_url, "port": args.port}
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    store = open_auth_store(settings.storage)
    try:
        client = register_portal(store, settings)
    except AdminError as error:
        print(f"fhir-server portal register: {error}", file=sys.stderr)
        return 2
    finally:
        store.close()
    print(json.dumps(client, indent=2))
    return 0


def demo_users(settings: Settings, population: Any, patients: int) -> int:
    """Create the demo sign-ins of ``fhir-server demo-data --users N`` and print them."""
    from fhir_server.demo.users import create_sign_ins, demo_sign_ins, new_password, write_person
    from fhir_server.storage.open import open_store
    from smart_auth.keys import KeyManager
    from smart_auth.store import open_auth_store
    from smart_auth.tokens import TokenService

    if patients < 1:
        print("fhir-server demo-data: --users must be at least 1", file=sys.stderr)
        return 2
    sign_ins, person = demo_sign_ins(population, patients)
    if person is not None:

        async def write() -> None:
            store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
            await store.open()
            try:
                await write_person(store, person)
            finally:
                await store.close()

        asyncio.run(write())
    password = new_password()
    auth = open_auth_store(settings.storage)
    try:
        keys = KeyManager(auth, max_token_lifetime=settings.access_token_lifetime + 60)
        tokens = TokenService(keys, auth, settings.access_token_lifetime)
        made = create_sign_ins(auth, tokens, sign_ins, password)
    finally:
        auth.close()
    width = max(len(row["username"]) for row in made)
    print(f"\nDemo sign-ins for the portal (/portal/), all with the password: {password}")
    for row in made:
        print(f"  {row['username']:<{width}}  {row['who']} ({row['state']})")
    return 0

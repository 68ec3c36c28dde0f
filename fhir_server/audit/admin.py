"""Administration commands in the audit trail: each ``fhir-server`` command that works on
a store (``import``, ``demo-data`` into a store, ``compact``, ``users``, ``clients``,
``invite``, ``keys``) is an AuditEvent (DICOM 110100 Application Activity, the command as
subtype) written to that store when it ends: who ran it (the operating-system user on
this host), the command line (values of options naming a password, secret or token left
out) and whether it succeeded.

The versions a bulk import writes are recorded by this one event: the outbox sweep
(:mod:`fhir_server.audit.sweep`) is moved past them, instead of writing one AuditEvent
per imported version.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import socket
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from fhir_server.audit import balp
from fhir_server.audit.record import Agent
from fhir_server.audit.sweep import KEY
from fhir_server.audit.trail import AuditTrail
from fhir_server.config import Settings

AUDITED = frozenset({"import", "demo-data", "compact", "users", "clients", "invite", "keys"})
_SECRET = ("password", "secret", "token")


def record_command(args: argparse.Namespace, argv: Sequence[str], status: int) -> None:
    """Write the AuditEvent of a finished command (nothing when audit is off, or for a
    command that used no store)."""
    if args.command not in AUDITED or getattr(args, "ndjson", None):
        return
    overrides = {"storage": args.storage} if getattr(args, "storage", None) else {}
    try:
        settings = Settings(**overrides)
        if settings.audit != "on":
            return
        # a thread of its own: the command may run inside an event loop (tests)
        with ThreadPoolExecutor(1) as worker:
            worker.submit(
                asyncio.run, _write(settings, args.command, list(argv), status == 0)
            ).result()
    except Exception as error:  # noqa: BLE001 - the command's own outcome stands
        if status == 0:
            print(
                f"fhir-server {args.command}: not recorded in the audit trail: {error}",
                file=sys.stderr,
            )


async def _write(settings: Settings, command: str, argv: list[str], ok: bool) -> None:
    from fhir_server.storage.open import open_store

    words = [command, *_subcommand(argv, command)]
    agent = Agent(None, _os_user(), None, socket.gethostname())
    event = balp.admin_event(" ".join(words), " ".join(_redacted(argv)), agent, ok)
    store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
    await store.open()
    try:
        await AuditTrail(store, None).write([event])
        if command == "import":
            outbox = store.outbox
            if await outbox.min_position([KEY]) is not None:
                await outbox.open_cursor(KEY, await outbox.last_seq())
    finally:
        await store.close()


def _subcommand(argv: list[str], command: str) -> list[str]:
    """The word after the command (``users create``), when it is one."""
    try:
        after = argv[argv.index(command) + 1]
    except (ValueError, IndexError):
        return []
    return [after] if after.isidentifier() and command in ("users", "clients", "keys") else []


def _redacted(argv: list[str]) -> list[str]:
    out: list[str] = []
    hide = False
    for word in argv:
        if hide:
            out.append("***")
            hide = False
            continue
        name, equals, _ = word.partition("=")
        secret = word.startswith("-") and any(s in name.lower() for s in _SECRET)
        if secret and equals:
            out.append(f"{name}=***")
        else:
            out.append(word)
            hide = secret
    return out


def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return "unknown"

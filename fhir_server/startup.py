"""Start-up checks of ``fhir-server serve``: a mistake in the configuration is one clear
line on stderr and a non-zero exit status, not a traceback.

Before any worker process starts, the parent process

- reads the settings (:class:`fhir_server.config.Settings`): a bad value names its
  ``FHIR_SERVER_*`` variable or its flag (exit status 2, as for a bad flag);
- opens the store once and closes it (the SQLite file created or converted, the MongoDB
  collections and indexes made, the starter catalogue of patient education loaded into
  a new store: ``fhir_server.documents.catalogue``), MongoDB with a server-selection timeout of
  :data:`STARTUP_MONGO_TIMEOUT` seconds unless the URL sets ``serverSelectionTimeoutMS``:
  an unreachable server is named after that, not after the driver's 30 s;
- tries the address it is to listen on: a port in use is named, with the way to choose
  another.

uvicorn's supervisor of several workers stops when a worker fails before serving, but
exits 0 (``uvicorn.run`` returns normally): :func:`run_workers` runs the same supervisor
and reports that failure as exit status 3 (uvicorn's ``STARTUP_FAILURE``, what one
process exits with).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import sqlite3
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from fhir_server.config import Settings
from fhir_server.redact import url_for_log

STARTUP_MONGO_TIMEOUT = 5.0
"""Seconds the start-up check waits for a MongoDB server to answer."""

STARTUP_FAILURE = 3
"""uvicorn's exit status of a process that failed before serving."""


class StartupError(Exception):
    """A problem that stops the server before it starts: ``str()`` is the one line to
    print, ``exit_status`` the process's exit status."""

    def __init__(self, message: str, exit_status: int = 1) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def load_settings(overrides: Mapping[str, Any]) -> Settings:
    """The settings from ``overrides`` (command-line flags) and the environment; a bad
    value is a :class:`StartupError` naming the flag or variable it came from."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = [_problem(issue, overrides) for issue in error.errors()]
        raise StartupError("; ".join(problems), exit_status=2) from None


def _problem(issue: Mapping[str, Any], overrides: Mapping[str, Any]) -> str:
    field = str(issue["loc"][0]) if issue.get("loc") else ""
    where = f"--{field.replace('_', '-')}" if field in overrides else f"FHIR_SERVER_{field.upper()}"
    message = str(issue.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    return f"{where}={issue.get('input')!r}: {message}"


def check_port(host: str, port: int) -> None:
    """Bind the address the server is to listen on, as uvicorn will (``SO_REUSEADDR``),
    and let it go again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is already in use (another server?): choose"
                    " another with --port or FHIR_SERVER_PORT"
                ) from None
            reason = exc.strerror or str(exc)
            raise StartupError(
                f"cannot listen on {host}:{port}: {reason} (set --host/--port or"
                " FHIR_SERVER_HOST/FHIR_SERVER_PORT)"
            ) from None


def check_tls(settings: Settings) -> None:
    """The certificate and key of ``--ssl-certfile``/``--ssl-keyfile`` load together
    (both or neither)."""
    import ssl

    cert, key = settings.ssl_certfile, settings.ssl_keyfile
    if not cert and not key:
        return
    if not cert or not key:
        raise StartupError("https needs both --ssl-certfile and --ssl-keyfile", 2)
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        message = f"cannot use the certificate {cert} with the key {key}: {reason}"
        raise StartupError(message, 2) from None


def check_store(settings: Settings) -> None:
    """Open the store named by ``settings.storage`` and close it again."""
    from fhir_server.storage.open import open_store

    url = settings.storage
    try:
        store = open_store(
            url,
            sqlite_synchronous=settings.sqlite_synchronous,
            server_selection_timeout=STARTUP_MONGO_TIMEOUT,
        )
    except Exception as exc:  # noqa: BLE001 - every kind of bad URL is one line
        raise StartupError(f"FHIR_SERVER_STORAGE / --storage: {_first_line(exc)}") from None

    async def open_and_close() -> None:
        from fhir_server.documents.catalogue import load_catalogue

        await store.open()
        try:
            await load_catalogue(store)  # patient education, into a new store (issue 20)
        finally:
            await store.close()

    try:
        asyncio.run(open_and_close())
    except Exception as exc:  # noqa: BLE001 - reported as one line, see store_problem
        raise StartupError(store_problem(url, exc)) from None


def store_problem(url: str, exc: BaseException) -> str:
    """One line saying why the store at ``url`` could not be opened."""
    from pymongo.errors import PyMongoError, ServerSelectionTimeoutError

    shown = url_for_log(url)
    if isinstance(exc, ServerSelectionTimeoutError):
        reason = _first_line(exc).split(", Timeout:", 1)[0].split(" (configured timeouts", 1)[0]
        return (
            f"cannot reach MongoDB at {mongo_hosts(url)} ({shown}): no server answered"
            f" within the start-up timeout ({reason})"
        )
    if isinstance(exc, PyMongoError):
        return f"MongoDB at {mongo_hosts(url)} ({shown}): {_first_line(exc)}"
    if isinstance(exc, sqlite3.Error | OSError):
        return f"cannot open the SQLite store {shown}: {_first_line(exc)}"
    return f"cannot open the store {shown}: {type(exc).__name__}: {_first_line(exc)}"


def mongo_hosts(url: str) -> str:
    """The host list of a MongoDB connection string (no user name or password)."""
    rest = url.partition("://")[2]
    hosts = rest.split("/", 1)[0].split("?", 1)[0]
    return hosts.rpartition("@")[2] or "localhost"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:297] + "..."


def run_workers(config: Any) -> int:
    """Serve with uvicorn's supervisor of ``config.workers`` processes (what
    ``uvicorn.run`` does for them); the exit status is 3 when a worker failed before it
    started serving (the supervisor then stops the others), 0 otherwise."""
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])
    with contextlib.suppress(KeyboardInterrupt):  # as uvicorn.run
        supervisor.run()
    failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
    return STARTUP_FAILURE if failed else 0

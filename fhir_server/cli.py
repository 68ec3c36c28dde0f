"""The ``fhir-server`` command.

- ``fhir-server serve [--host H] [--port P] [--storage URL] [--workers N]``: the FHIR
  API, in N processes (default: one per CPU core);
- ``fhir-server import PATH… [--storage URL]``: load Bundles and NDJSON
  (:mod:`fhir_server.bulk_import`);
- ``fhir-server demo-data [--patients N] [--seed S] [--users [N]]``: write a demo
  population (:mod:`fhir_server.demo_data`), with demo sign-ins for the portal;
- ``fhir-server compact [--storage URL]``: a SQLite file brought to the current schema and
  rewritten without its free pages;
- ``fhir-server schedule create --actor Practitioner/x --from D --to D --hours …``: a
  Schedule and its free Slots (:mod:`fhir_server.cli_schedule`);
- ``fhir-server invite``, ``users …``, ``clients …``, ``keys …``: SMART administration
  (:mod:`fhir_server.cli_admin` lists them);
- ``fhir-server portal register``: the patient portal's SMART client
  (:mod:`fhir_server.portal.cli`);
- ``fhir-server --version``.

Every option's help gives its default (``fhir-server COMMAND --help``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import logging
import logging.config
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from fhir_server.cli_admin import add_admin_commands, run_admin
from fhir_server.cli_schedule import add_schedule_commands, run_schedule
from fhir_server.config import Settings
from fhir_server.portal.cli import add_portal_command, run_portal

_STORAGE_HELP = "storage URL (default: FHIR_SERVER_STORAGE or sqlite:///data/fhir.sqlite3)"


def build_parser() -> argparse.ArgumentParser:
    """The command line: every option has help, with its default."""
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="serve the FHIR API at http://HOST:PORT/fhir",
        description="Serve the FHIR API and the SMART authorization server. Every option"
        " can also be set as an environment variable FHIR_SERVER_<OPTION>.",
    )
    serve.add_argument("--host", help="interface to bind (default: FHIR_SERVER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: FHIR_SERVER_PORT or 8080)")
    serve.add_argument("--storage", help=_STORAGE_HELP)
    serve.add_argument(
        "--base-url",
        help="public FHIR base URL used in links (default: FHIR_SERVER_BASE_URL, else taken"
        " from each request)",
    )
    serve.add_argument(
        "--auth",
        choices=["smart", "off"],
        help="smart: every FHIR request needs an access token; off: no authorization, for"
        " local development (default: FHIR_SERVER_AUTH or smart)",
    )
    serve.add_argument(
        "--log-level",
        help="debug, info, warning or error (default: FHIR_SERVER_LOG_LEVEL or info)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        help="server processes (default: FHIR_SERVER_WORKERS or the number of CPU cores)",
    )
    serve.add_argument(
        "--ssl-certfile",
        help="serve https with this certificate (PEM; default: FHIR_SERVER_SSL_CERTFILE,"
        " else plain http)",
    )
    serve.add_argument(
        "--ssl-keyfile",
        help="the certificate's private key (PEM; default: FHIR_SERVER_SSL_KEYFILE, else none)",
    )
    _add_import(commands)
    _add_demo_data(commands)
    compact = commands.add_parser(
        "compact",
        help="SQLite: bring the file to the current schema and give free pages back"
        " (stop the server first)",
    )
    compact.add_argument("--storage", help=_STORAGE_HELP)
    add_admin_commands(commands)
    add_portal_command(commands)
    add_schedule_commands(commands, _STORAGE_HELP)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    from fhir_server.audit.admin import record_command

    status = _command(args)
    record_command(args, sys.argv[1:] if argv is None else argv, status)  # fhir_server/audit
    return status


def _command(args: argparse.Namespace) -> int:
    store_commands = {"import": _import, "demo-data": _demo_data, "compact": _compact}
    if args.command in store_commands:
        from fhir_server import startup

        try:
            return store_commands[args.command](args)
        except startup.StartupError as problem:  # a bad setting or store: one line
            print(f"fhir-server {args.command}: {problem}", file=sys.stderr)
            return problem.exit_status
    if args.command in ("invite", "users", "clients", "keys"):
        return run_admin(args)
    if args.command == "portal":
        return run_portal(args)
    if args.command == "schedule":
        return run_schedule(args)
    return 2  # pragma: no cover - argparse enforces a command


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fhir-server")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.app import create_app
    from fhir_server.http_limits import LimitedHttpToolsProtocol

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "storage": args.storage,
            "base_url": args.base_url,
            "auth": args.auth,
            "log_level": args.log_level,
            "workers": args.workers,
            "ssl_certfile": args.ssl_certfile,
            "ssl_keyfile": args.ssl_keyfile,
        }.items()
        if value is not None
    }
    from fhir_server import startup

    try:
        # one clear line and a non-zero exit for a bad setting, store or address
        settings = startup.load_settings(overrides)
        logging.config.dictConfig(_log_config(settings.log_level, settings.log_format))
        startup.check_tls(settings)
        startup.check_store(settings)
        startup.check_port(settings.host, settings.port)
    except startup.StartupError as problem:
        print(f"fhir-server serve: {problem}", file=sys.stderr)
        return problem.exit_status
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level.lower(),
        "log_config": _log_config(settings.log_level, settings.log_format),
        "access_log": False,
        # header/body timeouts, header size and connection caps (FHIR_SERVER_* settings)
        "http": LimitedHttpToolsProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "timeout_graceful_shutdown": 10,
    }
    if settings.ssl_certfile or settings.ssl_keyfile:
        # TLS without a proxy; responses then carry Strict-Transport-Security
        options["ssl_certfile"] = settings.ssl_certfile
        options["ssl_keyfile"] = settings.ssl_keyfile
    workers = settings.workers
    if workers > 1 and settings.storage.startswith("mongomock:"):
        logging.getLogger("fhir_server").warning(
            "mongomock:// keeps its data inside one process: serving with 1 worker, not %d",
            workers,
        )
        workers = 1
    if workers == 1:
        uvicorn.run(create_app(settings, serving=True), **options)
        return 0
    # Each worker process builds its own app (and opens its own store) from the
    # environment, so the command-line settings travel as FHIR_SERVER_* variables.
    for key, value in overrides.items():
        os.environ[f"FHIR_SERVER_{key.upper()}"] = str(value)
    metrics_dir = None
    if settings.metrics == "on" and not settings.metrics_dir:
        # /metrics adds up every worker's figures from files there (fhir_server.metrics)
        metrics_dir = tempfile.mkdtemp(prefix="fhir-server-metrics-")
        os.environ["FHIR_SERVER_METRICS_DIR"] = metrics_dir
    config = uvicorn.Config("fhir_server.app:serve_app", factory=True, workers=workers, **options)
    try:
        return startup.run_workers(config)  # non-zero when a worker fails to start
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _log_config(level: str, log_format: str = "text") -> dict[str, Any]:
    """uvicorn's logging setup plus the server's own loggers on stderr; applied in every
    worker process (``logging.basicConfig`` in the parent does not reach them). With
    ``log_format`` ``json`` every record is a JSON object on a line of its own."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["fhir"] = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    if log_format == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": "fhir_server.request_log.JsonFormatter"}
    config["handlers"]["fhir"] = {
        "formatter": "fhir",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
    }
    config["root"] = {"handlers": ["fhir"], "level": level.upper()}
    return config


def _add_import(commands: Any) -> None:
    cmd = commands.add_parser(
        "import",
        help="load Bundles, NDJSON files/folders and resource files into the store",
        description="Import FHIR resources (Bundle JSON, NDJSON files or bulk-export folders,"
        " single resource JSON). Resources keep their ids; unchanged resources are not"
        " written again. Exit status 1 when some resources were invalid.",
    )
    cmd.add_argument("paths", nargs="+", metavar="PATH", help="file or folder")
    _add_write_options(cmd)


def _add_demo_data(commands: Any) -> None:
    cmd = commands.add_parser(
        "demo-data",
        help="write a realistic, deterministic demo population for a patient portal",
    )
    cmd.add_argument("--patients", type=int, default=100, help="10 to 100000 (default: 100)")
    cmd.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    cmd.add_argument(
        "--today",
        type=date.fromisoformat,
        help="the date past and future events are placed around (default: today)",
    )
    cmd.add_argument(
        "--ndjson",
        metavar="DIR",
        help="write NDJSON files (one per type) into DIR instead of the store (default:"
        " write to the store)",
    )
    cmd.add_argument(
        "--users",
        type=int,
        nargs="?",
        const=10,
        metavar="N",
        help="also create portal sign-ins for the first N patients (default 10), their"
        " caregivers and a caregiver of two (demo-caregiver), all with one printed random"
        " password (default: no sign-ins)",
    )
    _add_write_options(cmd)


def _add_write_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--storage", help=_STORAGE_HELP)
    cmd.add_argument(
        "--batch-size", type=int, default=1000, help="resources per transaction (default: 1000)"
    )
    cmd.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that parse, validate and index (default: cores - 1; 0: inline)",
    )
    cmd.add_argument("--quiet", action="store_true", help="no progress line (default: shown)")


def _settings(args: argparse.Namespace, *, open_store: bool = True) -> Settings:
    """The settings (``--storage`` over the environment); a bad value, or a store that
    does not open, is a ``startup.StartupError`` naming it."""
    from fhir_server import startup

    settings = startup.load_settings({"storage": args.storage} if args.storage else {})
    if open_store:
        startup.check_store(settings)
    return settings


async def _with_store(settings: Settings, work: Any) -> Any:
    from fhir_server.storage.open import open_store

    store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _import(args: argparse.Namespace) -> int:
    from fhir_server.bulk_import import import_paths

    settings = _settings(args)
    try:
        report = asyncio.run(
            _with_store(
                settings,
                lambda store: import_paths(
                    store,
                    args.paths,
                    batch_size=args.batch_size,
                    workers=args.workers,
                    progress=not args.quiet,
                ),
            )
        )
    except FileNotFoundError as exc:
        print(f"fhir-server import: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    return 1 if report.problem_count else 0


def _demo_data(args: argparse.Namespace) -> int:
    from fhir_server import demo_data

    if not 10 <= args.patients <= 100_000:
        print("fhir-server demo-data: --patients must be 10 to 100000", file=sys.stderr)
        return 2
    population = demo_data.Population(args.patients, args.seed, args.today)
    if args.ndjson and args.users is not None:
        print(
            "fhir-server demo-data: --users writes sign-ins to a store, not --ndjson",
            file=sys.stderr,
        )
        return 2
    if args.ndjson:
        counts = demo_data.write_ndjson(population, Path(args.ndjson))
        for type_, n in sorted(counts.items()):
            print(f"{type_:<28}{n:>11,}")
        print(f"{sum(counts.values()):,} resources written to {args.ndjson}")
        return 0
    settings = _settings(args)
    report = asyncio.run(
        _with_store(
            settings,
            lambda store: demo_data.write_population(
                store,
                population,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=not args.quiet,
            ),
        )
    )
    print(report.summary())
    if report.problem_count:
        return 1
    if args.users is not None:
        from fhir_server.portal.cli import demo_users

        return demo_users(settings, population, args.users)
    return 0


def _compact(args: argparse.Namespace) -> int:
    import sqlite3

    from fhir_server.storage.sqlite import path_from_url, vacuum

    settings = _settings(args, open_store=False)
    if not settings.storage.startswith("sqlite:"):
        print(
            "fhir-server compact: only SQLite stores (MongoDB reuses freed space itself;"
            " see its compact command)",
            file=sys.stderr,
        )
        return 2
    path = path_from_url(settings.storage)
    if not path.is_file():
        print(f"fhir-server compact: no SQLite file at {path}", file=sys.stderr)
        return 2
    before = path.stat().st_size
    asyncio.run(_with_store(settings, lambda store: asyncio.sleep(0)))  # schema migrations
    try:
        vacuum(path)
    except sqlite3.OperationalError as exc:
        print(f"fhir-server compact: {exc} (is a server using the file?)", file=sys.stderr)
        return 1
    after = path.stat().st_size
    print(f"{path}: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

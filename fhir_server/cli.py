"""The ``fhir-server`` command: ``fhir-server serve [--host H] [--port P] [--storage URL]``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from fhir_server.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the FHIR API at http://HOST:PORT/fhir")
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--storage", help="storage URL, e.g. sqlite:///data/fhir.sqlite3")
    serve.add_argument("--base-url", help="public FHIR base URL used in links")
    serve.add_argument("--auth", choices=["smart", "off"], help="authorization mode")
    serve.add_argument("--log-level", help="debug, info, warning, error")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    return 2  # pragma: no cover - argparse enforces a command


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.app import create_app

    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": args.port,
            "storage": args.storage,
            "base_url": args.base_url,
            "auth": args.auth,
            "log_level": args.log_level,
        }.items()
        if value is not None
    }
    settings = Settings(**overrides)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

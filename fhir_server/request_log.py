"""One access-log line and one metrics observation per request, and request ids.

- **Request id**: a request's ``X-Request-ID`` header when it is sane (1-128 of the
  characters ``A-Z a-z 0-9 - _ . : / + = @``, what UUIDs, ULIDs and proxies' ids are made
  of), else one made here (a random prefix per process and a counter: unique, cheap); it
  is echoed in the response's ``X-Request-ID`` header and written in the JSON log line.
- **Access log** (logger ``fhir_server.access``, at ``info``): method, path and query
  (secrets redacted by :func:`fhir_server.redact.query_for_log`), status, milliseconds.
  With ``FHIR_SERVER_LOG_FORMAT=json`` every log record is one JSON object per line
  (:class:`JsonFormatter`), the access line's with ``request_id``, ``client_ip`` (the
  peer, or the address a trusted proxy forwarded: uvicorn's ``--forwarded-allow-ips``),
  ``user`` (the access token's ``sub``) and ``client_id`` (from the token the request
  was authorized with, when it had one: :data:`POLICY_KEY`), ``route`` (the route
  template) and ``duration_ms``.
- **Metrics**: :meth:`fhir_server.metrics.Metrics.observe_request` by method, route
  template (never the raw path: no ids in metrics) and status.

OWASP Logging Cheat Sheet (https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html):
no token, password or code is written; the JSON encoder escapes what a client sent, so a
path cannot forge a log line.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import time
from datetime import UTC, datetime
from typing import Any

from starlette.types import Scope

from fhir_server.redact import query_for_log

access_log = logging.getLogger("fhir_server.access")

REQUEST_ID_HEADER = b"x-request-id"
ROUTE_KEY = "fhir.route"
"""Scope key of the route template a request was dispatched to (set by the dispatch)."""
POLICY_KEY = "fhir.policy"
"""Scope key of the :class:`smart_auth.scopes.AccessPolicy` of the request's token."""
UNMATCHED = "(unmatched)"
"""The route label of a request no route answered (a 404): never its path."""

_SANE_ID = re.compile(rb"[A-Za-z0-9\-_.:/+=@]{1,128}\Z")
_PREFIX = os.urandom(5).hex()
_COUNTER = itertools.count(1)


def request_id(scope: Scope) -> bytes:
    """The request's id: its sane ``X-Request-ID``, or a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.match(value):
                return value
            break
    return f"{_PREFIX}-{next(_COUNTER):x}".encode()


def route_of(scope: Scope) -> str:
    """The route template that answered (``/fhir/{type}/{id}``, ``/auth/token``)."""
    route = scope.get(ROUTE_KEY)
    if route is not None:
        return route
    found = scope.get("route")  # the FastAPI / Starlette route the router matched
    path = getattr(found, "path", None)
    return path if isinstance(path, str) else UNMATCHED


def log_access(
    scope: Scope, status: int, started: float, route: str | None = None, rid: bytes = b""
) -> None:
    """The end of a request: its metrics observation and access-log line."""
    elapsed = time.perf_counter() - started
    app = scope.get("app")
    observer = getattr(app, "observer", None)
    if observer is not None and observer.metrics is not None:
        observer.metrics.observe_request(scope["method"], route or route_of(scope), status, elapsed)
    if not access_log.isEnabledFor(logging.INFO):
        return
    query = scope.get("query_string", b"").decode("latin-1")
    path = scope["path"] + (f"?{query_for_log(scope['path'], query)}" if query else "")
    if observer is not None and observer.json:
        access_log.info(
            "%s %s %d %.1fms",
            scope["method"],
            path,
            status,
            elapsed * 1000,
            extra={"fhir": _fields(scope, path, status, elapsed, route, rid)},
        )
    else:
        access_log.info("%s %s %d %.1fms", scope["method"], path, status, elapsed * 1000)


def _fields(
    scope: Scope, path: str, status: int, elapsed: float, route: str | None, rid: bytes
) -> dict[str, Any]:
    client = scope.get("client")
    policy = scope.get(POLICY_KEY)
    return {
        "request_id": rid.decode("latin-1") if rid else None,
        "method": scope["method"],
        "path": path,
        "route": route or route_of(scope),
        "status": status,
        "duration_ms": round(elapsed * 1000, 2),
        "client_ip": client[0] if client else None,
        "user": getattr(policy, "subject", None),
        "client_id": getattr(policy, "client_id", None) or None,
    }


class RequestObserver:
    """What the server does at the end of each request, per application: its metrics
    (None when ``FHIR_SERVER_METRICS=off``) and the log format."""

    def __init__(self, metrics: Any, json_log: bool) -> None:
        self.metrics = metrics
        self.json = json_log


class JsonFormatter(logging.Formatter):
    """Each log record as one JSON object on one line: ``time`` (UTC, ISO 8601),
    ``level``, ``logger``, ``message``, the access line's fields, ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fhir", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)

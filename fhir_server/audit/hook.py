"""The one hook through which every FHIR interaction and operation is audited: each
endpoint the routes register (``fhir_server.routes.register_routes``: the interactions
of the support table, every operation of ``fhir_server.operations.OPERATIONS`` and their
extra routes) is wrapped by :func:`audited`, so an operation added later is audited
without code of its own.

The wrapper runs the endpoint, then queues a :class:`~fhir_server.audit.record.Captured`
(the request's policy, address, path and query, the status, the response body: a tuple
of what the request holds, about a microsecond) on the process's
:class:`~fhir_server.audit.trail.AuditTrail`; the versions the request committed are
noted by :class:`~fhir_server.audit.store.AuditedStore` through :data:`COMMITTED` (a
context variable of the request's task). Building and storing the AuditEvents happens
later, in the trail's writer task.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from fhir_server.audit.record import Captured
from fhir_server.request_log import POLICY_KEY
from fhir_server.storage.base import WriteResult

Endpoint = Callable[[Request], Awaitable[Response]]

COMMITTED: ContextVar[list[WriteResult] | None] = ContextVar("fhir_audit_committed", default=None)
"""The versions the current request has committed so far (None: not audited)."""
OPERATION: ContextVar[tuple[Any, str, Any] | None] = ContextVar(
    "fhir_audit_operation", default=None
)
"""(the trail, the operation's code, the request's ASGI scope) while an operation runs, and
in the tasks it starts (they copy the context): what a background job such as
``$export`` (:mod:`fhir_server.audit.disclosure`) records its disclosures with."""

_NOT_AUDITED = frozenset({"capabilities"})
"""The CapabilityStatement: public, no data, no token."""
_ETAG_CODES = frozenset({"read", "vread"})


def audited(code: str, endpoint: Endpoint) -> Endpoint:
    """``endpoint`` recording each call on the app's audit trail (``app.state.audit``;
    nothing when audit is off)."""
    if code in _NOT_AUDITED:
        return endpoint
    etag = code in _ETAG_CODES
    operation = code.startswith("$")

    async def audited_endpoint(request: Request) -> Response:
        trail = getattr(request.app.state, "audit", None)
        if trail is None:
            return await endpoint(request)
        committed: list[WriteResult] = []
        token = COMMITTED.set(committed)
        running = OPERATION.set((trail, code, request.scope)) if operation else None
        try:
            response = await endpoint(request)
        finally:
            COMMITTED.reset(token)
            if running is not None:
                OPERATION.reset(running)
        trail.queue(capture(code, request.scope, response, committed, etag))
        return response

    audited_endpoint.__name__ = getattr(endpoint, "__name__", code)
    return audited_endpoint


def capture(
    code: str, scope: Any, response: Response, committed: list[WriteResult], etag: bool
) -> Captured:
    """What the trail needs of a finished request: values it already holds, in a tuple
    (no parsing, no header objects)."""
    return Captured(
        code,
        scope.get(POLICY_KEY),
        scope.get("client"),
        response.status_code,
        scope["method"],
        scope["path"],
        scope.get("query_string", b""),
        getattr(response, "body", None),
        _etag(response.raw_headers) if etag else None,
        time.time(),
        committed,
    )


def _etag(raw_headers: list[tuple[bytes, bytes]]) -> bytes | None:
    for name, value in raw_headers:
        if name == b"etag":  # Starlette lowercases the names it encodes
            return value
    return None

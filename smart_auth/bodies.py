"""Request bodies of the authorization server, read with bounds.

Every route of the auth router (token, RFC 6749 section 3.2; introspection, RFC 7662;
revocation, RFC 7009; registration, RFC 7591; the EHR launch API; the sign-in, consent,
patient-picker and activation forms) is a :class:`BoundedBodyRoute`: before its handler
runs, the body is read up to :data:`MAX_BODY_BYTES`, declared (``Content-Length``) or
streamed (chunked), and a larger one is refused with ``413`` and an OAuth error body
(https://www.rfc-editor.org/rfc/rfc6749#section-5.2) without reading on; the
connection is then closed (https://www.rfc-editor.org/rfc/rfc9110#section-15.5.14), so
the rest of the body is not read either. The handler then reads the body that was
read for it, whatever way it asks (``request.body()``, ``request.form()``).

JSON bodies (registration, launch) are parsed by :func:`parse_json`, which refuses
nesting deeper than :data:`MAX_JSON_DEPTH` with a ``ValueError`` (the parser's own
recursion would otherwise fail as an unexpected error).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive

MAX_BODY_BYTES = 64 * 1024
"""The largest request body any authorization endpoint accepts (a registration with a
JWKS of several keys is a few kilobytes)."""

MAX_JSON_DEPTH = 32
"""The deepest nesting of arrays and objects accepted in a JSON body (a registration's
JWKS is 4 deep)."""


class BodyTooLarge(Exception):
    """The body is larger than the limit (declared or as streamed so far)."""


async def read_bounded(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole request body, or :class:`BodyTooLarge` as soon as it is known to be
    larger than ``limit``: from ``Content-Length`` before reading anything, or from the
    bytes streamed so far. ``ClientDisconnect`` if the client goes away first."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int = MAX_BODY_BYTES) -> JSONResponse:
    """413 with an OAuth error body; the connection closes after it."""
    return JSONResponse(
        {
            "error": "invalid_request",
            "error_description": f"The request body is larger than {limit} bytes.",
        },
        status_code=413,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache", "Connection": "close"},
    )


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over the body already read, then the original one
    (which reports the client's disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class BoundedBodyRoute(APIRoute):
    """A route whose handler gets the request with its body read first, within
    :data:`MAX_BODY_BYTES` (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            try:
                body = await read_bounded(request)
            except BodyTooLarge:
                return too_large()
            except ClientDisconnect:
                # nobody is left to answer; the access log shows a 400
                return Response(status_code=400, headers={"Connection": "close"})
            return await handler(Request(request.scope, _replay(body, request.receive)))

        return bounded


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The parsed JSON body (None when empty); ``ValueError`` when it is not UTF-8 JSON
    or nests arrays and objects deeper than ``max_depth``."""
    if not raw:
        return None
    try:
        value = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"not UTF-8: {error.reason}") from None
    if _depth_exceeds(value, max_depth):
        raise ValueError(f"JSON nested deeper than {max_depth} levels")
    return value


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Whether arrays and objects nest deeper than ``max_depth`` (a scalar is depth 0,
    ``[]`` depth 1); iterative, so any depth the parser produced is safe to walk."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False

"""HTTP routes of the RESTful API (https://hl7.org/fhir/R4/http.html), registered from
the support table: each interaction the table lists gets its route, and a route refuses a
type the table does not list for that interaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from capability.support import SupportTable
from fhir_server.access import GuardedStore
from fhir_server.audit.hook import audited
from fhir_server.config import Settings
from fhir_server.documents.binary_raw import raw_binary, wants_raw
from fhir_server.events.subscriptions import SubscriptionWrites, write_rule
from fhir_server.failures import unexpected_failure
from fhir_server.formats import (
    binary_resource,
    is_raw_upload,
    request_body_kind,
    response_media_type,
)
from fhir_server.headers import FHIR_RESPONSE_HEADERS, HSTS
from fhir_server.interactions import Context, FhirResponse
from fhir_server.interactions.bundle import batch_or_transaction
from fhir_server.interactions.capabilities import capabilities
from fhir_server.interactions.conditional import (
    conditional_delete,
    conditional_patch,
    conditional_update,
)
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import delete
from fhir_server.interactions.history import history
from fhir_server.interactions.patch import patch
from fhir_server.interactions.read import read, vread
from fhir_server.interactions.search import search_compartment, search_system, search_type
from fhir_server.interactions.update import update
from fhir_server.operations import support_table
from fhir_server.rate_limit import RateLimiter, parse_limit
from fhir_server.request_log import POLICY_KEY, ROUTE_KEY, log_access, request_id
from fhir_server.storage.base import Store
from fhir_server.workflows import WorkflowStore
from resources import fhir_json
from resources.definitions import RESOURCE_TYPES
from resources.errors import FhirError, invalid
from smart_auth.scopes import AccessPolicy
from smart_auth.service import AuthError, SmartAuth

log = logging.getLogger("fhir_server")

Handler = Callable[..., Awaitable[FhirResponse]]

FHIR_PREFIX = "/fhir"

# (interaction code, HTTP method, path, handler, body kind); most specific paths first.
_ROUTES: tuple[tuple[str, str, str, Handler, str | None], ...] = (
    ("capabilities", "GET", "/metadata", capabilities, None),
    ("search-system", "GET", "", search_system, None),
    ("transaction", "POST", "", batch_or_transaction, "json"),
    ("search-system", "POST", "/_search", search_system, "form"),
    ("history-system", "GET", "/_history", history, None),
    ("history-type", "GET", "/{type}/_history", history, None),
    ("search-type", "POST", "/{type}/_search", search_type, "form"),
    ("vread", "GET", "/{type}/{id}/_history/{vid}", vread, None),
    ("history-instance", "GET", "/{type}/{id}/_history", history, None),
    ("search-type", "GET", "/{compartment}/{id}/{type}", search_compartment, None),
    ("read", "GET", "/{type}/{id}", read, None),
    ("update", "PUT", "/{type}/{id}", update, "json"),
    ("patch", "PATCH", "/{type}/{id}", patch, "patch"),
    ("delete", "DELETE", "/{type}/{id}", delete, None),
    ("create", "POST", "/{type}", create, "json"),
    ("update", "PUT", "/{type}", conditional_update, "json"),
    ("patch", "PATCH", "/{type}", conditional_patch, "patch"),
    ("delete", "DELETE", "/{type}", conditional_delete, None),
    ("search-type", "GET", "/{type}", search_type, None),
)


def register_routes(app: FastAPI) -> Routes:
    """The FHIR routes: on the FastAPI router (so they are documented and answer whatever
    the fast dispatch leaves), and in a :class:`FhirDispatch` placed in front of it;
    returned for the outer dispatch (see :class:`FhirDispatch`)."""
    from fhir_server.operations.http import operation_routes  # it imports this module

    table = support_table()
    offered = {code for t in table.types.values() for code in t.interactions}
    offered |= set(table.system_interactions) | {"capabilities"}
    routes = [
        *operation_routes(table),  # before /{type}/{id}, which would take /Patient/$op
        *(
            (code, method, path, _endpoint(table, code, handler, body))
            for code, method, path, handler, body in _ROUTES
            if code in offered
        ),
    ]
    dispatch: dict[tuple[str, int], list[_Template]] = {}
    for code, method, path, endpoint in routes:
        endpoint = audited(code, endpoint)  # every interaction and operation: fhir_server/audit
        app.add_api_route(
            FHIR_PREFIX + path, endpoint, methods=[method], name=code, include_in_schema=True
        )
        template = _Template.parse(path, endpoint)
        dispatch.setdefault((method, len(template.segments)), []).append(template)
    app.add_middleware(FhirDispatch, templates=dispatch)
    return dispatch


@dataclass(frozen=True)
class _Template:
    """A route path below ``/fhir`` as segments: literals, or ``{name}`` parameters."""

    segments: tuple[tuple[str, bool], ...]
    """(literal or parameter name, is a parameter)"""
    endpoint: Callable[[Request], Awaitable[Response]]
    route: str = ""
    """The template below the server's root, for logs and metrics (``/fhir/{type}``)."""

    @classmethod
    def parse(cls, path: str, endpoint: Callable[[Request], Awaitable[Response]]) -> _Template:
        parts = path.split("/")[1:] if path else []
        segments = tuple(
            (part[1:-1], True) if part.startswith("{") else (part, False) for part in parts
        )
        return cls(segments, endpoint, FHIR_PREFIX + path)

    def match(self, parts: list[str]) -> dict[str, str] | None:
        params: dict[str, str] = {}
        for (text, is_param), part in zip(self.segments, parts, strict=True):
            if is_param:
                params[text] = part
            elif text != part:
                return None
        return params


_SYSTEM_SEGMENTS = frozenset({"metadata", "_history", "_search"})


Routes = dict[tuple[str, int], list[_Template]]
"""(method, number of segments) -> the route templates, most specific first."""


class FhirDispatch:
    """Finds the FHIR route of a request by its segments (one dict lookup and a few
    string comparisons) instead of the framework's walk through every route's regular
    expression and its dependency solving: the same endpoints, a shorter path.

    It claims only ``/fhir`` paths whose first segment is a resource type or a
    system-level literal, and only when a route matches; anything else (unknown types,
    wrong methods, ``/fhir/.well-known/...``) goes on to the FastAPI router, which
    answers it as before.

    A trailing slash names the same thing as the path without it: ``POST [base]/``,
    ``GET [base]/Patient/``, ``[base]/metadata/`` and ``[base]/Patient/123/`` are served
    directly, never redirected. (Starlette answers such paths with a ``307`` to the form
    without the slash: fhir.js does not follow it for a POST, so a transaction was lost,
    and fhirpy, client-py and client-js sent their bodies twice.) What the dispatch leaves
    goes to the router without the slash too (an unknown type is a 404 at once).

    Two are installed. The inner one sits inside the application's middleware (CORS,
    access log). The outer one (``outer=True``) sits in front of all middleware and
    takes the requests that need none of it: those without an ``Origin`` header (so
    no CORS answer is due); it writes their access-log line itself. The endpoints
    catch every exception themselves, so no error middleware is needed in front of
    them.
    """

    def __init__(self, app: ASGIApp, templates: Routes, outer: bool = False) -> None:
        self.app = app
        self.templates = templates
        self.outer = outer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not (self.outer and _has_origin(scope)):
            found = self._route(scope)
            if found is not None:
                endpoint, params, route = found
                scope["path_params"] = params
                scope[ROUTE_KEY] = route
                if not self.outer:
                    response = await endpoint(Request(scope, receive))
                    await response(scope, receive, send)
                    return
                started = time.perf_counter()
                rid = request_id(scope)
                status = 500
                try:
                    response = await endpoint(Request(scope, receive))
                    status = response.status_code
                    response.raw_headers.append((b"x-request-id", rid))
                    if scope.get("scheme") == "https":
                        response.raw_headers.append(_HSTS_HEADER)
                    await response(scope, receive, send)
                finally:
                    log_access(scope, status, started, route, rid)
                return
        if not self.outer and scope["type"] == "http":  # not the lifespan scope: no path
            scope = _without_trailing_slash(scope)
        await self.app(scope, receive, send)

    def _route(
        self, scope: Scope
    ) -> tuple[Callable[[Request], Awaitable[Response]], dict[str, str], str] | None:
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root + "/"):  # mounted below a prefix (--root-path)
            path = path[len(root) :]
        if path.endswith("/") and path.startswith(FHIR_PREFIX + "/"):
            path = path[:-1]  # [base]/Patient/ is [base]/Patient
        if path == FHIR_PREFIX:
            parts: list[str] = []
        elif path.startswith(FHIR_PREFIX + "/"):
            parts = path[len(FHIR_PREFIX) + 1 :].split("/")
            first = parts[0]
            if "" in parts or not (
                first in RESOURCE_TYPES or first in _SYSTEM_SEGMENTS or first.startswith("$")
            ):
                return None
        else:
            return None
        for template in self.templates.get((scope["method"], len(parts)), ()):
            params = template.match(parts)
            if params is not None:
                return template.endpoint, params, template.route
        return None


_HSTS_HEADER = (b"strict-transport-security", HSTS.encode())


def _without_trailing_slash(scope: Scope) -> Scope:
    """A copy of ``scope`` without the trailing slash of a path below ``/fhir/``, so that
    the router answers it as the path without one rather than redirecting (``307``)."""
    path = scope["path"]
    root = scope.get("root_path", "")
    below = path[len(root) :] if root and path.startswith(root + "/") else path
    if not (below.endswith("/") and below.startswith(FHIR_PREFIX + "/")):
        return scope
    raw = scope.get("raw_path")
    return {
        **scope,
        "path": path[:-1],
        "raw_path": raw[:-1] if raw and raw.endswith(b"/") else raw,
    }


def _endpoint(
    table: SupportTable, code: str, handler: Handler, body_kind: str | None
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        params = query_items(request.scope)
        pretty = _last(params, "_pretty").lower() == "true"
        try:
            accept = request.headers.get("accept")
            try:
                media = response_media_type(accept, _last(params, "_format"))
            except FhirError:
                if not wants_raw(code, request.path_params.get("type")):
                    raise
                media = ""  # a Binary's own content type (fhir_server.documents.binary_raw)
            ctx = _context(request, code, params)
            kwargs = _path_arguments(table, code, request.path_params)
            content_type = request.headers.get("content-type")
            if body_kind == "form":
                kwargs["body"] = await _form_body(request, ctx.settings.max_body_bytes)
            elif body_kind == "json" and is_raw_upload(kwargs.get("type_"), content_type):
                kwargs["body"] = await _raw_binary(request, ctx, content_type, kwargs.get("id_"))
            elif body_kind is not None:
                request_body_kind(content_type, allow_json_patch=body_kind == "patch")
                kwargs["body"] = await read_body(request, ctx.settings.max_body_bytes)
                fhir_json.check_depth(kwargs["body"], ctx.settings.max_json_depth)
            result = await handler(ctx, **kwargs)
            if not media:
                return raw_binary(result, accept)
        except FhirError as error:
            return error_response(error, pretty)
        except Exception as failure:
            where = f"{request.method} {request.url.path}"
            return error_response(unexpected_failure(failure, where), pretty)
        return render(result, media, pretty)

    endpoint.__name__ = code.replace("-", "_")
    return endpoint


def _path_arguments(table: SupportTable, code: str, params: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    type_ = params.get("type")
    if type_ is not None:
        require_type(table, type_, code)
        kwargs["type_"] = type_
    compartment = params.get("compartment")
    if compartment is not None:
        require_type(table, compartment, "read")
        kwargs["compartment"] = compartment
    if "id" in params:
        kwargs["id_"] = params["id"]
    if "vid" in params:
        kwargs["version_id"] = params["vid"]
    return kwargs


def require_type(table: SupportTable, type_: str, code: str) -> None:
    if type_ not in RESOURCE_TYPES:
        raise FhirError(404, "not-supported", f"Unknown resource type {type_!r}")
    if type_ not in table.types:
        raise FhirError(
            404, "not-supported", f"Resource type {type_} is not supported by this server"
        )
    if not table.supports(type_, code):
        raise FhirError(405, "not-supported", f"{code} is not supported for {type_}")


def query_items(scope: Scope) -> list[tuple[str, str]]:
    """The query parameters in order: what Starlette's ``QueryParams`` reads, that is
    ``parse_qsl(..., keep_blank_values=True)`` (``&``-separated, empty fields skipped,
    ``+`` as space, UTF-8 percent-decoding), decoding only the parts that need it."""
    raw = scope.get("query_string", b"")
    if not raw:
        return []
    items = []
    for field in raw.decode("latin-1").split("&"):
        if field:
            name, _, value = field.partition("=")
            items.append((_unquote(name), _unquote(value)))
    return items


def _unquote(text: str) -> str:
    if "%" in text or "+" in text:
        return unquote(text.replace("+", " "))
    return text


def _last(params: list[tuple[str, str]], name: str) -> str:
    """The last value of ``name`` ("" when absent), as ``QueryParams.get`` would give."""
    found = ""
    for key, value in params:
        if key == name:
            found = value
    return found


def _context(request: Request, code: str, params: list[tuple[str, str]]) -> Context:
    settings: Settings = request.app.state.settings
    store: Store = request.app.state.store
    base = fhir_base_url(request)
    auth = getattr(request.app.state, "auth", None)
    guard = request.app.state.outbound
    if auth is not None and code != "capabilities":
        policy = authenticate(auth, request, base)
        ruled = WorkflowStore(store, policy=policy, settings=settings)
        store = GuardedStore(ruled, policy, write_rule(guard, policy))  # type: ignore[arg-type]
    elif code != "capabilities":
        ruled = WorkflowStore(store, settings=settings)
        store = SubscriptionWrites(ruled, write_rule(guard, None))  # type: ignore[assignment]
    return Context(store, settings, base, request.headers, params, auth)


def _has_origin(scope: Scope) -> bool:
    return any(name == b"origin" for name, _ in scope["headers"])


def fhir_base_url(request: Request) -> str:
    """The public FHIR base URL: configured, or the one the request came to."""
    settings: Settings = request.app.state.settings
    if settings.base_url:
        return settings.base_url
    scope = request.scope
    server = scope.get("server")  # (host, port); a list from some servers and test clients
    key = (
        scope.get("scheme"),
        tuple(server) if server else None,
        scope.get("root_path"),
        _host(scope),
    )
    found = _BASE_URLS.get(key)
    if found is None:
        if len(_BASE_URLS) >= 64:  # the Host header is the client's: keep the cache small
            _BASE_URLS.clear()
        found = _BASE_URLS[key] = str(request.base_url).rstrip("/") + FHIR_PREFIX
    return found


_BASE_URLS: dict[tuple[Any, ...], str] = {}


def _host(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"host":
            return value
    return None


def authenticate(auth: SmartAuth, request: Request, base: str) -> AccessPolicy:
    """The caller's access policy from its bearer token; 401/403 OperationOutcomes with
    ``WWW-Authenticate`` (https://www.rfc-editor.org/rfc/rfc6750#section-3) otherwise."""
    try:
        policy = auth.authenticate(request.headers.get("authorization"), base)
    except AuthError as failure:
        code = "login" if failure.status == 401 else "forbidden"
        error = FhirError(failure.status, code, failure.message)
        if failure.www_authenticate:
            error.headers["WWW-Authenticate"] = failure.www_authenticate
        raise error from None
    request.scope[POLICY_KEY] = policy  # the access log's user and client id
    _rate_limiter(request.app, auth).check(policy.client_id, policy.subject)
    return policy


def _rate_limiter(app: Any, auth: SmartAuth) -> RateLimiter:
    """The process's per-client rate limits (made on first use)."""
    limiter = getattr(app.state, "rate_limits", None)
    if limiter is None:
        settings: Settings = app.state.settings

        def override(client_id: str) -> str | None:
            client = auth.store.get_client(client_id)
            value = client.metadata.get("rate_limit") if client is not None else None
            return value if isinstance(value, str) else None

        limiter = app.state.rate_limits = RateLimiter(
            parse_limit(settings.rate_limit), override, settings.workers
        )
    return limiter


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (declared or streamed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # nobody is left to answer: the access log shows the 400
        raise FhirError(
            400, "incomplete", "The client closed the connection before the body was complete"
        ) from None
    return b"".join(chunks)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes and 400 when empty."""
    body = await _bounded_body(request, limit)
    if not body.strip():
        raise invalid("The request has no body; a FHIR resource is required")
    return body


async def _raw_binary(
    request: Request, ctx: Context, content_type: str | None, id_: str | None
) -> bytes:
    """A Binary sent as its raw bytes, as FHIR JSON (``fhir_server.formats``)."""
    data = await read_body(request, ctx.settings.max_body_bytes)
    context = request.headers.get("x-security-context")
    return binary_resource(content_type or "", data, context, id_)


async def _form_body(request: Request, limit: int) -> bytes:
    """A ``POST _search`` body: ``application/x-www-form-urlencoded`` (or empty)."""
    media = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if media and media != "application/x-www-form-urlencoded":
        raise FhirError(
            415, "not-supported", "POST _search takes application/x-www-form-urlencoded"
        )
    return await _bounded_body(request, limit)


def _too_large(limit: int) -> FhirError:
    return FhirError(413, "too-costly", f"The request body is larger than {limit} bytes")


def render(result: FhirResponse, media: str, pretty: bool) -> Response:
    """The HTTP response of an interaction, with :data:`FHIR_RESPONSE_HEADERS` (which
    the interaction's own headers override)."""
    headers = {**FHIR_RESPONSE_HEADERS, **result.headers}
    body = result.body
    if body is None or result.status in (204, 304):
        return Response(status_code=result.status, headers=headers)
    data = fhir_json.dumps(body) if isinstance(body, dict) else body
    if pretty:
        data = fhir_json.reindent(data)
    return Response(
        content=data,
        status_code=result.status,
        headers=headers,
        media_type=f"{media}; charset=utf-8",
    )


def error_response(error: FhirError, pretty: bool = False) -> Response:
    """An OperationOutcome response, with :data:`FHIR_RESPONSE_HEADERS`."""
    return Response(
        content=fhir_json.dumps(error.outcome(), pretty=pretty),
        status_code=error.status,
        headers={**FHIR_RESPONSE_HEADERS, **error.headers},
        media_type="application/fhir+json; charset=utf-8",
    )

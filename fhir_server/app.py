"""Assembly: ``create_app(settings)`` builds the FastAPI application.

It opens the store for the app's lifetime, registers the FHIR routes from the support
table, turns every error (unknown route, wrong method, unexpected failure) into an
OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html), and logs one line per
request.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.audit import AuditedStore, open_trail
from fhir_server.auth_hooks import StoreHooks
from fhir_server.config import Settings
from fhir_server.events.dispatcher import Dispatcher
from fhir_server.events.grants import GrantCheck
from fhir_server.events.wake import WakingStore
from fhir_server.events.websocket_channel import PATH as WEBSOCKET_PATH
from fhir_server.events.websocket_endpoint import websocket_endpoint
from fhir_server.failures import unexpected_failure
from fhir_server.headers import HSTS, NOSNIFF
from fhir_server.health import metrics_router
from fhir_server.health import router as health_router
from fhir_server.metrics import Metrics, TimedStore
from fhir_server.outbound import OutboundGuard
from fhir_server.payments.webhook import router as payments_router
from fhir_server.redact import url_for_log
from fhir_server.request_log import (
    REQUEST_ID_HEADER,
    RequestObserver,
    log_access,
    request_id,
)
from fhir_server.routes import (
    FHIR_PREFIX,
    FhirDispatch,
    Routes,
    error_response,
    register_routes,
)
from fhir_server.storage.open import open_store
from resources.errors import FhirError
from smart_auth.service import AuthConfig, SmartAuth

log = logging.getLogger("fhir_server")


def create_app(settings: Settings | None = None, *, serving: bool = False) -> FastAPI:
    """The application. ``serving``: it is what the process serves (``fhir-server serve``,
    :func:`serve_app`), so once started it tunes the process's garbage collector
    (:func:`tune_gc_for_serving`); an app of a test or a library leaves it alone."""
    settings = settings or Settings()
    _lean_log_records()
    metrics = Metrics(settings.metrics_dir) if settings.metrics == "on" else None
    observer = RequestObserver(metrics, json_log=settings.log_format == "json")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(
            settings.storage,
            sqlite_synchronous=settings.sqlite_synchronous,
            sqlite_mmap_mib=settings.sqlite_mmap_mib,
        )
        await store.open()
        # subscriptions: this process's share of the outbox (fhir_server/events)
        dispatcher = app.state.dispatcher = Dispatcher(
            store,
            settings,
            _outbound_guard(app, settings),
            GrantCheck(lambda: getattr(app.state, "auth", None)),
        )
        store = WakingStore(store, dispatcher.wake, dispatcher.recent)  # a commit wakes it
        if metrics is not None:
            store = TimedStore(store, metrics)  # store timings for /metrics
            await metrics.start()
        app.state.store = store
        log.info("store open: %s", url_for_log(settings.storage))
        # the audit trail writes through the raw store; the API's store keeps AuditEvents
        # append-only and notes the versions each request commits (fhir_server/audit)
        app.state.audit = await open_trail(app, settings, dispatcher.store)
        app.state.store = AuditedStore(store)
        app.check_telemetry()
        auth = app.state.auth
        if auth is not None:
            await auth.open()
            # expired codes, launch contexts, refresh tokens and revocations
            await asyncio.to_thread(auth.store.purge_expired)
            if settings.portal == "on" and not settings.portal_fhir_base_url:
                await _register_portal(auth, settings)
        else:
            log.warning(
                "AUTHORIZATION IS OFF (FHIR_SERVER_AUTH=off): every request is served"
                " without a token; never expose this server"
            )
        await dispatcher.start()
        if serving:
            tune_gc_for_serving()
        try:
            yield
        finally:
            await dispatcher.stop()
            if app.state.audit is not None:
                await app.state.audit.stop()  # what is queued is written
            if auth is not None:
                await auth.close()
            await store.close()
            if metrics is not None:
                await metrics.stop()
            log.info("store closed")

    app = FhirServerApp(
        title="FHIR R4 server",
        version="0.1.0",
        lifespan=lifespan,
        # Swagger UI loads its scripts and styles from a CDN: off unless FHIR_SERVER_DOCS
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.observer = observer
    app.state.auth = _smart_auth(settings, app) if settings.auth == "smart" else None
    if app.state.auth is not None:
        app.include_router(app.state.auth.router)
    app.fhir_routes = register_routes(app)
    # the R4 websocket channel of Subscriptions: [base]/websocket (fhir_server/events)
    app.add_api_websocket_route(FHIR_PREFIX + WEBSOCKET_PATH, websocket_endpoint)
    app.openapi = _openapi(app, settings)  # type: ignore[method-assign]
    app.include_router(health_router)  # /healthz, /readyz: no authorization
    app.include_router(payments_router)  # /payments/webhook: signed by the processor
    if settings.portal == "on":
        from fhir_server.portal import portal_router

        app.include_router(portal_router(settings))  # the patient portal app at /portal/
    if metrics is not None:
        app.include_router(metrics_router)  # /metrics: route templates only, no ids
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        # browser SMART apps (client-js) call /fhir, /auth/token and the discovery
        # documents from their own origin with bearer tokens (no cookies: no credentials)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["*"],
            expose_headers=[
                "Location",
                "ETag",
                "Last-Modified",
                "Content-Location",
                "X-Request-ID",  # what a browser app can quote when it reports a problem
            ],
            max_age=3600,
        )
    app.add_middleware(AccessLog)
    app.add_middleware(SecurityHeaders)
    return app


def _lean_log_records() -> None:
    """Log records without the caller's file and line, thread, process and task names
    (none of which the server's log format prints): the "Optimization" section of the
    logging HOWTO (https://docs.python.org/3/howto/logging.html#optimization). The access
    log writes a record per request; this takes a third off its cost."""
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.logAsyncioTasks = False  # type: ignore[attr-defined]


def serve_app() -> FastAPI:
    """The application as ``fhir-server serve`` runs it in each process (a uvicorn factory:
    ``uvicorn --factory fhir_server.app:serve_app``): :func:`create_app`, serving."""
    return create_app(serving=True)


YOUNG_THRESHOLD = 5000
"""Allocations between two collections of the youngest generation in a server process
(Python's default: 700)."""


def tune_gc_for_serving() -> None:
    """The cyclic garbage collector as a server process runs it
    (https://docs.python.org/3/library/gc.html):

    - what the process holds once started (modules, the FHIR definitions, the search
      parameters, the store's caches: ~170,000 objects) is collected, then frozen
      (``gc.freeze``). A full collection walks every tracked object of the oldest
      generation: with the startup heap there, each took 80-120 ms under load, one every
      ~1.4 s in each worker (``bench/scheduling_bench.py``), a pause of every request in
      flight and, when it fell inside the writer's turn, of the other processes' writes;
    - the youngest generation is collected every :data:`YOUNG_THRESHOLD` allocations
      instead of 700: each young collection moves the objects of the requests in flight
      a generation up, where they wait for a full collection; fewer young collections
      promote fewer of them, so full collections come less often.

    Frozen objects are still freed by reference counting; only cycles among them stay."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, oldest)


def _smart_auth(settings: Settings, app: FastAPI) -> SmartAuth:
    config = AuthConfig(
        storage_url=settings.storage,
        base_url=settings.base_url,
        access_token_lifetime=settings.access_token_lifetime,
        offline_refresh_lifetime=settings.refresh_token_lifetime,
        registration=settings.registration,
        online_refresh_lifetime=settings.online_refresh_lifetime,
        lockout_after=settings.lockout_after,
        lockout_seconds=settings.lockout_seconds,
        mfa=settings.mfa,
    )
    return SmartAuth(
        config,
        StoreHooks(lambda: app.state.store, settings),
        fetch_client_jwks=_outbound_guard(app, settings),
    )


async def _register_portal(auth: SmartAuth, settings: Settings) -> None:
    """The portal's public SMART client, registered (or given this address's redirect
    URIs) at start-up; a failure is logged, the server still starts."""
    from fhir_server.portal import register_portal

    try:
        await asyncio.to_thread(register_portal, auth.store, settings)
    except Exception as error:  # noqa: BLE001 - the API serves without the portal
        log.warning("portal: could not register its SMART client: %s", error)


def _outbound_guard(app: FastAPI, settings: Settings) -> OutboundGuard:
    """The one guard of outbound requests (a client's jwks_uri, subscription endpoints):
    https, public addresses unless FHIR_SERVER_OUTBOUND_ALLOW names them, limits."""
    guard = getattr(app.state, "outbound", None)
    if guard is None:
        guard = app.state.outbound = OutboundGuard(settings.outbound_allow)
    return guard


async def _http_exception(request: Request, exc: Any) -> Response:
    status = exc.status_code
    if status == 404:
        error = FhirError(404, "not-found", f"No such endpoint: {request.url.path}")
    elif status == 405:
        error = FhirError(
            405, "not-supported", f"{request.method} is not allowed on {request.url.path}"
        )
    else:
        error = FhirError(status, "processing", str(exc.detail))
    return error_response(error)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return error_response(unexpected_failure(exc, f"{request.method} {request.url.path}"))


def _openapi(app: FastAPI, settings: Settings) -> Any:
    """``app.openapi``: the document of ``fhir_server.openapi``, made once."""
    made: dict[str, Any] = {}

    def openapi() -> dict[str, Any]:
        if not made:
            from importlib.metadata import PackageNotFoundError, version

            from fhir_server.openapi import build_openapi
            from fhir_server.operations import support_table

            try:
                release = version("fhir-server")
            except PackageNotFoundError:  # pragma: no cover - run from a source tree
                release = "unknown"
            made.update(build_openapi(support_table(), release, settings.auth == "smart"))
        return made

    return openapi


class FhirServerApp(FastAPI):
    """The FastAPI application with the outer :class:`FhirDispatch` in front of its
    middleware (Starlette builds the stack on the first request; this wraps it)."""

    fhir_routes: Routes = {}
    observer: RequestObserver | None = None
    """Metrics and log format of the end of each request (:mod:`fhir_server.request_log`)."""
    telemetry_off = False
    """Set at start-up when no OpenTelemetry provider is configured (see
    :meth:`check_telemetry`)."""

    def build_middleware_stack(self) -> ASGIApp:
        return FhirDispatch(super().build_middleware_stack(), self.fhir_routes, outer=True)

    def check_telemetry(self) -> None:
        """FastAPI traces requests when an OpenTelemetry tracer or meter provider is
        configured, and asks on every request (environment lookups included). The
        providers are configured by then (by ``opentelemetry-instrument`` or FastAPI's
        own start-up): when there are none, requests skip the question."""
        native = getattr(self, "_native_telemetry", None)
        enabled = getattr(native, "enabled", None)
        self.telemetry_off = callable(enabled) and not enabled()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.telemetry_off and scope["type"] == "http":
            if self.root_path:
                scope["root_path"] = self.root_path
            scope["app"] = self
            if self.middleware_stack is None:
                self.middleware_stack = self.build_middleware_stack()
            await self.middleware_stack(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class SecurityHeaders:
    """``X-Content-Type-Options: nosniff`` on every response, and ``Cache-Control:
    no-store`` on those of ``/fhir`` and ``/auth`` that set no ``Cache-Control`` of their
    own (the discovery documents and the JWKS do). FHIR responses carry both already
    (:data:`fhir_server.headers.FHIR_RESPONSE_HEADERS`), also on the fast path in front
    of this middleware.

    Every HTML page gets a Content-Security-Policy with ``frame-ancestors 'none'`` (no
    page of the server can be framed: clickjacking) and ``X-Frame-Options: DENY`` when
    it sets none of its own (the sign-in pages and the portal set stricter ones), and a
    response over https (TLS here, or a proxy's ``X-Forwarded-Proto`` from an address
    uvicorn trusts) gets ``Strict-Transport-Security`` (RFC 6797)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        root = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        private = path.startswith(("/fhir/", "/auth/")) or path == "/fhir"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in NOSNIFF.items():
                    if name not in headers:
                        headers[name] = value
                if private and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
                if (headers.get("content-type") or "").startswith("text/html"):
                    headers.setdefault("Content-Security-Policy", _HTML_CSP)
                    headers.setdefault("X-Frame-Options", "DENY")
                if scope.get("scheme") == "https":
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


_HTML_CSP = "frame-ancestors 'none'; object-src 'none'; base-uri 'none'"
"""The least policy of an HTML page that sets none (e.g. ``/docs`` when it is on)."""


class AccessLog:
    """One log line per request (method, path, status, milliseconds; in JSON more), its
    metrics, and its ``X-Request-ID`` response header (:mod:`fhir_server.request_log`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = request_id(scope)
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, rid)]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log_access(scope, status, started, None, rid)

"""Assembly: ``create_app(settings)`` builds the FastAPI application.

It opens the store for the app's lifetime, registers the FHIR routes from the support
table, turns every error (unknown route, wrong method, unexpected failure) into an
OperationOutcome (https://hl7.org/fhir/R4/operationoutcome.html), and logs one line per
request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fhir_server.config import Settings
from fhir_server.routes import error_response, internal_error, register_routes
from fhir_server.storage.base import open_store
from resources.errors import FhirError

log = logging.getLogger("fhir_server")
access_log = logging.getLogger("fhir_server.access")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = open_store(settings.storage, sqlite_synchronous=settings.sqlite_synchronous)
        await store.open()
        app.state.store = store
        log.info("store open: %s", settings.storage)
        if settings.auth == "off":
            log.warning("AUTHORIZATION IS OFF: every request is served without a token")
        try:
            yield
        finally:
            await store.close()
            log.info("store closed")

    app = FastAPI(
        title="FHIR R4 server",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.settings = settings
    register_routes(app)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(AccessLog)
    return app


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
    log.exception("unexpected failure in %s %s", request.method, request.url.path)
    return error_response(internal_error())


class AccessLog:
    """One log line per request: method, path, status, milliseconds."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            query = scope.get("query_string", b"").decode("latin-1")
            path = scope["path"] + (f"?{query}" if query else "")
            elapsed = (time.perf_counter() - started) * 1000
            access_log.info("%s %s %d %.1fms", scope["method"], path, status, elapsed)

"""Health and operations endpoints, outside the FHIR API and without authorization (a
load balancer's or an orchestrator's probes, a Prometheus scraper):

- ``GET /healthz``: the process is up and serving (liveness): ``200 {"status": "ok"}``;
- ``GET /readyz``: the store answers (readiness): a cheap store ping
  (:meth:`fhir_server.storage.base.Store.ping`) within :data:`READY_TIMEOUT` seconds;
  ``200 {"status": "ok"}``, else ``503 {"status": "unavailable", "reason": …}`` (the
  reason names the kind of failure, not the store's hosts or paths; those go to the log);
- ``GET /metrics``: Prometheus metrics (:mod:`fhir_server.metrics`), unless
  ``FHIR_SERVER_METRICS=off``.

The Kubernetes probe conventions: https://kubernetes.io/docs/reference/using-api/health-checks/
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

log = logging.getLogger("fhir_server")

READY_TIMEOUT = 2.0
"""Seconds the store has to answer a readiness ping."""

_NO_STORE = {"Cache-Control": "no-store"}

router = APIRouter(include_in_schema=False)


@router.get("/healthz")
async def healthz() -> Response:
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    store = getattr(request.app.state, "store", None)
    if store is None:
        return _unavailable("the store is not open")
    try:
        await asyncio.wait_for(store.ping(), READY_TIMEOUT)
    except TimeoutError:
        log.warning("readiness: the store did not answer within %g s", READY_TIMEOUT)
        return _unavailable(f"the store did not answer within {READY_TIMEOUT:g} s")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        log.warning("readiness: the store failed: %s: %s", type(exc).__name__, exc)
        return _unavailable(f"the store failed ({type(exc).__name__})")
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


def _unavailable(reason: str) -> Response:
    return JSONResponse(
        {"status": "unavailable", "reason": reason},
        status_code=503,
        headers={**_NO_STORE, "Retry-After": "5"},
    )


metrics_router = APIRouter(include_in_schema=False)


@metrics_router.get("/metrics")
async def metrics(request: Request) -> Response:
    observer = request.app.observer
    # on the event loop: the totals change there (a few hundred series take ~1 ms)
    body, media_type = observer.metrics.render(request.headers.get("accept"))
    return Response(body, media_type=media_type, headers=_NO_STORE)

"""The store as the API sees it, for the audit trail (https://hl7.org/fhir/R4/auditevent.html):

- AuditEvents are append-only through the API: an update, patch or delete of one is
  refused with ``405`` and an OperationOutcome, for every caller and on every path that
  writes (the interactions, conditional ones, batch and transaction entries, operations),
  since they all write through this store. Creating one stays open to staff and backend
  systems whose scopes allow it (a system recording its own events); a patient-context
  token (a patient, a caregiver) is refused with ``403``: an entry it made up would read
  as the server's own in the access report. The trail itself writes through the raw store
  underneath.
- The versions each audited request commits are noted for its AuditEvents
  (:data:`fhir_server.audit.hook.COMMITTED`).

Everything else passes through to the store it wraps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.audit.balp import TYPE
from fhir_server.audit.hook import COMMITTED
from fhir_server.storage.base import WriteRequest, WriteResult
from resources.errors import FhirError

APPEND_ONLY = (
    "AuditEvents are append-only: they cannot be updated, patched or deleted through the"
    " API (they are removed only when the audit retention period ends)"
)


PATIENT_CREATE = (
    "AuditEvents are recorded by the server and by staff and backend systems: a patient's"
    " or caregiver's token cannot create one"
)


class AuditedStore:
    """``inner`` with AuditEvents append-only and committed versions noted."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, request: WriteRequest) -> WriteResult:
        _check(request)
        result = await self.inner.write(request)
        _note([result])
        return result

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        for request in requests:
            _check(request)
        results = await self.inner.write_batch(requests)
        _note(results)
        return results


def _check(request: WriteRequest) -> None:
    if request.type != TYPE:
        return
    if request.method != "create":
        error = FhirError(405, "not-supported", APPEND_ONLY)
        error.headers["Allow"] = "GET, POST"
        raise error
    access = request.access
    if access is not None and any(g.compartments is not None for g in access.grants):
        raise FhirError(403, "forbidden", PATIENT_CREATE)


def _note(results: Sequence[WriteResult]) -> None:
    committed = COMMITTED.get()
    if committed is not None:
        committed.extend(r for r in results if r.changed and r.stored is not None)

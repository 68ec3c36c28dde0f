"""The audit trail: every FHIR interaction and operation, sign-in, token, consent and
administration command recorded as an R4 ``AuditEvent``
(https://hl7.org/fhir/R4/auditevent.html) after the IHE Basic Audit Log Patterns
(https://profiles.ihe.net/ITI/BALP/), which patients read about their own record
(``AuditEvent?patient=Patient/A&_sort=-date``).

- :mod:`~fhir_server.audit.hook`: the one wrapper of every FHIR endpoint;
- :mod:`~fhir_server.audit.store`: AuditEvents append-only through the API, committed
  versions noted;
- :mod:`~fhir_server.audit.trail`: the in-memory queue and the task writing it in batches;
- :mod:`~fhir_server.audit.sweep`: the outbox sweep (no committed write without its record);
- :mod:`~fhir_server.audit.balp`, :mod:`~fhir_server.audit.index`,
  :mod:`~fhir_server.audit.content`: the AuditEvents, their index entries, what a
  response disclosed;
- :mod:`~fhir_server.audit.auth_events`, :mod:`~fhir_server.audit.admin`: sign-ins,
  tokens and consent (from ``smart_auth``), ``fhir-server`` commands.

Settings: ``FHIR_SERVER_AUDIT=on|off`` (default on), ``FHIR_SERVER_AUDIT_RETENTION``,
``FHIR_SERVER_AUDIT_WINDOW``.
"""

from __future__ import annotations

from typing import Any

from fhir_server.audit.store import AuditedStore
from fhir_server.audit.sweep import Sweep
from fhir_server.audit.trail import AuditTrail
from fhir_server.config import Settings, parse_retention

__all__ = ["AuditTrail", "AuditedStore", "open_trail"]


async def open_trail(app: Any, settings: Settings, store: Any) -> AuditTrail | None:
    """Start the process's audit trail over ``store`` (None when audit is off) and hook
    the authorization server's events to it."""
    if settings.audit != "on":
        return None
    from fhir_server.audit.auth_events import auth_recorder
    from fhir_server.auth_hooks import StoreHooks

    auth = getattr(app.state, "auth", None)
    client_name = None
    if auth is not None:

        def client_name(client_id: str) -> str | None:
            found = auth.store.get_client(client_id)
            return getattr(found, "name", None) or None

    trail = AuditTrail(
        store,
        parse_retention(settings.audit_retention),
        settings.audit_window,
        StoreHooks(lambda: store).display,
        client_name,
    )
    trail.sweep = Sweep(store, trail)
    if auth is not None:
        auth.audit = auth_recorder(trail)
    await trail.start()
    return trail

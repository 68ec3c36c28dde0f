"""What the request path hands the audit trail: one :class:`Activity` per audited event,
captured from the finished request in a few microseconds (no parsing, no I/O). Turning it
into ``AuditEvent`` resources (:mod:`fhir_server.audit.balp`) happens later, in the
trail's writer task (:mod:`fhir_server.audit.trail`).

The agent fields follow the Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): the user (``fhirUser`` of the token, its ``sub``),
the client application (``client_id``) and the network address it came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Agent:
    """Who acted: the user, the app (client id) and the address of the request."""

    user: str | None = None
    """The user's ``fhirUser`` (``Practitioner/7``, ``Patient/1``); None: no user."""
    subject: str | None = None
    """The token's ``sub`` (the account), or a username for a sign-in."""
    client_id: str | None = None
    address: str | None = None
    patient: str | None = None
    """The launch-context patient id of the token (a caregiver's patient)."""

    @classmethod
    def of_policy(cls, policy: Any, address: str | None) -> Agent:
        """The agent of a request authorized by ``policy`` (an ``AccessPolicy``)."""
        if policy is None:
            return cls(address=address)
        return cls(
            user=policy.fhir_user,
            subject=policy.subject,
            client_id=policy.client_id or None,
            address=address,
            patient=policy.patient,
        )


@dataclass(slots=True)
class Activity:
    """One audited event, as captured: a FHIR interaction or operation (``kind``
    ``"rest"``), or a sign-in, token, consent or administration event."""

    kind: str
    """``rest``, ``login``, ``token``, ``revoke``, ``consent``, ``admin``."""
    code: str
    """The interaction (``read``, ``search-type``, ``transaction``...), the operation
    (``$everything``), the grant type of a token request, the admin command."""
    agent: Agent
    status: int
    """The HTTP status answered (0: not an HTTP event, e.g. an admin command: success)."""
    method: str = ""
    path: str = ""
    """The request path below the FHIR base (``Observation/1``)."""
    query: str = ""
    """The raw query string of the request."""
    body: bytes | None = None
    """The response body (a resource, a Bundle, an OperationOutcome) when it is JSON."""
    headers: dict[str, str] = field(default_factory=dict)
    """``location`` and ``etag`` of the response."""
    detail: dict[str, str] = field(default_factory=dict)
    """Free details of non-REST events (username, decision, scope)."""
    recorded: float = field(default_factory=time.time)
    request_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status >= 400

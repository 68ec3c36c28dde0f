"""What the request path hands the audit trail: one :class:`Captured` per FHIR request
(a tuple of what the request already holds: no parsing, no I/O, about a microsecond), or
an :class:`Activity` for a sign-in, token, consent or administration event. Turning them
into ``AuditEvent`` resources (:mod:`fhir_server.audit.balp`) happens later, in the
trail's writer task (:mod:`fhir_server.audit.trail`), which makes the :class:`Activity`
of a :class:`Captured` only where it needs one (like reads are counted from the tuples).

The agent fields follow the Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): the user (``fhirUser`` of the token, its ``sub``),
the client application (``client_id``) and the network address it came from.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from fhir_server.storage.base import WriteResult


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


class Captured(NamedTuple):
    """A finished FHIR request as the audit hook (:mod:`fhir_server.audit.hook`) queues it:
    the values the request already holds, nothing derived."""

    code: str
    """The interaction or operation (``read``, ``search-type``, ``$everything``)."""
    policy: Any
    """The request's ``AccessPolicy`` (None: no token)."""
    client: Any
    """The ASGI ``client`` (host, port), or None."""
    status: int
    method: str
    path: str
    """The full request path (``/fhir/Observation/1``)."""
    query: bytes
    """The raw query string."""
    body: bytes | None
    etag: bytes | None
    """The response's raw ``ETag`` of a read (``W/"2"``)."""
    recorded: float
    writes: list[WriteResult]
    """The versions the request committed."""

    def agent(self) -> Agent:
        client = self.client
        return Agent.of_policy(self.policy, client[0] if client else None)

    def activity(self) -> Activity:
        """The :class:`Activity` the AuditEvents of this request are built from."""
        _, _, below = self.path.partition("/fhir/")
        headers = {"etag": self.etag.decode("latin-1")} if self.etag else {}
        return Activity(
            "rest",
            self.code,
            self.agent(),
            self.status,
            self.method,
            below.rstrip("/"),
            self.query.decode("latin-1"),
            self.body,
            headers,
            recorded=self.recorded,
        )

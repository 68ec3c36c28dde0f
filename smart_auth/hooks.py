"""What the authorization server asks of the FHIR data, handed in by ``fhir_server`` when
the application is assembled (``smart_auth`` never imports ``fhir_server``): which
patients a user may act for (the patient picker, SMART App Launch 2.x
https://hl7.org/fhir/smart-app-launch/app-launch.html, and the re-check of every grant,
:mod:`smart_auth.entitlement`), whether a resource exists, which resource types exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from starlette.requests import Request

AuditHook = Callable[[str, Request, Mapping[str, str], int, bytes | None], None]
"""Told of each sign-in, token request, revocation and consent decision, as ``(kind,
request, details, status, body)`` (``fhir_server.audit`` records them); it must neither
raise nor block. ``details`` never hold a password."""


@dataclass
class PatientChoice:
    """A patient the signed-in user may act for (shown on the patient picker)."""

    id: str
    display: str


class FhirHooks(Protocol):
    """What the authorization server asks of the FHIR data (given by ``fhir_server``)."""

    async def patients_for(self, fhir_user: str, query: str | None) -> list[PatientChoice]:
        """Patient/x -> [x]; RelatedPerson/y -> the patient it represents while it is
        active and within its period; Practitioner/z -> patients whose name matches
        ``query`` (the picker's search)."""
        ...

    async def display(self, reference: str) -> str | None:
        """A display name for a reference ("Patient/1"); None if it does not exist."""
        ...

    async def send_password_reset(
        self, fhir_user: str | None, email: str | None, link: str
    ) -> bool:
        """Email ``link`` (a one-time password-reset link) to ``email``, the account's own
        address; whether it was sent. Optional: hooks without it make ``/auth/forgot``
        answer that resets by email are not offered."""
        ...

    async def fhir_users_with_email(self, email: str) -> list[str]:
        """The people (``Patient/1``, ``Practitioner/9``...) whose ``telecom`` has ``email``.
        Optional, as above."""
        ...

    def is_resource_type(self, name: str) -> bool:
        """Whether ``name`` is a FHIR resource type (scopes of other types are never
        granted). Optional: hooks without it let any well-formed type name through."""
        ...

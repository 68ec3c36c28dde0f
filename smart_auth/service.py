"""The SMART on FHIR authorization server as one object: what ``fhir_server`` uses, and
the one place where ``smart_auth`` is assembled.

SMART App Launch 2.x (https://hl7.org/fhir/smart-app-launch/) and Backend Services
(https://hl7.org/fhir/smart-app-launch/backend-services.html) over OAuth 2.0 (RFC 6749)
with PKCE (RFC 7636), registration (RFC 7591), introspection (RFC 7662), revocation
(RFC 7009), JWT client authentication (RFC 7523) and OpenID Connect id_tokens.

``SmartAuth(config, hooks)`` gives the routes (``router``), checks bearer tokens on FHIR
requests (:meth:`SmartAuth.authenticate`, no database round trip) and describes itself
for the CapabilityStatement (:meth:`SmartAuth.security`). What it needs to know about
FHIR data (which patients may this user act for?) comes from :class:`FhirHooks`.

Imports point one way inside ``smart_auth``: the stores, keys, tokens and Authlib server
at the bottom, then :mod:`smart_auth.core` (the server without routes), then the pages,
activation, EHR launch and registration handlers, then :mod:`smart_auth.routes`, and this
module on top, which adds the routes to the core.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from smart_auth.core import AuthConfig, AuthCore, AuthError
from smart_auth.hooks import FhirHooks, PatientChoice
from smart_auth.routes import build_router

__all__ = ["AuthConfig", "AuthError", "FhirHooks", "PatientChoice", "SmartAuth"]


class SmartAuth(AuthCore):
    """The authorization server: :class:`~smart_auth.core.AuthCore` (store, keys, tokens,
    grants, token checks, discovery; its arguments) and its routes (``router``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.router: APIRouter = build_router(self)

"""The patient portal (issue 22): a SMART on FHIR app that ships with the server.

The app itself is TypeScript in ``portal/`` at the top of the repository; its build (the
files under ``static/`` here, committed, so running the server needs no Node) is served
at ``/portal/`` by :mod:`fhir_server.portal.serve`. It uses only the public FHIR API and
SMART App Launch 2.x (https://hl7.org/fhir/smart-app-launch/app-launch.html): a public
client with PKCE, registered with the server's own authorization server on start-up by
:mod:`fhir_server.portal.client` (or ``fhir-server portal register``).

``FHIR_SERVER_PORTAL=off`` turns both off.
"""

from __future__ import annotations

from fhir_server.portal.client import PORTAL_SCOPE, portal_redirect_uris, register_portal
from fhir_server.portal.serve import STATIC, portal_router

__all__ = ["PORTAL_SCOPE", "STATIC", "portal_redirect_uris", "portal_router", "register_portal"]

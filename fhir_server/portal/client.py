"""The portal as a client of the server's SMART authorization server: a public client
(``token_endpoint_auth_method: none``, PKCE required; RFC 7591 metadata,
https://hl7.org/fhir/smart-app-launch/app-launch.html#support-for-public-and-confidential-apps)
with a fixed ``client_id`` (``FHIR_SERVER_PORTAL_CLIENT_ID``, default
``fhir-server-portal``) and exact redirect URIs: ``/portal/`` on the public base URL
(``FHIR_SERVER_BASE_URL``) and on the loopback addresses at the server's port.

:func:`register_portal` runs at every start: the first one registers the client; later
ones add the redirect URIs a new address or port needs (and the portal's scopes) to the
registered client, and change nothing else.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from fhir_server.config import Settings
from smart_auth.admin import AdminError, create_client
from smart_auth.registration import check_redirect_uri, client_json
from smart_auth.store.base import AuthStore

log = logging.getLogger("fhir_server.portal")

PORTAL_NAME = "Patient portal"
PORTAL_SCOPE = "openid fhirUser launch/patient online_access offline_access patient/*.cruds"
"""Every scope the portal client may ask for (the app asks for fewer: see config.json)."""
APP_SCOPE = (
    "openid fhirUser launch/patient online_access patient/*.rs patient/DocumentReference.c"
    " patient/Communication.cu patient/Binary.c patient/Task.c patient/Basic.cu"
    " patient/Appointment.cu"
)
"""What the app asks for at sign-in: who the user is, the patient, read and search,
adding documents (uploads), sending messages with attachments (Binary) and marking
received ones read (a Communication's read receipt), asking for refills (a Task),
keeping notification choices (a Basic), booking, moving and cancelling appointments."""
_LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def portal_redirect_uris(settings: Settings) -> list[str]:
    """The exact redirect URIs of the portal served by this server."""
    uris: list[str] = []
    if settings.base_url:
        parts = urlsplit(settings.base_url)
        root = parts.path.rstrip("/").removesuffix("/fhir")
        uris.append(f"{parts.scheme}://{parts.netloc}{root}/portal/")
    uris += [f"http://{host}:{settings.port}/portal/" for host in _LOOPBACK_HOSTS]
    kept = []
    for uri in dict.fromkeys(uris):
        problem = check_redirect_uri(uri)
        if problem:
            log.warning("portal: %s; not registered as a redirect URI", problem)
        else:
            kept.append(uri)
    return kept


def register_portal(store: AuthStore, settings: Settings) -> dict[str, Any]:
    """Register the portal client, or bring the registered one up to date (new redirect
    URIs, the portal's scopes); returns its RFC 7591 JSON (a public client: no secret)."""
    client_id = settings.portal_client_id
    uris = portal_redirect_uris(settings)
    client = store.get_client(client_id)
    if client is None:
        try:
            registered = create_client(
                store,
                PORTAL_NAME,
                auth="none",
                redirect_uris=uris,
                scope=PORTAL_SCOPE,
                client_id=client_id,
            )
            log.info("portal: registered the public SMART client %s", client_id)
            return registered
        except AdminError:
            client = store.get_client(client_id)  # another worker registered it just now
            if client is None:
                raise
    if client.token_endpoint_auth_method != "none":
        raise AdminError(
            f"the client id {client_id} belongs to a confidential client, not the portal;"
            " set FHIR_SERVER_PORTAL_CLIENT_ID to another id"
        )
    missing = [uri for uri in uris if uri not in client.redirect_uris]
    scopes = client.scope.split()
    extra = [s for s in PORTAL_SCOPE.split() if s not in scopes]
    if missing or extra:
        client.redirect_uris = [*client.redirect_uris, *missing]
        client.scope = " ".join([*scopes, *extra])
        store.update_client(client)
        log.info("portal: client %s now also redirects to %s", client_id, ", ".join(missing))
    return client_json(client, None)

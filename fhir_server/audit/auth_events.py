"""Sign-ins, token requests (issue and refresh), revocations and consent decisions of
the authorization server (``smart_auth``) as activities of the audit trail: what
``smart_auth.core.AuthCore.record`` is told, turned into an
:class:`~fhir_server.audit.record.Activity` (DICOM 110114 User Authentication events,
:func:`fhir_server.audit.balp.auth_event`).

Only harmless details are kept (the grant type, the scope granted, the username tried,
the decision): never a password, code, secret, assertion or token. The user and patient
of an issued token come from its own claims (the JWT the response carries); a patient
thereby sees in their access report which apps were given access to their record.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request

from fhir_server.audit.record import Activity, Agent

Recorder = Callable[[str, Request, Mapping[str, str], int, bytes | None], None]

_KEPT = ("grant_type", "token_type_hint", "decision", "scope")


def auth_recorder(trail: Any) -> Recorder:
    """The ``AuthCore.audit`` hook that queues each event on ``trail``."""

    def record(
        kind: str, request: Request, details: Mapping[str, str], status: int, body: bytes | None
    ) -> None:
        try:
            trail.record(auth_activity(kind, request, details, status, body))
        except Exception:  # noqa: BLE001 - auditing never breaks a sign-in
            import logging

            logging.getLogger("fhir_server.audit").exception("audit: %s event not recorded", kind)

    return record


def auth_activity(
    kind: str, request: Request, details: Mapping[str, str], status: int, body: bytes | None
) -> Activity:
    address = request.client.host if request.client else None
    claims: dict[str, Any] = {}
    answer = _json(body)
    if kind == "token" and status == 200:
        claims = _claims(str(answer.get("access_token") or ""))
    client_id = (
        str(claims.get("client_id") or "")
        or details.get("client_id")
        or _assertion_issuer(details.get("client_assertion", ""))
        or _basic_client(request.headers.get("authorization"))
        or None
    )
    user = str(claims.get("fhirUser") or details.get("fhir_user") or "") or None
    subject = details.get("username") or None
    if claims.get("sub") and claims.get("sub") != claims.get("client_id"):
        subject = str(claims["sub"])
    patient = str(claims.get("patient") or details.get("patient") or "") or None
    code = details.get("grant_type", kind)
    if kind == "token" and code == "refresh_token":
        kind = "refresh"
    kept = {k: str(details[k])[:500] for k in _KEPT if details.get(k)}
    if claims.get("scope"):
        kept["scope"] = str(claims["scope"])[:2000]
    if status >= 400 and answer.get("error"):
        kept["error"] = str(answer.get("error_description") or answer["error"])[:500]
    agent = Agent(user, subject, client_id, address, patient)
    return Activity(kind, code, agent, status, "POST", request.url.path, detail=kept)


def _json(body: bytes | None) -> dict[str, Any]:
    if not body:
        return {}
    try:
        found = json.loads(body)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT the server itself just issued (read, not verified)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        found = json.loads(payload)
    except (ValueError, binascii.Error):
        return {}
    return found if isinstance(found, dict) else {}


def _assertion_issuer(assertion: str) -> str | None:
    issuer = _claims(assertion).get("iss")
    return str(issuer)[:200] if issuer else None


def _basic_client(authorization: str | None) -> str | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:]).decode("utf-8")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    from urllib.parse import unquote

    return unquote(decoded.partition(":")[0])[:200] or None

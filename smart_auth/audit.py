"""What the authorization server tells the audit trail (``AuthCore.record``, hooked up by
``fhir_server.audit``) of sign-ins and consent decisions: the details and the status of
each, never a password."""

from __future__ import annotations

from typing import Any

from smart_auth.models import Grantee
from smart_auth.store.base import User


def login_event(username: str, user: User | None, wait: int) -> tuple[dict[str, str], int]:
    """(details, status) of a sign-in: 302 signed in, 403 a disabled account, 401 a
    wrong username or password, 429 throttled."""
    if user is None:
        return {"username": username}, 429 if wait else 401
    details = {"username": username, "fhir_user": user.fhir_user or ""}
    return details, 403 if user.disabled else 302


def consent_details(
    session: dict[str, Any], grantee: Grantee | None, client_id: str
) -> dict[str, str]:
    """The details of a consent decision: allowed (with the scope granted) or denied."""
    return {
        "decision": "allow" if grantee is not None else "deny",
        "fhir_user": session.get("fhir_user") or "",
        "patient": session.get("patient") or "",
        "client_id": client_id,
        "scope": grantee.granted_scope if grantee is not None else "",
    }

"""Who calls an ``/auth`` API with a bearer token (RFC 6750): the EHR launch API
(:mod:`smart_auth.launch`) and authorized client registration
(:mod:`smart_auth.registration`) are for staff and backend services.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from smart_auth.core import AuthCore, AuthError
from smart_auth.scopes import AccessPolicy
from smart_auth.server import oauth_error


def is_staff_or_system(policy: AccessPolicy) -> bool:
    """A Practitioner user's token, or a backend service's token with system scopes."""
    if policy.fhir_user and policy.fhir_user.startswith("Practitioner/"):
        return True
    return policy.subject in (None, policy.client_id) and any(
        rule.context == "system" for rule in policy.rules
    )


async def bearer_policy(auth: AuthCore, request: Request) -> AccessPolicy | Response:
    """The policy of the request's bearer token, or a 401 response."""
    try:
        return auth.authenticate(request.headers.get("authorization"), auth.fhir_base(request))
    except AuthError as error:
        headers = {"WWW-Authenticate": error.www_authenticate or "Bearer"}
        return oauth_error(401, "invalid_token", error.message, headers)

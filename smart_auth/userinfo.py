"""OpenID Connect UserInfo (OpenID Connect Core 1.0 section 5.3,
https://openid.net/specs/openid-connect-core-1_0.html#UserInfo) at ``/auth/userinfo``,
``GET`` or ``POST`` with the access token as a Bearer token (RFC 6750).

The token must carry ``openid``: 403 ``insufficient_scope`` otherwise (section 5.3.3);
a missing, expired or revoked token is 401 ``invalid_token``. The claims: ``sub`` (the
user id, as in the ID token), ``fhirUser`` (the absolute URL of the user's FHIR
resource, SMART App Launch 2.x "fhirUser" claim) when the token carries ``fhirUser``, and
``name`` (the display name of that resource) when the FHIR data has one.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth.bearer import bearer_policy
from smart_auth.core import AuthCore
from smart_auth.server import oauth_error


async def userinfo(auth: AuthCore, request: Request) -> Response:
    policy = await bearer_policy(auth, request)
    if isinstance(policy, Response):
        return policy
    scopes = set(policy.scope.split())
    if "openid" not in scopes or policy.subject is None:
        return oauth_error(
            403,
            "insufficient_scope",
            "UserInfo needs a user's access token granted the openid scope.",
            {"WWW-Authenticate": 'Bearer error="insufficient_scope", scope="openid"'},
        )
    claims: dict[str, Any] = {"sub": policy.subject}
    if "fhirUser" in scopes and policy.fhir_user:
        claims["fhirUser"] = f"{auth.fhir_base(request).rstrip('/')}/{policy.fhir_user}"
        name = await auth.hooks.display(policy.fhir_user)
        if name:
            claims["name"] = name
    return JSONResponse(claims, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

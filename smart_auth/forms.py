"""Reading what a browser or an OAuth client POSTs to ``/auth``: the url-encoded form
(RFC 6749 section 3.2 and appendix B: ``application/x-www-form-urlencoded``, UTF-8) and
the Authlib request built from it, shared by the token, introspection and revocation
endpoints (:mod:`smart_auth.routes`) and the authorization page (:mod:`smart_auth.pages`).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from smart_auth.core import AuthCore
from smart_auth.server import SmartRequest, oauth_error

FORM = "application/x-www-form-urlencoded"


async def read_form(request: Request) -> list[tuple[str, str]] | Response:
    """The url-encoded form of a POST, or an OAuth error response (the body was read
    within its bound by the route, :class:`~smart_auth.bodies.BoundedBodyRoute`)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != FORM:
        return oauth_error(400, "invalid_request", f"Send the parameters as {FORM}.")
    body = await request.body()
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except (UnicodeDecodeError, ValueError):
        return oauth_error(400, "invalid_request", "The form is not valid UTF-8 url-encoding.")


def oauth_request(
    auth: AuthCore, request: Request, form: list[tuple[str, str]] | None = None
) -> SmartRequest:
    """An Authlib request from what the route read."""
    base = auth.fhir_base(request)
    return SmartRequest(
        request.method,
        str(request.url),
        request.headers,
        query=request.query_params.multi_items(),
        form=form or [],
        fhir_base=base,
        auth_base=auth.auth_base(base),
    )

"""The HTTP routes of the authorization server: the OAuth 2.0 endpoints (token RFC 6749
section 3.2, introspection RFC 7662, revocation RFC 7009, registration RFC 7591), the
JWKS (RFC 7517 section 5), discovery (SMART App Launch 2.x
https://hl7.org/fhir/smart-app-launch/conformance.html), the EHR launch API and the
browser pages (:mod:`smart_auth.pages`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth.bodies import BoundedBodyRoute
from smart_auth.discovery import openid_configuration, smart_configuration
from smart_auth.server import SmartRequest, oauth_error, run_grant

if TYPE_CHECKING:
    from smart_auth.service import SmartAuth

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
    auth: SmartAuth, request: Request, form: list[tuple[str, str]] | None = None
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


def build_router(auth: SmartAuth) -> APIRouter:
    from smart_auth import launch, pages, registration

    # every route reads its body within a bound before its handler runs
    router = APIRouter(include_in_schema=False, route_class=BoundedBodyRoute)

    async def well_known_smart(request: Request) -> Response:
        base = auth.fhir_base(request)
        body = smart_configuration(base, auth.endpoints(base))
        return JSONResponse(body, headers={"Cache-Control": "max-age=300"})

    async def well_known_openid(request: Request) -> Response:
        base = auth.fhir_base(request)
        body = openid_configuration(base, auth.endpoints(base))
        return JSONResponse(body, headers={"Cache-Control": "max-age=300"})

    async def jwks(request: Request) -> Response:
        return JSONResponse(auth.keys_ready().jwks(), headers={"Cache-Control": "max-age=300"})

    async def token(request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        return await run_grant(
            auth.oauth().create_token_response, oauth_request(auth, request, form)
        )

    async def introspect(request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        req = oauth_request(auth, request, form)
        return await run_grant(auth.oauth().create_endpoint_response, "introspection", req)

    async def revoke(request: Request) -> Response:
        form = await read_form(request)
        if isinstance(form, Response):
            return form
        req = oauth_request(auth, request, form)
        return await run_grant(auth.oauth().create_endpoint_response, "revocation", req)

    async def register(request: Request) -> Response:
        return await registration.register(auth, request)

    async def create_launch(request: Request) -> Response:
        return await launch.create_launch(auth, request)

    router.add_api_route("/fhir/.well-known/smart-configuration", well_known_smart)
    router.add_api_route("/fhir/.well-known/openid-configuration", well_known_openid)
    router.add_api_route("/auth/jwks", jwks)
    router.add_api_route("/auth/token", token, methods=["POST"])
    router.add_api_route("/auth/introspect", introspect, methods=["POST"])
    router.add_api_route("/auth/revoke", revoke, methods=["POST"])
    router.add_api_route("/auth/register", register, methods=["POST"])
    router.add_api_route("/auth/launch", create_launch, methods=["POST"])
    pages.add_routes(auth, router)
    return router

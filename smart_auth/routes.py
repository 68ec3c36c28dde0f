"""The HTTP routes of the authorization server: the OAuth 2.0 endpoints (token RFC 6749
section 3.2, introspection RFC 7662, revocation RFC 7009, registration RFC 7591), the
JWKS (RFC 7517 section 5), discovery (SMART App Launch 2.x
https://hl7.org/fhir/smart-app-launch/conformance.html), the EHR launch API and the
browser pages (:mod:`smart_auth.pages`, :mod:`smart_auth.activation`), all bound to one
:class:`~smart_auth.core.AuthCore` by :func:`build_router`.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from smart_auth import account_api, client_management, launch, registration, userinfo
from smart_auth.account_pages import AccountPages
from smart_auth.activation import Activation
from smart_auth.bodies import BoundedBodyRoute
from smart_auth.core import AuthCore
from smart_auth.discovery import openid_configuration, smart_configuration
from smart_auth.forms import oauth_request, read_form
from smart_auth.mfa_pages import MfaPages
from smart_auth.pages import Pages
from smart_auth.password_reset import PasswordResetPages
from smart_auth.server import run_grant


def build_router(auth: AuthCore) -> APIRouter:
    """Every route of the authorization server, bound to ``auth``."""
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
        response = await run_grant(
            auth.oauth().create_token_response, oauth_request(auth, request, form)
        )
        auth.record("token", request, dict(form), response.status_code, response.body)
        return response

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
        response = await run_grant(auth.oauth().create_endpoint_response, "revocation", req)
        auth.record("revoke", request, dict(form), response.status_code)
        return response

    async def register(request: Request) -> Response:
        return await registration.register(auth, request)

    async def create_launch(request: Request) -> Response:
        return await launch.create_launch(auth, request)

    async def manage_client(request: Request, client_id: str) -> Response:
        handler = {
            "GET": client_management.read_client,
            "PUT": client_management.update_client,
            "DELETE": client_management.delete_registration,
        }[request.method]
        return await handler(auth, request, client_id)

    async def user_info(request: Request) -> Response:
        return await userinfo.userinfo(auth, request)

    async def account_apps(request: Request) -> Response:
        return await account_api.list_apps(auth, request)

    async def account_revoke(request: Request, client_id: str) -> Response:
        return await account_api.revoke_app(auth, request, client_id)

    router.add_api_route("/fhir/.well-known/smart-configuration", well_known_smart)
    router.add_api_route("/fhir/.well-known/openid-configuration", well_known_openid)
    router.add_api_route("/auth/jwks", jwks)
    router.add_api_route("/auth/token", token, methods=["POST"])
    router.add_api_route("/auth/introspect", introspect, methods=["POST"])
    router.add_api_route("/auth/revoke", revoke, methods=["POST"])
    router.add_api_route("/auth/register", register, methods=["POST"])
    router.add_api_route("/auth/launch", create_launch, methods=["POST"])
    router.add_api_route(
        "/auth/register/{client_id}", manage_client, methods=["GET", "PUT", "DELETE"]
    )
    router.add_api_route("/auth/userinfo", user_info, methods=["GET", "POST"])
    router.add_api_route("/auth/account/apps", account_apps, methods=["GET"])
    router.add_api_route("/auth/account/apps/{client_id}", account_revoke, methods=["DELETE"])
    _add_pages(auth, router)
    return router


def _add_pages(auth: AuthCore, router: APIRouter) -> None:
    """The browser pages: sign-in, patient picker, consent and account activation."""
    pages = Pages(auth)
    second_step = pages.second_step = MfaPages(pages)
    account = AccountPages(pages, second_step)
    activation = Activation(pages)
    router.add_api_route("/auth/authorize", pages.authorize, methods=["GET", "POST"])
    router.add_api_route("/auth/login", pages.login_form, methods=["GET"])
    router.add_api_route("/auth/login", pages.login, methods=["POST"])
    router.add_api_route("/auth/mfa", second_step.code_form, methods=["GET"])
    router.add_api_route("/auth/mfa", second_step.code, methods=["POST"])
    router.add_api_route("/auth/mfa/enrol", second_step.enrol_form, methods=["GET"])
    router.add_api_route("/auth/mfa/enrol", second_step.enrol, methods=["POST"])
    router.add_api_route("/auth/mfa/continue", second_step.enrolled_continue, methods=["POST"])
    resets = PasswordResetPages(pages)
    router.add_api_route("/auth/forgot", resets.forgot_form, methods=["GET"])
    router.add_api_route("/auth/forgot", resets.forgot, methods=["POST"])
    router.add_api_route("/auth/reset", resets.reset_form, methods=["GET"])
    router.add_api_route("/auth/reset", resets.reset, methods=["POST"])
    router.add_api_route("/auth/account", account.page, methods=["GET"])
    for path, handler in (
        ("login", account.login),
        ("mfa", account.code),
        ("revoke", account.revoke),
        ("sign-out-everywhere", account.sign_out_everywhere),
        ("sign-out", account.sign_out),
        ("password", account.password),
        ("mfa/enrol", account.enrol),
        ("mfa/done", account.enrol_done),
        ("mfa/off", account.mfa_off),
    ):
        router.add_api_route(f"/auth/account/{path}", handler, methods=["POST"])
    router.add_api_route("/auth/account/mfa/enrol", account.enrol_form, methods=["GET"])
    router.add_api_route("/auth/patient", pages.picker_form, methods=["GET"])
    router.add_api_route("/auth/patient", pages.pick, methods=["POST"])
    router.add_api_route("/auth/consent", pages.consent_form, methods=["GET"])
    router.add_api_route("/auth/consent", pages.consent, methods=["POST"])
    router.add_api_route("/auth/activate", activation.form, methods=["GET"])
    router.add_api_route("/auth/activate", activation.submit, methods=["POST"])

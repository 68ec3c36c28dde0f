"""The browser side of the authorization code flow (RFC 6749 section 4.1, SMART App
Launch 2.x https://hl7.org/fhir/smart-app-launch/app-launch.html#obtain-authorization-code):
authorization request -> login -> patient picker (when the user may act for several
patients) -> consent -> redirect with the code; and account activation from a staff
invitation.

Plain server-rendered HTML forms (Jinja2) that work without JavaScript, with labels, a
``lang`` and headings; every POST carries the session's CSRF token. State between the
steps lives in the signed session cookie (:mod:`smart_auth.session`), never in server
memory; what must happen once is recorded in the auth store: each authorization request
gets a random ``flow`` id in its session, and consent (allow or deny) uses it up, so a
copy of the cookie taken before consent cannot be replayed for a second code. Failed
sign-ins are throttled per address and username (:mod:`smart_auth.throttle`): a wait,
``429`` with ``Retry-After``, never a lock-out, and the same for unknown usernames. A
disabled account is told so only when the right password is given (a wrong one is
answered as any wrong password), and a sign-in made before the account was disabled
gets no code at consent.

An authorization request whose ``redirect_uri`` is not a URI (quotes, backslashes,
spaces, control or non-ASCII characters, RFC 3986 section 2) is answered with an error
page, never redirected to.
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import urlsplit

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749.errors import InvalidRequestError, OAuth2Error
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from smart_auth.audit import consent_details, login_event
from smart_auth.core import AuthCore
from smart_auth.forms import read_form
from smart_auth.grants import launch_context
from smart_auth.models import Grantee
from smart_auth.passwords import (
    burn_password_check,
    hash_password,
    needs_rehash,
    new_secret,
    verify_password,
)
from smart_auth.scopes import ScopeError, parse_scope, parse_scopes, plain_words
from smart_auth.server import RawResponse, SmartRequest
from smart_auth.session import COOKIE_NAME, COOKIE_PATH, csrf_ok, new_session
from smart_auth.store.base import LaunchContext, User
from smart_auth.throttle import LoginThrottle, client_address

OPTIONAL_OTHERS = {"offline_access", "online_access"}
USERNAME = re.compile(r"[A-Za-z0-9._@+-]{3,64}")
NOT_URI = re.compile(r'[^\x21-\x7e]|["<>\\^`{|}]')
"""A character no URI holds (RFC 3986 section 2): Authlib cannot even put such a
``redirect_uri`` into its error message."""
CONSENT_ONCE = "consent:"
"""Prefix of the used-up ``flow`` ids in the store's one-time ids (``remember_jti``; a
client assertion's is ``<client_id>:<jti>``, and client ids are random, never this)."""
DISABLED_TEXT = (
    "This account is disabled. Contact your clinic (the staff who gave you your account)"
    " to have it enabled again."
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self';"
    " frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class Pages:
    """Route handlers of the sign-in pages, bound to one :class:`~smart_auth.core.AuthCore`."""

    def __init__(self, auth: AuthCore) -> None:
        self.auth = auth
        self.second_step: Any = None
        """The second sign-in step (``smart_auth.mfa_pages.MfaPages``), set by the routes."""

    # -- helpers --------------------------------------------------------------------------
    def load(self, request: Request) -> dict[str, Any] | None:
        return self.auth.codec().loads(request.cookies.get(COOKIE_NAME))

    def url(self, request: Request, page: str) -> str:
        return f"{self.auth.auth_base(self.auth.fhir_base(request))}/{page}"

    def cookie_path(self, request: Request) -> str:
        return urlsplit(self.auth.auth_base(self.auth.fhir_base(request))).path or COOKIE_PATH

    def save(self, request: Request, response: Response, session: dict[str, Any]) -> Response:
        secure = self.auth.fhir_base(request).startswith("https:")
        response.set_cookie(
            COOKIE_NAME,
            self.auth.codec().dumps(session),
            max_age=self.auth.config.session_lifetime,
            path=self.cookie_path(request),
            secure=secure,
            httponly=True,
            samesite="lax",
        )
        return response

    def render(
        self,
        request: Request,
        template: str,
        *,
        status: int = 200,
        session: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> Response:
        page = self.auth.templates.get_template(template)
        csrf = session.get("csrf") if session else None
        html = page.render(csrf=csrf, **context)
        response = HTMLResponse(
            html, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )
        if session is not None:
            self.save(request, response, session)
        return response

    def message(self, request: Request, title: str, text: str, status: int = 400) -> Response:
        return self.render(request, "message.html", status=status, title=title, text=text)

    def form_expired(self, request: Request) -> Response:
        """A form posted without its session's CSRF token."""
        return self.message(request, "Form expired", "Reload the page and try again.", 403)

    def expired(self, request: Request) -> Response:
        return self.message(
            request,
            "Sign-in expired",
            "This sign-in is no longer in progress: it took too long, or cookies are blocked."
            " Go back to your app and start again.",
        )

    def redirect(
        self, request: Request, url: str, session: dict[str, Any] | None = None
    ) -> Response:
        response = RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
        if session is not None:
            self.save(request, response, session)
        return response

    def oauth_request(self, request: Request, params: list[tuple[str, str]]) -> SmartRequest:
        base = self.auth.fhir_base(request)
        return SmartRequest(
            "GET",
            str(request.url),
            request.headers,
            query=params,
            fhir_base=base,
            auth_base=self.auth.auth_base(base),
        )

    def app_error(
        self, request: Request, session: dict[str, Any], error: str, description: str
    ) -> Response:
        """Send the user back to the app (its redirect URI was validated) with an error."""
        params = dict(session["req"])
        query = [("error", error), ("error_description", description)]
        if params.get("state"):
            query.append(("state", params["state"]))
        response = RedirectResponse(
            add_params_to_uri(params["redirect_uri"], query), status_code=303
        )
        self.save(request, response, {"csrf": session["csrf"]})
        return response

    async def validate(self, request: Request, session: dict[str, Any]) -> Any:
        """Authlib's validation of the stored authorization request (the grant)."""
        req = self.oauth_request(request, [tuple(p) for p in session["req"]])
        if session.get("launch"):
            req.preset_launch = LaunchContext(**session["launch"])
        return await self.consent_grant(req)

    async def consent_grant(self, req: SmartRequest) -> Any:
        """Authlib's grant of an authorization request; an OAuth2Error if it is refused.
        Authlib raises ValueError when a parameter it quotes in its error message holds
        characters an ``error_description`` may not (RFC 6749 section 4.1.2.1): that is
        a bad request too, answered without redirecting."""
        try:
            return await run_in_threadpool(self.auth.oauth().get_consent_grant, req)
        except ValueError as error:
            description = "a parameter holds characters it may not hold"
            raise InvalidRequestError(description) from error

    def error_response(self, request: Request, error: OAuth2Error) -> Response:
        if error.redirect_uri:
            status, _, headers = error()
            return RawResponse(status, "", list(headers)).to_response()
        return self.message(
            request,
            "This sign-in request cannot be completed",
            f"{error.error}: {error.description or 'invalid request'}",
        )

    # -- authorization request ---------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        if request.method == "POST":
            form = await read_form(request)
            if isinstance(form, Response):
                return form
            params = form
        else:
            params = request.query_params.multi_items()
        if any(name == "redirect_uri" and NOT_URI.search(value) for name, value in params):
            return self.message(
                request,
                "This sign-in request cannot be completed",
                "invalid_request: the redirect_uri is not a valid URI.",
            )
        req = self.oauth_request(request, params)
        try:
            grant = await self.consent_grant(req)
        except OAuth2Error as error:
            return self.error_response(request, error)
        old = self.load(request) or {}
        session = new_session()
        if old.get("csrf"):
            session["csrf"] = old["csrf"]
        session["flow"] = new_secret(16)
        session["req"] = [list(p) for p in params]
        session["scope"] = grant.request.scope
        session["client"] = grant.client.record.name or grant.client.client_id
        context = launch_context(grant)
        if context is not None:
            session["launch"] = {
                "launch_id": context.launch_id,
                "patient": context.patient,
                "encounter": context.encounter,
                "expires_at": context.expires_at,
            }
        if dict(params).get("prompt") == "none":
            return self.app_error(request, session, "login_required", "The user must sign in.")
        return self.redirect(request, self.url(request, "login"), session)

    # -- login ---------------------------------------------------------------------------------
    async def login_form(self, request: Request) -> Response:
        session = self.load(request)
        if not session or "req" not in session:
            return self.expired(request)
        return self.render(request, "login.html", session=session, client=session["client"])

    async def login(self, request: Request) -> Response:
        session = self.load(request)
        if not session or "req" not in session:
            return self.expired(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.form_expired(request)
        username = _text(form.get("username")).strip()
        user, wait = await self.password_step(request, username, _text(form.get("password")))
        if user is not None and user.disabled:
            # only the holder of the right password learns that the account is disabled
            return self.render(
                request,
                "login.html",
                status=403,
                session=session,
                client=session["client"],
                error=DISABLED_TEXT,
                username=username,
            )
        if user is None:
            return self.render(
                request,
                "login.html",
                status=429 if wait else 401,
                headers={"Retry-After": str(wait)} if wait else None,
                session=session,
                client=session["client"],
                error=_wait_text(wait) if wait else "The username or password is not right.",
                username=username,
            )
        if self.second_step is not None:  # the code, or the enrolment a policy requires
            return await self.second_step.first_factor_passed(request, session, user)
        session.update(uid=user.user_id, fhir_user=user.fhir_user, auth_time=int(time.time()))
        return await self.after_login(request, session)

    async def password_step(
        self, request: Request, username: str, password: str
    ) -> tuple[User | None, int]:
        """The user whose username and password these are (None: wrong, or throttled)
        and the seconds to wait before the next attempt (0: not throttled); recorded
        for the audit trail. Also the account page's sign-in."""
        user: User | None = None
        wait = 0
        if username and password and len(username) <= 1024 and len(password) <= 1024:
            throttle = self.throttle()
            address = client_address(request.client.host if request.client else None)
            wait = await run_in_threadpool(throttle.admit, username, address)
            if not wait:
                user = await self.check_password(username, password)
                outcome = throttle.failed if user is None else throttle.succeeded
                await run_in_threadpool(outcome, username, address)
        self.auth.record("login", request, *login_event(username, user, wait))
        return user, wait

    def throttle(self) -> LoginThrottle:
        config = self.auth.config
        return LoginThrottle(self.auth.store, config.lockout_after, config.lockout_seconds)

    async def check_password(self, username: str, password: str) -> User | None:
        """The user if the password is theirs; an unknown username takes as long."""
        store = self.auth.store
        user = await run_in_threadpool(store.find_user, username)
        if user is None:
            await run_in_threadpool(burn_password_check, password)
            return None
        if not await run_in_threadpool(verify_password, user.password_hash, password):
            return None
        if needs_rehash(user.password_hash):
            new_hash = await run_in_threadpool(hash_password, password)
            await run_in_threadpool(store.update_password, user.user_id, new_hash)
        return user

    async def after_login(self, request: Request, session: dict[str, Any]) -> Response:
        fhir_user = session.get("fhir_user")
        staff = _is_staff(fhir_user)
        launch = session.get("launch")
        if launch and launch.get("patient"):
            if not staff:
                choices = await self.choices(fhir_user, None)
                if launch["patient"] not in {c.id for c in choices}:
                    return self.app_error(
                        request,
                        session,
                        "access_denied",
                        "This user may not open that patient record.",
                    )
            session["patient"] = launch["patient"]
            session["encounter"] = launch.get("encounter")
        elif _needs_patient(session["scope"]):
            choices = await self.choices(fhir_user, None)
            if not choices and not staff:
                return self.app_error(
                    request, session, "access_denied", "No patient record is linked to this user."
                )
            if len(choices) == 1 and not staff:
                session["patient"] = choices[0].id
            else:
                return self.redirect(request, self.url(request, "patient"), session)
        return self.redirect(request, self.url(request, "consent"), session)

    async def choices(self, fhir_user: str | None, query: str | None) -> list[Any]:
        if not fhir_user:
            return []
        return list(await self.auth.hooks.patients_for(fhir_user, query))

    # -- patient picker --------------------------------------------------------------------------
    async def picker_form(self, request: Request) -> Response:
        session = self.load(request)
        if not session or "req" not in session or "uid" not in session:
            return self.expired(request)
        query = request.query_params.get("q", "").strip()[:100] or None
        choices = await self.choices(session.get("fhir_user"), query)
        return self.render(
            request,
            "picker.html",
            session=session,
            client=session["client"],
            choices=choices,
            query=query or "",
            searchable=_is_staff(session.get("fhir_user")),
        )

    async def pick(self, request: Request) -> Response:
        session = self.load(request)
        if not session or "req" not in session or "uid" not in session:
            return self.expired(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.form_expired(request)
        query = _text(form.get("q")).strip()[:100] or None
        chosen = _text(form.get("patient"))
        choices = await self.choices(session.get("fhir_user"), query)
        if chosen not in {c.id for c in choices}:
            return self.render(
                request,
                "picker.html",
                status=400,
                session=session,
                client=session["client"],
                choices=choices,
                query=query or "",
                searchable=_is_staff(session.get("fhir_user")),
                error="Choose one of the patients listed.",
            )
        session["patient"] = chosen
        return self.redirect(request, self.url(request, "consent"), session)

    # -- consent -------------------------------------------------------------------------------
    def ready_for_consent(self, session: dict[str, Any] | None) -> bool:
        if not session or "req" not in session or "uid" not in session:
            return False
        return "patient" in session or not _needs_patient(session["scope"])

    async def consent_form(self, request: Request) -> Response:
        session = self.load(request)
        if not self.ready_for_consent(session):
            return self.expired(request)
        assert session is not None
        try:
            grant = await self.validate(request, session)
        except OAuth2Error as error:
            return self.error_response(request, error)
        patient_name = None
        if session.get("patient"):
            patient_name = await self.auth.hooks.display(f"Patient/{session['patient']}")
        return self.render(
            request,
            "consent.html",
            session=session,
            client=session["client"],
            items=_consent_items(grant.request.scope),
            patient=patient_name or session.get("patient"),
        )

    async def consent(self, request: Request) -> Response:
        session = self.load(request)
        if not self.ready_for_consent(session):
            return self.expired(request)
        assert session is not None
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.form_expired(request)
        try:
            grant = await self.validate(request, session)
        except OAuth2Error as error:
            return self.error_response(request, error)
        if not await self.use_flow(session):
            return self.expired(request)
        user = await run_in_threadpool(self.auth.store.get_user, session["uid"])
        if user is None or user.disabled:  # disabled (or removed) since signing in
            return self.message(request, "Account disabled", DISABLED_TEXT, 403)
        grantee = None
        if form.get("decision") == "allow":
            ticked = {_text(v) for v in form.getlist("scope")}
            granted = [
                word
                for word in grant.request.scope.split()
                if not _optional(word) or word in ticked
            ]
            grantee = Grantee(
                user_id=session["uid"],
                fhir_user=session.get("fhir_user"),
                patient=session.get("patient"),
                encounter=session.get("encounter"),
                auth_time=session.get("auth_time"),
                granted_scope=" ".join(granted),
            )
        result = await run_in_threadpool(
            self.auth.oauth().create_authorization_response, grant.request, grantee, grant
        )
        response = result.to_response()
        details = consent_details(session, grantee, grant.client.client_id)
        self.auth.record("consent", request, details, response.status_code)
        self.save(request, response, {"csrf": session["csrf"]})
        return response

    async def use_flow(self, session: dict[str, Any]) -> bool:
        """Use up the session's authorization request (True the first time only, in
        every process): its cookie answers one consent."""
        flow = session.get("flow")
        if not isinstance(flow, str) or not flow:
            return False
        until = int(time.time()) + self.auth.config.session_lifetime + 60
        store = self.auth.store
        return bool(await run_in_threadpool(store.remember_jti, CONSENT_ONCE + flow, until))


def _wait_text(seconds: int) -> str:
    if seconds < 120:
        wait = f"{seconds} second{'s' if seconds != 1 else ''}"
    else:
        wait = f"{-(-seconds // 60)} minutes"
    return f"Too many failed sign-ins. Wait {wait}, then try again."


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_staff(fhir_user: str | None) -> bool:
    return bool(fhir_user) and str(fhir_user).startswith("Practitioner/")


def _needs_patient(scope: str) -> bool:
    try:
        granted = parse_scopes(scope)
    except ScopeError:
        return False
    return "launch/patient" in granted.others or any(
        rule.context == "patient" for rule in granted.rules
    )


def _optional(word: str) -> bool:
    try:
        return word in OPTIONAL_OTHERS or parse_scope(word) is not None
    except ScopeError:
        return False


def _consent_items(scope: str) -> list[dict[str, Any]]:
    return [
        {"scope": word, "words": plain_words(word), "optional": _optional(word), "n": n}
        for n, word in enumerate(scope.split())
    ]

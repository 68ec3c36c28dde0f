"""The second step of signing in (:mod:`smart_auth.mfa`, TOTP per RFC 6238): the code
page after the password, and the enrolment a policy requires before the first token.

The password page (:meth:`smart_auth.pages.Pages.login`) hands over through the signed
session: ``mfa_uid`` (password right, code pending) or ``enrol_uid`` (password right,
enrolment required); the user id the later pages act for (``uid``) is set only once the
second factor is proven, so nothing downstream (patient picker, consent, the token)
happens before. Wrong codes are throttled like passwords (:mod:`smart_auth.throttle`,
keyed ``mfa:<username>``).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from smart_auth import mfa
from smart_auth.pages import Pages, _text, _wait_text
from smart_auth.session import csrf_ok
from smart_auth.store.base import User
from smart_auth.throttle import client_address

ENROL_REASON = (
    "This server asks you to use a second step when you sign in: a code from an app on"
    " your phone, so that a stolen password alone cannot open your records."
)


class MfaPages:
    """Route handlers of ``/auth/mfa`` and ``/auth/mfa/enrol`` (and its continuation)."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.auth = pages.auth

    async def first_factor_passed(
        self, request: Request, session: dict[str, Any], user: User
    ) -> Response:
        """After a right password: the code page, the enrolment the policy requires, or
        the rest of the sign-in."""
        policy = self.auth.config.mfa
        store = self.auth.store
        if policy != "off":
            if await run_in_threadpool(mfa.enrolled, store, user.user_id):
                session.update(mfa_uid=user.user_id, mfa_user=user.username)
                session["mfa_fhir_user"] = user.fhir_user
                return self.pages.redirect(request, self.pages.url(request, "mfa"), session)
            if mfa.required(policy, user.fhir_user):
                session.update(enrol_uid=user.user_id, enrol_user=user.username)
                session["enrol_fhir_user"] = user.fhir_user
                url = self.pages.url(request, "mfa/enrol")
                return self.pages.redirect(request, url, session)
        return await self._signed_in(request, session, user.user_id, user.fhir_user)

    async def _signed_in(
        self, request: Request, session: dict[str, Any], user_id: str, fhir_user: str | None
    ) -> Response:
        for key in ("mfa_uid", "mfa_user", "mfa_fhir_user", "enrol_uid", "enrol_user"):
            session.pop(key, None)
        session.pop("enrol_fhir_user", None)
        session.update(uid=user_id, fhir_user=fhir_user, auth_time=int(time.time()))
        return await self.pages.after_login(request, session)

    async def check_code(
        self, request: Request, username: str, user_id: str, code: str
    ) -> tuple[bool, int]:
        """Whether ``code`` is an unused second factor of the user (used up if so), and
        the seconds to wait when wrong codes were throttled (then it is not checked)."""
        throttle = self.pages.throttle()
        key = f"mfa:{username}"
        address = client_address(request.client.host if request.client else None)
        wait = await run_in_threadpool(throttle.admit, key, address)
        if wait:
            return False, wait
        right = await run_in_threadpool(mfa.verify, self.auth.store, user_id, code[:64])
        await run_in_threadpool(throttle.succeeded if right else throttle.failed, key, address)
        return right, 0

    # -- the code page -----------------------------------------------------------------
    async def code_form(self, request: Request) -> Response:
        session = self.pages.load(request)
        if not session or "req" not in session or "mfa_uid" not in session:
            return self.pages.expired(request)
        return self.pages.render(request, "mfa.html", session=session)

    async def code(self, request: Request) -> Response:
        session = self.pages.load(request)
        if not session or "req" not in session or "mfa_uid" not in session:
            return self.pages.expired(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.form_expired(request)
        code = _text(form.get("code"))
        right, wait = await self.check_code(request, session["mfa_user"], session["mfa_uid"], code)
        if not right:
            return self.pages.render(
                request,
                "mfa.html",
                status=429 if wait else 401,
                headers={"Retry-After": str(wait)} if wait else None,
                session=session,
                error=_wait_text(wait) if wait else "That code is not right, or was used already.",
            )
        return await self._signed_in(
            request, session, session["mfa_uid"], session.get("mfa_fhir_user")
        )

    # -- enrolment required by the policy ----------------------------------------------
    async def enrol_form(self, request: Request) -> Response:
        session = self.pages.load(request)
        if not session or "req" not in session or "enrol_uid" not in session:
            return self.pages.expired(request)
        store = self.auth.store
        if await run_in_threadpool(mfa.enrolled, store, session["enrol_uid"]):
            return self.pages.expired(request)  # enrolled meanwhile: never replaced here
        factor = await run_in_threadpool(mfa.start_enrolment, store, session["enrol_uid"])
        return self._enrol_page(request, session, factor.secret)

    def _enrol_page(
        self, request: Request, session: dict[str, Any], secret: str, error: str | None = None
    ) -> Response:
        uri = mfa.provisioning_uri(secret, session["enrol_user"])
        return self.pages.render(
            request,
            "mfa_enrol.html",
            status=401 if error else 200,
            session=session,
            qr=mfa.qr_svg(uri),
            secret=secret,
            reason=ENROL_REASON,
            action="enrol",
            error=error,
        )

    async def enrol(self, request: Request) -> Response:
        session = self.pages.load(request)
        if not session or "req" not in session or "enrol_uid" not in session:
            return self.pages.expired(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.form_expired(request)
        store = self.auth.store
        user_id = session["enrol_uid"]
        codes = await run_in_threadpool(
            mfa.confirm_enrolment, store, user_id, _text(form.get("code"))[:64]
        )
        if codes is None:
            factor = await run_in_threadpool(store.get_second_factor, user_id)
            if factor is None or factor.confirmed:
                return self.pages.expired(request)
            return self._enrol_page(request, session, factor.secret, "That code is not right.")
        session["enrolled"] = True
        return self.pages.render(
            request, "mfa_recovery.html", session=session, codes=codes, action="continue"
        )

    async def enrolled_continue(self, request: Request) -> Response:
        session = self.pages.load(request)
        if not session or "req" not in session or not session.get("enrolled"):
            return self.pages.expired(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.form_expired(request)
        session.pop("enrolled", None)
        return await self._signed_in(
            request, session, session["enrol_uid"], session.get("enrol_fhir_user")
        )

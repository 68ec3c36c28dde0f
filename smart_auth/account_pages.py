"""The account page ``/auth/account`` (issue 21): server-rendered like the sign-in pages
(plain HTML forms, no script, CSRF tokens), for the person signed in to it:

- the apps connected to the account (the clients holding its live grants:
  :func:`smart_auth.account_api.connected_apps`), each with a button that ends that
  app's access at once;
- "Sign out everywhere": every grant of the account ends (refresh and access tokens);
- password change (the current password, then a new one under
  :mod:`smart_auth.password_rules`); every grant ends too, so a stolen session does not
  outlive the change;
- two-step sign-in (:mod:`smart_auth.mfa`): set it up (QR code, first code, recovery
  codes) or turn it off with a current code, unless ``FHIR_SERVER_MFA`` requires it.

Signing in to the page takes the password and, when enrolled, a code (the same throttles
as the app sign-in). The page's session lives in the signed session cookie
(:mod:`smart_auth.session`) for ``AuthConfig.session_lifetime``; starting an app's
sign-in replaces it.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from smart_auth import mfa
from smart_auth.account_api import connected_apps, end_app
from smart_auth.admin import revoke_grants
from smart_auth.mfa_pages import MfaPages
from smart_auth.pages import DISABLED_TEXT, Pages, _text, _wait_text
from smart_auth.password_rules import password_problem
from smart_auth.passwords import hash_password, verify_password
from smart_auth.session import csrf_ok, new_session

_ACCOUNT_KEYS = ("account_uid", "account_user", "account_until", "account_pending")


class AccountPages:
    """Route handlers of ``/auth/account`` and its forms."""

    def __init__(self, pages: Pages, second_step: MfaPages) -> None:
        self.pages = pages
        self.second_step = second_step
        self.auth = pages.auth

    # -- session -------------------------------------------------------------------------
    def _session(self, request: Request) -> dict[str, Any]:
        session = self.pages.load(request) or new_session()
        if "csrf" not in session:
            session.update(new_session())
        return session

    def _signed_in(self, session: dict[str, Any]) -> str | None:
        until = session.get("account_until")
        uid = session.get("account_uid")
        if isinstance(uid, str) and isinstance(until, int) and until > time.time():
            return uid
        return None

    def _form_ok(self, session: dict[str, Any], form: Any) -> bool:
        return csrf_ok(session, _text(form.get("csrf")))

    def _home(self, request: Request, session: dict[str, Any]) -> Response:
        return self.pages.redirect(request, self.pages.url(request, "account"), session)

    def _signed_out(self, request: Request, session: dict[str, Any], text: str) -> Response:
        for key in _ACCOUNT_KEYS:
            session.pop(key, None)
        response = self.pages.render(
            request, "message.html", status=200, title="Signed out", text=text
        )
        return self.pages.save(request, response, session)

    # -- sign-in -------------------------------------------------------------------------
    async def page(self, request: Request) -> Response:
        session = self._session(request)
        uid = self._signed_in(session)
        if uid is None:
            return self._login_page(request, session)
        return await self._render(request, session, uid)

    def _login_page(self, request: Request, session: dict[str, Any], **extra: Any) -> Response:
        return self.pages.render(
            request,
            "account_login.html",
            session=session,
            base=self.pages.url(request, "account"),
            **extra,
        )

    async def login(self, request: Request) -> Response:
        session = self._session(request)
        form = await request.form()
        if not self._form_ok(session, form):
            return self.pages.form_expired(request)
        username = _text(form.get("username")).strip()
        user, wait = await self.pages.password_step(request, username, _text(form.get("password")))
        if user is None or user.disabled:
            error = (
                DISABLED_TEXT
                if user is not None
                else (_wait_text(wait) if wait else "The username or password is not right.")
            )
            status = 403 if user is not None else (429 if wait else 401)
            return self._login_page(
                request,
                session,
                status=status,
                headers={"Retry-After": str(wait)} if wait else None,
                error=error,
                username=username,
            )
        if await run_in_threadpool(mfa.enrolled, self.auth.store, user.user_id):
            session["account_pending"] = [user.user_id, user.username]
            action = self.pages.url(request, "account/mfa")
            return self.pages.render(request, "mfa.html", session=session, action=action)
        return self._start(request, session, user.user_id, user.username)

    def _start(self, request: Request, session: dict[str, Any], uid: str, name: str) -> Response:
        session.pop("account_pending", None)
        until = int(time.time()) + self.auth.config.session_lifetime
        session.update(account_uid=uid, account_user=name, account_until=until)
        return self._home(request, session)

    async def code(self, request: Request) -> Response:
        session = self._session(request)
        pending = session.get("account_pending")
        form = await request.form()
        if not isinstance(pending, list) or not self._form_ok(session, form):
            return self.pages.form_expired(request)
        uid, name = pending
        right, wait = await self.second_step.check_code(request, name, uid, _text(form.get("code")))
        if not right:
            return self.pages.render(
                request,
                "mfa.html",
                status=429 if wait else 401,
                headers={"Retry-After": str(wait)} if wait else None,
                session=session,
                action=self.pages.url(request, "account/mfa"),
                error=_wait_text(wait) if wait else "That code is not right, or was used already.",
            )
        return self._start(request, session, uid, name)

    # -- the page ------------------------------------------------------------------------
    async def _render(
        self, request: Request, session: dict[str, Any], uid: str, **extra: Any
    ) -> Response:
        store = self.auth.store
        user = await run_in_threadpool(store.get_user, uid)
        if user is None or user.disabled:
            return self._signed_out(request, session, "This account cannot be used.")
        apps = await run_in_threadpool(connected_apps, store, uid)
        who = await self.auth.hooks.display(user.fhir_user) if user.fhir_user else None
        enrolled = await run_in_threadpool(mfa.enrolled, store, uid)
        return self.pages.render(
            request,
            "account.html",
            status=extra.pop("status", 200),
            session=session,
            base=self.pages.url(request, "account"),
            username=user.username,
            who=who,
            apps=apps,
            mfa_enrolled=enrolled,
            mfa_off=self.auth.config.mfa == "off",
            mfa_required=mfa.required(self.auth.config.mfa, user.fhir_user),
            **extra,
        )

    async def _action(self, request: Request) -> tuple[dict[str, Any], str, Any] | Response:
        """The signed-in session, its user id and the posted form; or the answer."""
        session = self._session(request)
        form = await request.form()
        uid = self._signed_in(session)
        if uid is None:
            return self._login_page(request, session, status=401)
        if not self._form_ok(session, form):
            return self.pages.form_expired(request)
        return session, uid, form

    async def revoke(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        session, uid, form = found
        client_id = _text(form.get("client_id"))
        ended = await run_in_threadpool(
            end_app, self.auth.store, self.auth.token_service(), uid, client_id
        )
        notice = "The app no longer has access." if ended else "That app had no access."
        return await self._render(request, session, uid, notice=notice)

    async def sign_out_everywhere(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        session, uid, _ = found
        await run_in_threadpool(
            revoke_grants, self.auth.store, self.auth.token_service(), user_id=uid
        )
        return self._signed_out(
            request,
            session,
            "You are signed out everywhere: every app has to ask you to sign in again.",
        )

    async def sign_out(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        return self._signed_out(request, found[0], "You are signed out of your account page.")

    async def password(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        session, uid, form = found
        store = self.auth.store
        user = await run_in_threadpool(store.get_user, uid)
        assert user is not None
        current = _text(form.get("current"))
        new, again = _text(form.get("new")), _text(form.get("again"))
        right = len(current) <= 1024 and await run_in_threadpool(
            verify_password, user.password_hash, current
        )
        problem = (None if right else "The current password is not right.") or password_problem(
            new, user.username, self.auth.config.min_password_length
        )
        if problem is None and new != again:
            problem = "The two new passwords differ."
        if problem is not None:
            return await self._render(request, session, uid, status=400, password_error=problem)
        new_hash = await run_in_threadpool(hash_password, new)
        await run_in_threadpool(store.update_password, uid, new_hash)
        await run_in_threadpool(revoke_grants, store, self.auth.token_service(), user_id=uid)
        return await self._render(
            request,
            session,
            uid,
            notice="Your password is changed. Your apps ask you to sign in again.",
        )

    # -- two-step sign-in ----------------------------------------------------------------
    async def enrol_form(self, request: Request) -> Response:
        session = self._session(request)
        uid = self._signed_in(session)
        if uid is None:
            return self._login_page(request, session, status=401)
        store = self.auth.store
        if self.auth.config.mfa == "off" or await run_in_threadpool(mfa.enrolled, store, uid):
            return self._home(request, session)
        factor = await run_in_threadpool(mfa.start_enrolment, store, uid)
        return self._enrol_page(request, session, factor.secret)

    def _enrol_page(
        self, request: Request, session: dict[str, Any], secret: str, error: str | None = None
    ) -> Response:
        uri = mfa.provisioning_uri(secret, str(session.get("account_user")))
        return self.pages.render(
            request,
            "mfa_enrol.html",
            status=401 if error else 200,
            session=session,
            qr=mfa.qr_svg(uri),
            secret=secret,
            action="enrol",
            error=error,
        )

    async def enrol(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        session, uid, form = found
        store = self.auth.store
        codes = await run_in_threadpool(mfa.confirm_enrolment, store, uid, _text(form.get("code")))
        if codes is None:
            factor = await run_in_threadpool(store.get_second_factor, uid)
            if factor is None or factor.confirmed:
                return self._home(request, session)
            return self._enrol_page(request, session, factor.secret, "That code is not right.")
        return self.pages.render(
            request, "mfa_recovery.html", session=session, codes=codes, action="done"
        )

    async def enrol_done(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        return self._home(request, found[0])

    async def mfa_off(self, request: Request) -> Response:
        found = await self._action(request)
        if isinstance(found, Response):
            return found
        session, uid, form = found
        store = self.auth.store
        user = await run_in_threadpool(store.get_user, uid)
        assert user is not None
        if mfa.required(self.auth.config.mfa, user.fhir_user):
            return await self._render(
                request, session, uid, status=403,
                mfa_error="This server requires two-step sign-in for your account.",
            )  # fmt: skip
        right, wait = await self.second_step.check_code(
            request, user.username, uid, _text(form.get("code"))
        )
        if not right:
            error = _wait_text(wait) if wait else "That code is not right, or was used already."
            return await self._render(request, session, uid, status=401, mfa_error=error)
        await run_in_threadpool(store.delete_second_factor, uid)
        return await self._render(request, session, uid, notice="Two-step sign-in is off.")

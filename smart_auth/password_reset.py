"""Password reset by email (issue 21; OWASP Forgot Password Cheat Sheet):

- ``/auth/forgot``: the person gives their username or email address; for each account
  it names (not disabled) a one-time link ``/auth/reset?token=...`` (32 random bytes,
  stored as a SHA-256 hash, valid :data:`LIFETIME` seconds) is emailed to the account's
  own address (given at sign-up on the activation page, or by ``fhir-server users create
  --email``) through the notifications' SMTP settings. Never to an address of the FHIR
  record: any app the patient granted ``patient/Patient.u`` (or a caregiver) may change
  ``Patient.telecom``, and would then receive the link to take the account over. An
  address in the record still finds the account (the link goes to the account's own). The page
  answers the same whether an account matched or not, and the email leaves after the
  answer, so neither the text nor the time tells. Requests are throttled per username or
  address and client (``smart_auth.throttle``).
- ``/auth/reset``: opening the link shows the form (it does not use the link up: mail
  scanners open links); sending a new password under :mod:`smart_auth.password_rules`
  uses the link up atomically, sets the password and ends every grant of the account
  (its apps ask it to sign in again).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.admin import revoke_grants
from smart_auth.pages import Pages, _text, _wait_text
from smart_auth.password_rules import password_problem
from smart_auth.passwords import hash_password, hash_secret, new_secret
from smart_auth.session import csrf_ok, new_session
from smart_auth.store.base import PasswordReset, User
from smart_auth.throttle import client_address

LIFETIME = 1800
"""Seconds a reset link stays usable."""
SENT_TEXT = (
    "If an account matches, a link to choose a new password is on its way to the email"
    " address of that account. The link works once, within 30 minutes."
)
log = logging.getLogger("smart_auth")


class PasswordResetPages:
    """Route handlers of ``/auth/forgot`` and ``/auth/reset``."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.auth = pages.auth
        self._sending: set[asyncio.Task[None]] = set()

    def _offered(self) -> bool:
        hooks = self.auth.hooks
        offers = getattr(hooks, "offers_password_reset", None)
        sends = callable(getattr(hooks, "send_password_reset", None))
        return sends and (not callable(offers) or bool(offers()))

    def _session(self, request: Request) -> dict[str, Any]:
        session = self.pages.load(request) or new_session()
        if "csrf" not in session:
            session.update(new_session())
        return session

    async def forgot_form(self, request: Request) -> Response:
        if not self._offered():
            return self._not_offered(request)
        session = self._session(request)
        return self.pages.render(request, "forgot.html", session=session)

    def _not_offered(self, request: Request) -> Response:
        return self.pages.message(
            request,
            "Password reset",
            "This server cannot send emails: ask your clinic to reset your password.",
            404,
        )

    async def forgot(self, request: Request) -> Response:
        if not self._offered():
            return self._not_offered(request)
        session = self._session(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.form_expired(request)
        name = _text(form.get("name")).strip()[:320]
        if not name:
            return self.pages.render(
                request, "forgot.html", status=400, session=session,
                error="Enter your username or email address.",
            )  # fmt: skip
        throttle = self.pages.throttle()
        address = client_address(request.client.host if request.client else None)
        key = f"reset:{name.lower()}"
        wait = await run_in_threadpool(throttle.admit, key, address)
        if wait:
            return self.pages.render(
                request,
                "forgot.html",
                status=429,
                headers={"Retry-After": str(wait)},
                session=session,
                error=_wait_text(wait),
            )
        await run_in_threadpool(throttle.failed, key, address)  # every request counts
        base = self.pages.url(request, "reset")
        task = asyncio.create_task(self._send_links(name, base))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return self.pages.render(
            request, "message.html", status=200, title="Check your email", text=SENT_TEXT
        )

    async def _accounts(self, name: str) -> list[User]:
        store = self.auth.store
        found: dict[str, User] = {}
        if "@" in name:
            for user in await run_in_threadpool(store.users_with_email, name):
                found[user.user_id] = user
            lookup = getattr(self.auth.hooks, "fhir_users_with_email", None)
            for fhir_user in await lookup(name) if callable(lookup) else []:
                for user in await run_in_threadpool(store.users_for, fhir_user):
                    found.setdefault(user.user_id, user)  # the link goes to its own address
        else:
            user = await run_in_threadpool(store.find_user, name)
            if user is not None:
                found[user.user_id] = user
        return [u for u in found.values() if not u.disabled]

    async def _send_links(self, name: str, base: str) -> None:
        """Email a new link to each account ``name`` names (after the page answered)."""
        try:
            for user in await self._accounts(name):
                if not user.email:  # only an address the account holder gave (see module)
                    log.warning("password reset: user %s has no email address", user.user_id)
                    continue
                token = new_secret()
                now = int(time.time())
                reset = PasswordReset(hash_secret(token), user.user_id, now + LIFETIME)
                reset.created_at = now
                await run_in_threadpool(self.auth.store.add_reset, reset)
                link = f"{base}?token={token}"
                sent = await self.auth.hooks.send_password_reset(None, user.email, link)
                if not sent:
                    log.warning("password reset: the email to user %s failed", user.user_id)
        except Exception:  # noqa: BLE001 - logged; the person already has the answer
            log.exception("password reset: the email could not be sent")

    async def reset_form(self, request: Request) -> Response:
        session = self._session(request)
        token = request.query_params.get("token", "")[:128]
        return self.pages.render(request, "reset.html", session=session, token=token)

    async def reset(self, request: Request) -> Response:
        session = self._session(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.form_expired(request)
        token = _text(form.get("token"))[:128]
        new, again = _text(form.get("new")), _text(form.get("again"))
        store = self.auth.store
        record = await run_in_threadpool(store.get_reset, hash_secret(token)) if token else None
        user = await run_in_threadpool(store.get_user, record.user_id) if record else None
        if record is None or user is None or not record.usable(int(time.time())):
            return self._expired_link(request)
        problem = password_problem(new, user.username, self.auth.config.min_password_length)
        if problem is None and new != again:
            problem = "The two passwords differ."
        if problem is not None:
            return self.pages.render(
                request, "reset.html", status=400, session=session, token=token, error=problem
            )
        if await run_in_threadpool(store.take_reset, hash_secret(token)) is None:
            return self._expired_link(request)  # used by a concurrent request
        new_hash = await run_in_threadpool(hash_password, new)
        await run_in_threadpool(store.update_password, user.user_id, new_hash)
        await run_in_threadpool(
            revoke_grants, store, self.auth.token_service(), user_id=user.user_id
        )
        return self.pages.render(
            request,
            "message.html",
            status=200,
            title="Your password is changed",
            text=f"Sign in as {user.username} with your new password. Your apps ask you to"
            " sign in again.",
        )

    def _expired_link(self, request: Request) -> Response:
        return self.pages.message(
            request,
            "This link cannot be used",
            "The link was used already or is more than 30 minutes old. Ask for a new one.",
            400,
        )

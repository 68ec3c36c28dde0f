"""Account activation from a staff invitation (issue 6, "People"): ``fhir-server invite
Patient/123`` prints a one-time code and a link to ``/auth/activate``, where the patient
chooses a username and a password (argon2-hashed, :mod:`smart_auth.passwords`). The code
is stored hashed and used at most once (atomically, :meth:`AuthStore.use_invitation`),
before it expires. The form is CSRF-protected like the sign-in pages
(:mod:`smart_auth.pages`).

The answers never tell a stranger which usernames exist: the code is checked first, and
only someone holding a valid code (a secret only the invitee has) learns that a username
is taken. One person gets one account: a code whose Patient (or RelatedPerson, Person)
already has one is refused, whatever invitation it comes from.
"""

from __future__ import annotations

import time
import uuid

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from smart_auth.admin import EMAIL, normalize_code
from smart_auth.pages import USERNAME, Pages, _text
from smart_auth.password_rules import password_problem
from smart_auth.passwords import hash_password, hash_secret
from smart_auth.session import csrf_ok, new_session
from smart_auth.store.base import DuplicateError, Invitation, User


class Activation:
    """``/auth/activate``: a patient turns a one-time invitation code into an account."""

    def __init__(self, pages: Pages) -> None:
        self.pages = pages
        self.auth = pages.auth
        self.minimum = pages.auth.config.min_password_length

    async def form(self, request: Request) -> Response:
        session = self.pages.load(request) or new_session()
        code = request.query_params.get("code", "")[:200]
        return self.pages.render(
            request, "activate.html", session=session, code=code, minimum=self.minimum
        )

    async def submit(self, request: Request) -> Response:
        session = self.pages.load(request)
        form = await request.form()
        if not csrf_ok(session, _text(form.get("csrf"))):
            return self.pages.message(
                request, "Form expired", "Reload the page and try again.", 403
            )
        assert session is not None
        code = _text(form.get("code")).strip()
        username = _text(form.get("username")).strip()
        password = _text(form.get("password"))
        email = _text(form.get("email")).strip()[:320] or None
        error = self.problem(code, username, password, _text(form.get("password2")))
        if error is None and email is not None and not EMAIL.fullmatch(email):
            error = "The email address does not look right (name@example.org)."
        code_hash = hash_secret(normalize_code(code))
        if error is None:
            error = await run_in_threadpool(self.refusal, code_hash, username)
        if error is None:
            password_hash = await run_in_threadpool(hash_password, password)
            error = await run_in_threadpool(self.create, code_hash, username, password_hash, email)
        if error is not None:
            return self.pages.render(
                request,
                "activate.html",
                status=400,
                session=session,
                code=code,
                username=username,
                email=email,
                error=error,
                minimum=self.minimum,
            )
        return self.pages.render(
            request,
            "message.html",
            status=201,
            title="Your account is ready",
            text=f"You can now sign in as {username} from your health apps.",
        )

    def problem(self, code: str, username: str, password: str, again: str) -> str | None:
        """What is wrong with the form itself (nothing the store knows)."""
        minimum = self.auth.config.min_password_length
        if not code:
            return "Enter the activation code from your invitation."
        if not USERNAME.fullmatch(username):
            return "Choose a username of 3 to 64 letters, digits or . _ @ + -"
        weak = password_problem(password, username, minimum)
        if weak:
            return weak
        if password != again:
            return "The two passwords differ."
        return None

    def refusal(self, code_hash: str, username: str) -> str | None:
        """Why the code cannot be used (checked first), else whether the username is taken
        or the invited person already has an account."""
        store = self.auth.store
        invitation = store.get_invitation(code_hash)
        if invitation is None or not invitation.usable(int(time.time())):
            return _code_refusal(invitation)
        if store.find_user(username) is not None:
            return "That username is taken: choose another."
        if store.users_for(invitation.fhir_user):
            return ALREADY
        return None

    def create(
        self, code_hash: str, username: str, password_hash: str, email: str | None = None
    ) -> str | None:
        store = self.auth.store
        invitation = store.use_invitation(code_hash)
        if invitation is None:
            return _code_refusal(store.get_invitation(code_hash))
        if store.users_for(invitation.fhir_user):
            store.release_invitation(code_hash)
            return ALREADY
        user = User(
            user_id=uuid.uuid4().hex,
            username=username,
            password_hash=password_hash,
            fhir_user=invitation.fhir_user,
            created_at=int(time.time()),
            email=email,
        )
        try:
            store.add_user(user)
        except DuplicateError:
            store.release_invitation(code_hash)
            return "That username is taken: choose another."
        return None


ALREADY = (
    "You already have an account: sign in with its username from your health apps. If you"
    " have forgotten it, ask the clinic."
)


def _code_refusal(invitation: Invitation | None) -> str:
    if invitation is None:
        return "That activation code is not right."
    if invitation.used_at is not None:
        return "That activation code was already used."
    return (
        "That activation code has expired or a newer invitation replaced it: use the newest"
        " one, or ask for a new invitation."
    )

"""Multi-factor sign-in with time-based one-time passwords (TOTP, RFC 6238,
https://www.rfc-editor.org/rfc/rfc6238; codes by ``pyotp``), issue 21.

- Enrolment: the user gets a new secret as a QR code (an ``otpauth://`` URI, drawn as
  inline SVG by ``segno``) and as text, and confirms it with a first code; only then is
  the factor enrolled (:class:`~smart_auth.store.base.SecondFactor` ``confirmed``) and
  ten one-time recovery codes are shown, once (stored as SHA-256 hashes).
- Sign-in: after the password, a user with an enrolled factor gives a code of the
  current 30-second step (one step of clock drift either way is accepted) or a recovery
  code. Each code works once: the newest accepted step is recorded atomically, so a code
  seen over a shoulder cannot be replayed, not even by a concurrent request.
- Policy ``FHIR_SERVER_MFA``: ``off`` (never asked, no enrolment), ``optional`` (asked
  of those who enrolled; the default), ``staff`` (Practitioner users must enrol before
  their first token), ``all`` (everyone must).
- ``fhir-server users mfa-reset USERNAME``: the help desk removes a user's factor (they
  enrol again, where the policy requires, at their next sign-in).
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Literal

import pyotp
import segno

from smart_auth.passwords import hash_secret
from smart_auth.store.base import AuthStore, SecondFactor

Policy = Literal["off", "optional", "staff", "all"]
PERIOD = 30
RECOVERY_CODES = 10
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"
ISSUER = "fhir-server"


def required(policy: str, fhir_user: str | None) -> bool:
    """Whether a user must have an enrolled factor before getting a token."""
    if policy == "all":
        return True
    if policy == "staff":
        return (fhir_user or "").startswith(("Practitioner/", "PractitionerRole/"))
    return False


def enrolled(store: AuthStore, user_id: str) -> bool:
    factor = store.get_second_factor(user_id)
    return factor is not None and factor.confirmed


def start_enrolment(store: AuthStore, user_id: str) -> SecondFactor:
    """A new, unconfirmed factor for ``user_id``, replacing what the user had (the
    pages start an enrolment only for a user without an enrolled factor, or one who
    just proved theirs)."""
    factor = SecondFactor(user_id, pyotp.random_base32(), created_at=int(time.time()))
    store.put_second_factor(factor)
    return factor


def provisioning_uri(secret: str, username: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI that authenticator apps read from the QR code."""
    return pyotp.TOTP(secret, interval=PERIOD).provisioning_uri(name=username, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an inline SVG element (no image request, no script)."""
    return str(segno.make(uri, error="m").svg_inline(scale=4, title="QR code to scan"))


def _matching_step(secret: str, code: str, now: float) -> int | None:
    totp = pyotp.TOTP(secret, interval=PERIOD)
    step = int(now // PERIOD)
    for candidate in (step, step - 1, step + 1):
        if hmac.compare_digest(totp.at(candidate * PERIOD), code):
            return candidate
    return None


def _normalized(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()


def confirm_enrolment(store: AuthStore, user_id: str, code: str) -> list[str] | None:
    """Confirm the pending factor with a first code; the recovery codes (shown once), or
    None when the code is not right."""
    factor = store.get_second_factor(user_id)
    digits = _normalized(code)
    if factor is None or factor.confirmed or not digits.isdigit():
        return None
    step = _matching_step(factor.secret, digits, time.time())
    if step is None:
        return None
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    factor.confirmed = True
    factor.last_step = step
    factor.recovery_hashes = [hash_secret(_normalized(c)) for c in codes]
    store.put_second_factor(factor)
    return codes


def _recovery_code() -> str:
    chars = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(10))
    return f"{chars[:5]}-{chars[5:]}"


def verify(store: AuthStore, user_id: str, code: str, now: float | None = None) -> bool:
    """Whether ``code`` (a TOTP code or a recovery code) is a second factor of the user
    not used before; a match is used up."""
    factor = store.get_second_factor(user_id)
    if factor is None or not factor.confirmed:
        return False
    text = _normalized(code)
    if text.isdigit() and len(text) == 6:
        step = _matching_step(factor.secret, text, time.time() if now is None else now)
        return step is not None and store.use_totp_step(user_id, step)
    if len(text) == 10 and text.isalnum():
        return store.use_recovery_code(user_id, hash_secret(text))
    return False

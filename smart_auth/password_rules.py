"""What a new password must be (issue 21, OWASP ASVS 4.0 section 2.1, NIST SP 800-63B
section 5.1.1.2): at least the configured length (``AuthConfig.min_password_length``,
8 by default; counted in characters, any characters allowed, no composition rules), at
most 1024 characters, not a very common password (a bundled list, compared without
case), not the username, and not a single repeated character.

Applied where a password is chosen: activation (sign-up by invitation), the account
page's change and the reset by email link, and the operator's ``users create`` /
``users reset-password``.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

MAX_LENGTH = 1024
_LIST = Path(__file__).parent / "data" / "common_passwords.txt"


@cache
def _common() -> frozenset[str]:
    lines = _LIST.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def password_problem(password: str, username: str = "", min_length: int = 8) -> str | None:
    """Why ``password`` cannot be used (a sentence for the person), or None."""
    if len(password) < min_length:
        return f"Use at least {min_length} characters."
    if len(password) > MAX_LENGTH:
        return f"Use at most {MAX_LENGTH} characters."
    folded = password.casefold()
    if folded in _common():
        return "That password is one of the most common ones: choose another."
    if username and folded == username.casefold():
        return "The password cannot be your username."
    if len(set(password)) == 1:
        return "A password of one repeated character is too easy to guess."
    return None

"""Secrets kept out of the logs (OWASP Logging Cheat Sheet, "Data to exclude":
https://cheatsheetseries.owasp.org/cheatsheets/Logging_Cheat_Sheet.html#data-to-exclude).

The access log writes each request's path and query string; a query can carry secrets
(RFC 6749 codes, RFC 6750 ``access_token``, activation codes in the invitation link
``/auth/activate?code=…``, client secrets and passwords sent where they should not be).
:func:`query_for_log` replaces the value of every such parameter by ``***``: the
parameters below anywhere, and ``code`` and ``launch`` outside the FHIR API (``code`` is
an ordinary search parameter under ``/fhir``). Names are compared decoded and
case-insensitively. :func:`url_for_log` does the same for a storage URL (the password of
``mongodb://user:password@host`` and secret options).
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus, urlsplit

REDACTED = "***"
SECRET_PARAMETERS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "id_token_hint",
        "token",
        "client_secret",
        "client_assertion",
        "assertion",
        "code_verifier",
        "password",
        "password2",
        "registration_access_token",
        "subject_token",
        "actor_token",
    }
)
"""Parameters whose value is a secret wherever they are sent."""
AUTH_SECRET_PARAMETERS = SECRET_PARAMETERS | {"code", "launch"}
"""Outside the FHIR API also authorization and activation codes, and launch ids."""

_WORDS = r"token|secret|assertion|verifier|password|%|\+"
_MAYBE = re.compile(rf"(?:^|&)[^=&]*(?:{_WORDS})", re.IGNORECASE)
"""A parameter name that may be a secret one (a quick look at the names only)."""
_MAYBE_AUTH = re.compile(rf"(?:^|&)[^=&]*(?:{_WORDS}|code|launch)", re.IGNORECASE)
_SECRET_OPTION = re.compile(
    r"password|secret|token|credential|authmechanismproperties", re.IGNORECASE
)


def query_for_log(path: str, query: str) -> str:
    """A request's query string as the log may show it (``path`` tells FHIR API requests
    from the others)."""
    fhir = path.startswith("/fhir")
    if not (_MAYBE if fhir else _MAYBE_AUTH).search(query):
        return query  # the common case: nothing that could name a secret
    secret = SECRET_PARAMETERS if fhir else AUTH_SECRET_PARAMETERS
    return "&".join(_pair_for_log(pair, secret) for pair in query.split("&"))


def _pair_for_log(pair: str, secret: frozenset[str]) -> str:
    name, equals, _ = pair.partition("=")
    if unquote_plus(name).strip().lower() in secret:
        return f"{name}={REDACTED}" if equals else name
    return pair


def url_for_log(url: str) -> str:
    """A storage URL without its password or secret options (as the log may show it);
    unchanged when it has none."""
    try:
        password = urlsplit(url).password
    except ValueError:
        return url.split(":", 1)[0] + ":" + REDACTED
    head, question, query = url.partition("?")
    if password is not None:
        scheme, slashes, rest = head.partition("://")
        userinfo, _, hosts = rest.partition("/")[0].rpartition("@")
        path = rest[len(userinfo) + 1 + len(hosts) :]
        head = f"{scheme}{slashes}{userinfo.partition(':')[0]}:{REDACTED}@{hosts}{path}"
    if question:
        query = "&".join(_option_for_log(pair) for pair in query.split("&"))
    return head + question + query


def _option_for_log(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}={REDACTED}" if equals and _SECRET_OPTION.search(unquote_plus(name)) else pair

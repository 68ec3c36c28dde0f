"""HTTP headers of the RESTful API: ETag and If-Match / If-None-Match
(https://hl7.org/fhir/R4/http.html#concurrency), Last-Modified and If-Modified-Since
(https://hl7.org/fhir/R4/http.html#cread), Prefer
(https://hl7.org/fhir/R4/http.html#ops), and the headers every FHIR response carries.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from functools import lru_cache

from resources.errors import invalid

_ETAG = re.compile(r'^\s*(?:W/)?"([^"]*)"\s*$')

NOSNIFF = {"X-Content-Type-Options": "nosniff"}
HSTS = "max-age=31536000"
"""``Strict-Transport-Security`` of every response over https: a year
(https://www.rfc-editor.org/rfc/rfc6797#section-6.1.1)."""
"""On every response of the server: a browser takes the ``Content-Type`` as sent and
never guesses another from the bytes (https://fetch.spec.whatwg.org/#x-content-type-options-header):
a Binary or an error echoing its input is not run as a script or page."""

FHIR_RESPONSE_HEADERS = {"Cache-Control": "no-store", **NOSNIFF}
"""On every FHIR response: health data is kept by no cache, shared or private
(https://www.rfc-editor.org/rfc/rfc9111#section-5.2.2.5); clients still revalidate a
version they hold with ``If-None-Match`` (304)."""


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_etag_version(value: str, header: str) -> int:
    """The version number in ``W/"3"`` (or ``"3"``); 400 if it is not one."""
    match = _ETAG.match(value)
    if not match or not match.group(1).isdigit():
        raise invalid(f'{header} must be a version ETag like W/"3" (got {value!r})')
    return int(match.group(1))


def etag_matches_any(header: str, version: int) -> bool:
    """Does an If-None-Match list (or ``*``) match this version?"""
    for part in header.split(","):
        part = part.strip()
        if part == "*":
            return True
        match = _ETAG.match(part)
        if match and match.group(1) == str(version):
            return True
    return False


def instant_to_datetime(instant: str) -> datetime:
    return datetime.fromisoformat(instant.replace("Z", "+00:00"))


@lru_cache(maxsize=4096)
def http_date(instant: str) -> str:
    """RFC 9110 HTTP-date of a FHIR instant (cached: every read and write sends one)."""
    return format_datetime(instant_to_datetime(instant).astimezone(UTC), usegmt=True)


def not_modified_since(header: str, instant: str) -> bool:
    """True when the resource did not change after the If-Modified-Since date."""
    try:
        since = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    modified = instant_to_datetime(instant).replace(microsecond=0)
    return modified <= since


def prefer_return(header: str | None) -> str:
    """``minimal``, ``representation`` (the default) or ``OperationOutcome``."""
    for token in _prefer_tokens(header):
        if token.startswith("return="):
            value = token.split("=", 1)[1].strip('"')
            if value in ("minimal", "representation", "OperationOutcome"):
                return value
    return "representation"


def prefer_handling(header: str | None) -> str:
    """``strict`` or ``lenient`` (the default)."""
    for token in _prefer_tokens(header):
        if token == "handling=strict":
            return "strict"
    return "lenient"


def _prefer_tokens(header: str | None) -> list[str]:
    if not header:
        return []
    return [t.strip() for part in header.split(",") for t in part.split(";") if t.strip()]

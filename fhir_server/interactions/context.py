"""What an interaction gets (the request in FHIR terms) and returns (a FHIR response).

https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from fhir_server.config import Settings
from fhir_server.headers import etag, http_date
from fhir_server.storage.base import Store, StoredVersion
from resources.errors import invalid

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


@dataclass
class Context:
    """One request: the store, settings, public base URL, headers and query parameters."""

    store: Store
    settings: Settings
    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: list[tuple[str, str]] = field(default_factory=list)
    auth: Any = None
    """The SMART authorization server (``smart_auth.service.SmartAuth``) when enabled."""

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None

    def url(self, *parts: str) -> str:
        return "/".join((self.base_url, *parts))


@dataclass
class FhirResponse:
    """Status, headers and a body: stored bytes, a JSON-able dict, or nothing."""

    status: int
    body: bytes | dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def check_id(id_: str, expression: str = "id") -> str:
    """Ids are 1-64 of ``[A-Za-z0-9-.]`` (https://hl7.org/fhir/R4/datatypes.html#id)."""
    if not _ID.match(id_):
        raise invalid(
            f"Invalid id {id_!r}: ids are 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'",
            expression,
        )
    return id_


def version_headers(ctx: Context, stored: StoredVersion) -> dict[str, str]:
    """ETag, Last-Modified and Location of a stored version."""
    return {
        "ETag": etag(stored.version),
        "Last-Modified": http_date(stored.last_updated),
        "Location": ctx.url(stored.type, stored.id, "_history", str(stored.version)),
    }


def bundle_id() -> str:
    """A new id for a Bundle the server assembles (a searchset, a history): 128 random
    bits in hex. It only has to be unique; ``uuid4`` reads the OS's random source on
    every call (~5 us of a 700 us search)."""
    return f"{random.getrandbits(128):032x}"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def query_string(params: Sequence[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode(params)``, the same text, quoting only what needs it."""
    return "&".join(
        f"{k if _UNRESERVED(k) else quote_plus(k)}={v if _UNRESERVED(v) else quote_plus(v)}"
        for k, v in params
    )

"""The entries of a batch or transaction Bundle, and the entries of its response.

https://hl7.org/fhir/R4/http.html#transaction and https://hl7.org/fhir/R4/bundle.html:
each request entry has ``request.method`` and ``request.url`` (relative to the server's
base, or absolute on it), a ``resource`` for POST and PUT (and PATCH, as a ``Parameters``
FHIRPath Patch or a ``Binary`` holding a JSON Patch), and optional ``ifMatch``,
``ifNoneMatch``, ``ifNoneExist`` and ``ifModifiedSince``. Each response entry carries
``response.status`` ("201 Created"), ``location``, ``etag``, ``lastModified`` and, on
failure, ``outcome``.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import orjson

from capability.support import support_table
from fhir_server.formats import FHIR_JSON, JSON_PATCH, MERGE_PATCH
from fhir_server.headers import http_date, prefer_return
from fhir_server.interactions.context import Context, FhirResponse
from fhir_server.storage.base import StoredVersion, now_instant
from resources import fhir_json
from resources.definitions import RESOURCE_TYPES
from resources.errors import FhirError, Issue, invalid, operation_outcome
from resources.fhir_datetime import format_instant

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_HEADERS = (
    ("ifMatch", "if-match"),
    ("ifNoneMatch", "if-none-match"),
    ("ifNoneExist", "if-none-exist"),
)


@dataclass
class BundleEntry:
    """One request entry, with its URL split into path segments and query items."""

    index: int
    full_url: str | None
    method: str
    url: str
    segments: list[str]
    query: str
    resource: dict[str, Any] | None
    request: dict[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"

    @property
    def label(self) -> str:
        named = f" (fullUrl {self.full_url})" if self.full_url else ""
        return f"{self.where}{named}, {self.method} {self.url}"

    @property
    def params(self) -> list[tuple[str, str]]:
        return parse_qsl(self.query, keep_blank_values=True)

    @property
    def type(self) -> str | None:
        return self.segments[0] if self.segments else None

    def request_field(self, name: str) -> str | None:
        value = self.request.get(name)
        return value if isinstance(value, str) and value else None


def parse_bundle(body: bytes) -> tuple[str, list[dict[str, Any]]]:
    """The Bundle's type and raw entries; 400 unless it is a batch or transaction."""
    bundle = fhir_json.loads_resource(body)
    if bundle.get("resourceType") != "Bundle":
        raise invalid(
            f"POST to the base URL takes a Bundle, not {bundle.get('resourceType')!r}",
            "resourceType",
        )
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise invalid(
            f"Bundle.type must be 'batch' or 'transaction' to be processed (got {kind!r})",
            "Bundle.type",
        )
    entries = bundle.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise invalid("Bundle.entry must be a list of objects", "Bundle.entry")
    return kind, entries


def parse_entry(ctx: Context, index: int, raw: dict[str, Any]) -> BundleEntry:
    """Check one entry's request and resource; 400 naming the entry when it is unusable."""
    where = f"Bundle.entry[{index}]"
    request = raw.get("request")
    if not isinstance(request, dict):
        raise invalid(f"{where} has no request (method and url)", f"{where}.request")
    method = request.get("method")
    url = request.get("url")
    if method not in METHODS:
        raise invalid(
            f"{where}.request.method {method!r} is not one of {', '.join(METHODS)}",
            f"{where}.request.method",
        )
    if not isinstance(url, str) or not url:
        raise invalid(f"{where}.request.url is missing", f"{where}.request.url")
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    resource = raw.get("resource")
    if resource is not None and not isinstance(resource, dict):
        raise invalid(f"{where}.resource must be a resource", f"{where}.resource")
    segments, query = _split_url(ctx, url, where)
    entry = BundleEntry(index, full_url, method, url, segments, query, resource, request)
    _check_shape(entry)
    return entry


def _split_url(ctx: Context, url: str, where: str) -> tuple[list[str], str]:
    path = url
    base = ctx.base_url.rstrip("/")
    if path.startswith(base + "/") or path == base:
        path = path[len(base) :]
    elif "://" in path.split("?", 1)[0]:
        raise invalid(
            f"{where}.request.url {url!r} is not on this server ({base})", f"{where}.request.url"
        )
    path, _, query = path.lstrip("/").partition("?")
    segments = [s for s in path.split("/") if s]
    return segments, query


def _check_shape(entry: BundleEntry) -> None:
    where, method, segs = entry.where, entry.method, entry.segments
    at = f"{where}.request.url"
    if method in ("GET", "HEAD"):
        return  # checked by the dispatcher, which knows every read and search form
    if not segs or len(segs) > 2:
        raise invalid(
            f"{entry.label}: a {method} needs a URL of Type, Type/id or Type?criteria", at
        )
    _require_type(entry, segs[0], at)
    if method == "POST" and len(segs) != 1:
        raise invalid(f"{entry.label}: a POST entry's URL is the resource type", at)
    if method in ("POST", "PUT"):
        if entry.resource is None:
            raise invalid(f"{entry.label} has no resource", f"{where}.resource")
        if entry.resource.get("resourceType") != segs[0]:
            raise invalid(
                f"{entry.label}: resourceType {entry.resource.get('resourceType')!r} does not"
                f" match the URL ({segs[0]})",
                f"{where}.resource.resourceType",
            )
    if method == "PATCH":
        patch_body(entry)
    if len(segs) == 1 and method != "POST" and not entry.query:
        raise invalid(f"{entry.label}: a conditional {method} needs search criteria", at)


def _require_type(entry: BundleEntry, type_: str, at: str) -> None:
    if type_ not in RESOURCE_TYPES or type_ not in support_table().types:
        raise FhirError(
            404,
            "not-supported",
            f"{entry.label}: unknown or unsupported resource type {type_!r}",
            (at,),
        )


def patch_body(entry: BundleEntry) -> tuple[str, bytes]:
    """The (content type, body) of a PATCH entry: a Parameters resource (FHIRPath Patch)
    or a Binary whose ``data`` is a JSON Patch (https://hl7.org/fhir/R4/http.html#patch)
    or, by its ``contentType``, a JSON Merge Patch (RFC 7386)."""
    resource = entry.resource
    at = f"{entry.where}.resource"
    if resource is None:
        raise invalid(f"{entry.label} has no resource (a Parameters or a Binary patch)", at)
    if resource.get("resourceType") == "Parameters":
        return FHIR_JSON, fhir_json.dumps(resource)
    if resource.get("resourceType") == "Binary":
        content_type = resource.get("contentType")
        media = content_type.split(";")[0].strip().lower() if isinstance(content_type, str) else ""
        if media not in (JSON_PATCH, MERGE_PATCH):
            raise invalid(
                f"{entry.label}: a Binary patch must have contentType {JSON_PATCH}"
                f" or {MERGE_PATCH}",
                at,
            )
        try:
            return media, base64.b64decode(resource.get("data", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise invalid(f"{entry.label}: Binary.data is not base64", f"{at}.data") from None
    raise invalid(f"{entry.label}: a PATCH resource is a Parameters or a Binary", at)


def entry_context(ctx: Context, entry: BundleEntry, content_type: str | None = None) -> Context:
    """The request an entry stands for: its query and its ``if…`` fields as headers."""
    headers: dict[str, str] = {}
    prefer = ctx.header("prefer")
    if prefer:
        headers["prefer"] = prefer
    for name, header in _HEADERS:
        value = entry.request_field(name)
        if value is not None:
            headers[header] = value
    since = entry.request_field("ifModifiedSince")
    if since is not None:
        try:
            headers["if-modified-since"] = http_date(since)
        except ValueError:
            raise invalid(
                f"{entry.label}: ifModifiedSince {since!r} is not an instant",
                f"{entry.where}.request.ifModifiedSince",
            ) from None
    if content_type is not None:
        headers["content-type"] = content_type
    return Context(ctx.store, ctx.settings, ctx.base_url, headers, entry.params)


def named(entry: BundleEntry, error: FhirError) -> FhirError:
    """The error with every issue naming the entry (diagnostics and expression)."""
    issues = [
        Issue(
            issue.code,
            issue.diagnostics
            if issue.diagnostics.startswith(entry.where)
            else f"{entry.label}: {issue.diagnostics}",
            issue.severity,
            _expressions(entry, issue.expression),
        )
        for issue in error.issues
    ]
    return FhirError(
        error.status,
        issues[0].code,
        issues[0].diagnostics,
        issues[0].expression,
        issues,
        dict(error.headers),
    )


def _expressions(entry: BundleEntry, expressions: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    type_ = (entry.resource or {}).get("resourceType")
    for expression in expressions:
        if expression.startswith("Bundle."):
            out.append(expression)
        elif type_ and (expression == type_ or expression.startswith(type_ + ".")):
            out.append(f"{entry.where}.resource" + expression[len(type_) :])
        else:
            out.append(f"{entry.where}.resource.{expression}")
    return tuple(out) or (entry.where,)


# -- response entries ----------------------------------------------------------------------


def status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def error_entry(error: FhirError) -> dict[str, Any]:
    return {"response": {"status": status_line(error.status), "outcome": error.outcome()}}


def from_response(result: FhirResponse, head: bool = False) -> dict[str, Any]:
    """A response entry from a single interaction's response (batch entries, GETs)."""
    response: dict[str, Any] = {"status": status_line(result.status)}
    location = result.headers.get("Location")
    if location:
        response["location"] = location
    if "ETag" in result.headers:
        response["etag"] = result.headers["ETag"]
    modified = result.headers.get("Last-Modified")
    if modified:
        response["lastModified"] = format_instant(parsedate_to_datetime(modified))
    entry: dict[str, Any] = {}
    if location and "/_history/" in location:
        entry["fullUrl"] = location.split("/_history/", 1)[0]
    body = result.body
    if isinstance(body, bytes) and not head:
        entry["resource"] = orjson.Fragment(body)
    elif isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        response["outcome"] = body
    elif isinstance(body, dict) and not head:
        entry["resource"] = body
    entry["response"] = response
    return entry


def from_stored(ctx: Context, stored: StoredVersion, status: int, message: str) -> dict[str, Any]:
    """A response entry for a version written (or found) by a transaction, shaped by
    ``Prefer: return=`` (https://hl7.org/fhir/R4/http.html#ops)."""
    response: dict[str, Any] = {
        "status": status_line(status),
        "location": ctx.url(stored.type, stored.id, "_history", str(stored.version)),
        "etag": f'W/"{stored.version}"',
        "lastModified": stored.last_updated,
    }
    entry: dict[str, Any] = {"fullUrl": ctx.url(stored.type, stored.id)}
    prefer = prefer_return(ctx.header("prefer"))
    if prefer == "representation" and stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    elif prefer == "OperationOutcome":
        response["outcome"] = informational(message)
    entry["response"] = response
    return entry


def informational(message: str) -> dict[str, Any]:
    return operation_outcome([Issue("informational", message, severity="information")])


def response_bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now_instant()},
        "type": f"{kind}-response",
        "entry": entries,
    }

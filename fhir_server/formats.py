"""Content types, ``_format`` and ``_pretty``: https://hl7.org/fhir/R4/http.html#mime-type

This server speaks FHIR JSON only. An XML (or other) request body is refused with 415,
a request that accepts only XML (or another unsupported format) with 406, each with an
OperationOutcome. The exception is a Binary's raw bytes: ``POST [base]/Binary`` (or
``PUT``) with the file's own ``Content-Type`` (and ``X-Security-Context``) stores them
as a Binary (:func:`binary_resource`).
"""

from __future__ import annotations

import base64

import orjson

from resources.errors import FhirError

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
_PATCH_KINDS = {JSON_PATCH: "json-patch", MERGE_PATCH: "merge-patch"}

_JSON_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir", "text/json"})
_ACCEPT_ANY = frozenset({"*/*", "application/*"})
_FORMAT_ALIASES = {
    "json": FHIR_JSON,
    "application/json": "application/json",
    "application/fhir+json": FHIR_JSON,
    "application/json+fhir": FHIR_JSON,
    "text/json": FHIR_JSON,
}


def _media_type(value: str) -> str:
    return value.split(";", 1)[0].strip().lower()


def request_body_kind(content_type: str | None, *, allow_json_patch: bool = False) -> str:
    """Classify a request Content-Type: ``"json"``, or with ``allow_json_patch`` (a PATCH
    body) also ``"json-patch"`` (RFC 6902) or ``"merge-patch"`` (RFC 7386); else raise 415.
    """
    if not content_type:
        return "json"
    media = _media_type(content_type)
    if media in _JSON_TYPES:
        return "json"
    if allow_json_patch and media in _PATCH_KINDS:
        return _PATCH_KINDS[media]
    if "xml" in media:
        raise FhirError(415, "not-supported", "XML is not supported; send application/fhir+json")
    accepted = f"{FHIR_JSON}, {JSON_PATCH} or {MERGE_PATCH}" if allow_json_patch else FHIR_JSON
    raise FhirError(415, "not-supported", f"Unsupported Content-Type {media!r}; send {accepted}")


def response_media_type(accept: str | None, format_param: str | None) -> str:
    """The media type of the response, from ``_format`` (which wins) or ``Accept``."""
    if format_param:
        media = _FORMAT_ALIASES.get(format_param.strip().lower())
        if media is None:
            raise FhirError(406, "not-supported", f"Unsupported _format {format_param!r}; use json")
        return media
    if not accept:
        return FHIR_JSON
    offered = [_media_type(part) for part in accept.split(",") if part.strip()]
    acceptable = [m for m in offered if m in _JSON_TYPES or m in _ACCEPT_ANY]
    if offered and not acceptable:
        raise FhirError(
            406, "not-supported", f"Cannot produce {accept!r}; this server returns FHIR JSON"
        )
    if acceptable and acceptable[0] == "application/json":
        return "application/json"
    return FHIR_JSON


def is_raw_upload(type_: str | None, content_type: str | None) -> bool:
    """Whether a create or update body is a Binary's raw bytes
    (https://hl7.org/fhir/R4/binary.html#rest): the type is Binary and the
    ``Content-Type`` is neither FHIR JSON nor XML."""
    if type_ != "Binary" or not content_type:
        return False
    media = _media_type(content_type)
    return media not in _JSON_TYPES and "xml" not in media


def binary_resource(
    content_type: str, data: bytes, security_context: str | None, id_: str | None = None
) -> bytes:
    """The FHIR JSON Binary of raw bytes sent with ``Content-Type`` (and the
    ``X-Security-Context`` header: a reference such as ``Patient/123``)."""
    binary: dict[str, str | dict[str, str]] = {"resourceType": "Binary"}
    if id_ is not None:
        binary["id"] = id_
    binary["contentType"] = content_type.strip()
    if security_context:
        binary["securityContext"] = {"reference": security_context.strip()}
    binary["data"] = base64.b64encode(data).decode("ascii")
    return orjson.dumps(binary)

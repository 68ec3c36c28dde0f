"""Content types, ``_format`` and ``_pretty``: https://hl7.org/fhir/R4/http.html#mime-type

This server speaks FHIR JSON only. An XML (or other) request body is refused with 415,
a request that accepts only XML (or another unsupported format) with 406, each with an
OperationOutcome.
"""

from __future__ import annotations

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

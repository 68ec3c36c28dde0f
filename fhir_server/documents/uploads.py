"""What a document upload may be (issue 20, "Documents"): its media type and its size.

A document's bytes are a Binary (https://hl7.org/fhir/R4/binary.html) whose
``contentType`` is one of :data:`UPLOAD_TYPES` (else ``415``) and whose decoded size is
at most ``FHIR_SERVER_UPLOAD_MAX_BYTES`` (else ``413``).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from resources.errors import FhirError, invalid

UPLOAD_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/heic", "text/plain"})
"""PDF, PNG, JPEG, HEIC and plain text (parameters such as ``charset`` aside)."""


def media_type(content_type: Any) -> str:
    """``text/plain; charset=utf-8`` -> ``text/plain`` ("" when not a string)."""
    if not isinstance(content_type, str):
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def check_type(content_type: Any, where: str) -> None:
    """415 unless ``content_type`` is one of :data:`UPLOAD_TYPES`."""
    if media_type(content_type) not in UPLOAD_TYPES:
        allowed = ", ".join(sorted(UPLOAD_TYPES))
        raise FhirError(
            415,
            "not-supported",
            f"A document of type {content_type!r} is not accepted; upload one of {allowed}",
            where,
        )


def check_size(size: int, limit: int, where: str) -> None:
    """413 when ``size`` bytes is more than ``limit``."""
    if size > limit:
        raise FhirError(
            413,
            "too-costly",
            f"The document is {size} bytes; at most {limit} bytes"
            " (FHIR_SERVER_UPLOAD_MAX_BYTES) are accepted",
            where,
        )


def decoded(data: Any, where: str) -> bytes:
    """The bytes of a base64Binary value (400 when it is not base64)."""
    if not isinstance(data, str):
        raise invalid("data must be a base64 string", where)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("data is not valid base64", where) from None


def check_upload(content_type: Any, data: Any, limit: int, where: str) -> bytes:
    """The bytes of an upload of ``content_type`` whose base64 ``data`` passes the
    checks (the size first: a too large upload is not decoded)."""
    check_type(content_type, f"{where}.contentType")
    if isinstance(data, str) and len(data) // 4 * 3 - 2 > limit:
        check_size(len(data) // 4 * 3 - data[-2:].count("="), limit, f"{where}.data")
    raw = decoded(data, f"{where}.data")
    check_size(len(raw), limit, f"{where}.data")
    return raw

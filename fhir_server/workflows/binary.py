"""Limits on uploaded files (Binary, https://hl7.org/fhir/R4/binary.html): the content
types a portal accepts and a size limit, checked on the decoded bytes when the Binary is
written (as FHIR JSON with base64 ``data``, or as raw bytes with their ``Content-Type``:
``fhir_server.formats.binary_from_raw``).

:func:`check_upload` is shared by the workflows that take files from patients: message
attachments (``fhir_server.workflows.messaging``, ``FHIR_SERVER_ATTACHMENT_MAX_BYTES``)
and documents (``FHIR_SERVER_UPLOAD_MAX_BYTES``). It has no rule of its own: each
workflow decides which Binaries are its uploads.
"""

from __future__ import annotations

from typing import Any

from resources.errors import FhirError

ALLOWED_CONTENT_TYPES = frozenset(
    {"application/pdf", "image/png", "image/jpeg", "image/heic", "text/plain"}
)
"""PDF, PNG, JPEG, HEIC and plain text."""

_PREFIX = "FHIR_SERVER_"


def media_type(content_type: Any) -> str:
    """``image/png`` of ``image/PNG; name=x`` ("" when absent)."""
    if not isinstance(content_type, str):
        return ""
    return content_type.split(";", 1)[0].strip().lower()


def decoded_size(data: Any) -> int:
    """The number of bytes base64 ``data`` decodes to (without decoding it)."""
    if not isinstance(data, str):
        return 0
    text = data.rstrip()
    length = len(text) - sum(c.isspace() for c in text)
    padding = len(text) - len(text.rstrip("="))
    return max(0, length * 3 // 4 - padding)


def setting_value(settings: Any, setting: str) -> Any:
    """The value of ``setting`` (``FHIR_SERVER_UPLOAD_MAX_BYTES`` or its field name) in
    ``settings``, or its default when there are none (bulk import)."""
    name = setting.removeprefix(_PREFIX).lower()
    if settings is not None:
        return getattr(settings, name)
    from fhir_server.config import Settings

    return Settings.model_fields[name].default


def check_upload(
    binary: dict[str, Any],
    settings: Any,
    setting: str,
    allowed: frozenset[str] | None = ALLOWED_CONTENT_TYPES,
) -> None:
    """Refuse the Binary ``binary`` whose content type is not ``allowed`` (``415``) or
    whose decoded data is larger than the setting ``setting`` (bytes, ``413``)."""
    kind = media_type(binary.get("contentType"))
    if allowed is not None and kind not in allowed:
        names = ", ".join(sorted(allowed))
        raise FhirError(
            415,
            "not-supported",
            f"Files of type {kind or '(none)'!r} are not accepted; send one of {names}",
            ("Binary.contentType",),
        )
    limit = int(setting_value(settings, setting))
    size = decoded_size(binary.get("data"))
    if size > limit:
        raise FhirError(
            413,
            "too-costly",
            f"The file is {size} bytes; the largest accepted is {limit} bytes ({setting})",
            ("Binary.data",),
        )

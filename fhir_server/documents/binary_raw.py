"""``GET [base]/Binary/[id]`` as the raw bytes (https://hl7.org/fhir/R4/binary.html#rest):
when the request's ``Accept`` names no FHIR format but the Binary's own content type (or
``type/*``), the answer is the Binary's bytes with that ``Content-Type``, as the
specification recommends; otherwise the Binary resource in FHIR JSON, as for any read.

The read is the ordinary one, through the caller's guarded store: a Binary is readable
by whoever may read its ``securityContext`` (the DocumentReference it is the content
of), so its bytes are too.
"""

from __future__ import annotations

import base64
import binascii

from starlette.responses import Response

from fhir_server.documents.uploads import media_type
from fhir_server.headers import FHIR_RESPONSE_HEADERS
from fhir_server.interactions.context import FhirResponse
from resources import fhir_json
from resources.compartments import SECURED_BY_CONTEXT
from resources.errors import FhirError


def wants_raw(code: str, type_: str | None) -> bool:
    """Whether a request whose ``Accept`` names no FHIR format may still be answered:
    a read of a Binary (its bytes, if their type is accepted)."""
    return code in ("read", "vread") and type_ == SECURED_BY_CONTEXT


def raw_binary(result: FhirResponse, accept: str | None) -> Response:
    """The Binary read as ``result``, as its bytes; ``406`` when ``accept`` does not take
    its content type."""
    headers = {**FHIR_RESPONSE_HEADERS, **result.headers}
    if result.body is None or result.status != 200:
        return Response(status_code=result.status, headers=headers)
    body = result.body
    binary = fhir_json.loads(body) if isinstance(body, bytes) else body
    content_type = binary.get("contentType")
    media = media_type(content_type)
    if not media or not _accepts(accept or "", media):
        raise FhirError(
            406,
            "not-supported",
            f"Binary/{binary.get('id')} is {content_type!r}, not what Accept asks for;"
            " ask for its content type or application/fhir+json",
        )
    try:
        data = base64.b64decode(binary.get("data") or "", validate=True)
    except (binascii.Error, ValueError):
        raise FhirError(500, "exception", "The stored Binary's data is not base64") from None
    headers["Content-Disposition"] = "attachment"
    return Response(content=data, status_code=200, headers=headers, media_type=content_type)


def _accepts(accept: str, media: str) -> bool:
    for part in accept.split(","):
        wanted = part.split(";", 1)[0].strip().lower()
        if wanted == media or (wanted.endswith("/*") and media.startswith(wanted[:-1])):
            return True
    return False

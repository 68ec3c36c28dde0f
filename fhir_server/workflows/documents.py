"""Document uploads (issue 20, "Documents"): a DocumentReference's content is a Binary
secured by it (https://hl7.org/fhir/R4/documentreference.html,
https://hl7.org/fhir/R4/binary.html#security).

On every create and update of a DocumentReference:

- an attachment with its bytes inline (``attachment.data``) is checked (media type one
  of :data:`~fhir_server.documents.uploads.UPLOAD_TYPES`, else ``415``; at most
  ``FHIR_SERVER_UPLOAD_MAX_BYTES``, else ``413``), its bytes move into a new Binary
  (``securityContext`` the DocumentReference) written in the same transaction, and the
  attachment is rewritten to refer to it (``url`` ``Binary/id``, with ``size`` and
  ``hash``);
- an attachment whose ``url`` is a Binary written by the same request (a transaction of
  Binary + DocumentReference, the ``urn:uuid`` resolved) is checked alike, and that
  Binary's ``securityContext`` becomes the DocumentReference: whoever may read the
  DocumentReference may download it.

On bulk import (an EHR's record) nothing is refused or moved: the data is kept as sent.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from fhir_server.config import Settings
from fhir_server.documents.uploads import check_size, check_type, check_upload, decoded
from fhir_server.workflows.base import Change, Transaction, decode, rule

_DEFAULT_LIMIT = Settings.model_fields["upload_max_bytes"].default


def upload_limit(tx: Transaction) -> int:
    """``FHIR_SERVER_UPLOAD_MAX_BYTES`` of the server the request came to."""
    settings = getattr(tx, "settings", None)
    return getattr(settings, "upload_max_bytes", None) or _DEFAULT_LIMIT


@rule("DocumentReference")
async def document_content(tx: Transaction, change: Change) -> None:
    """Check a DocumentReference's attachments and keep their bytes in Binaries."""
    resource = change.resource
    if resource is None or tx.origin == "import":
        return
    contents = resource.get("content")
    if not isinstance(contents, list):
        return
    limit = upload_limit(tx)
    binaries = _binaries_written(tx)
    rewritten: list[Any] = []
    changed = False
    for index, content in enumerate(contents):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        where = f"DocumentReference.content[{index}].attachment"
        if not isinstance(attachment, dict):
            rewritten.append(content)
            continue
        if "data" in attachment:
            moved = _move_inline(tx, change, attachment, limit, where)
            rewritten.append({**content, "attachment": moved})
            changed = True
            continue
        url = attachment.get("url")
        binary = binaries.get(url) if isinstance(url, str) else None
        if binary is not None:
            _secure(binary, change, limit, where)
        rewritten.append(content)
    if changed:
        change.set({**resource, "content": rewritten})


def _move_inline(
    tx: Transaction, change: Change, attachment: dict[str, Any], limit: int, where: str
) -> dict[str, Any]:
    content_type = attachment.get("contentType")
    raw = check_upload(content_type, attachment["data"], limit, where)
    reference = tx.create(
        {
            "resourceType": "Binary",
            "contentType": content_type,
            "securityContext": {"reference": change.reference},
            "data": attachment["data"],
        }
    )
    moved = {key: value for key, value in attachment.items() if key != "data"}
    moved["url"] = reference
    moved["size"] = len(raw)
    moved["hash"] = base64.b64encode(hashlib.sha1(raw).digest()).decode()
    return moved


def _binaries_written(tx: Transaction) -> dict[str, Change]:
    """``Binary/id`` -> the change of each Binary the request creates or updates."""
    return {
        change.reference: change
        for change in tx.changing(("Binary",))
        if change.request.method != "delete"
    }


def _secure(binary: Change, document: Change, limit: int, where: str) -> None:
    """Check the Binary uploaded with ``document`` and secure it by the document."""
    content = binary.resource if binary.resource is not None else decode(binary.request)
    if content is None:
        return
    check_type(content.get("contentType"), f"{where} (Binary.contentType)")
    data = content.get("data")
    if data is not None:
        check_size(len(decoded(data, "Binary.data")), limit, f"{where} (Binary.data)")
    context = {"reference": document.reference}
    if content.get("securityContext") != context:
        binary.set({**content, "securityContext": context})

"""JSON Merge Patch (RFC 7386) of a FHIR resource.

https://www.rfc-editor.org/rfc/rfc7386 (``application/merge-patch+json``), the patch kind
fhirpy's ``patch()`` sends; FHIR's own patch kinds are at https://hl7.org/fhir/R4/http.html#patch.

The patch is a JSON object read member by member: ``null`` removes the member, an object
is merged into the member recursively, anything else (arrays included) replaces the member
whole. One FHIR rule is added to RFC 7386: an element that the patch's ``null``s leave
with no content is removed (``{"text": {"div": null, "status": null}}`` removes ``text``),
because FHIR JSON does not allow empty objects (https://hl7.org/fhir/R4/json.html) and an
element without content is the same as an absent one. An empty object the patch itself
gives (``{"text": {}}`` where there was no text) stays, for validation to refuse.

The patch works on the JSON, as the RFC says: ``{"birthDate": null}`` removes
``birthDate`` and leaves a ``_birthDate`` (its extensions) alone. Whether the result is a
valid resource (and keeps its ``resourceType`` and ``id``) is the caller's check, as for
every write.
"""

from __future__ import annotations

import copy
from typing import Any

from resources.errors import invalid

__all__ = ["apply_merge_patch", "check_merge_patch"]


def check_merge_patch(document: Any) -> dict[str, Any]:
    """The patch document, which must be a JSON object: 400 ``invalid`` otherwise.

    (RFC 7386 lets any other JSON value replace the whole target; a resource can only be
    replaced by a resource, which is an update, so it is refused here.)
    """
    if not isinstance(document, dict):
        raise invalid(
            "A JSON Merge Patch body must be a JSON object"
            " (use application/json-patch+json for a JSON Patch array of operations)"
        )
    return document


def apply_merge_patch(resource: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with ``patch`` merged in (RFC 7386 section 2); neither input is changed."""
    return _merge(resource, check_merge_patch(patch))


def _merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            existing = result.get(key)
            merged = _merge(existing if isinstance(existing, dict) else {}, value)
            if merged or not value:
                result[key] = merged
            else:  # the patch's nulls left it with no content
                result.pop(key, None)
        else:
            result[key] = copy.deepcopy(value)
    return result

"""patch: https://hl7.org/fhir/R4/http.html#patch

Three formats, by Content-Type: JSON Patch (RFC 6902, ``application/json-patch+json``),
JSON Merge Patch (RFC 7386, ``application/merge-patch+json``;
``resources.json_merge_patch``) and FHIRPath Patch
(https://hl7.org/fhir/R4/fhirpatch.html, a ``Parameters`` resource as FHIR JSON). A body
sent as plain JSON (``application/json``, ``application/fhir+json``) that is an object
but not a ``Parameters`` resource cannot be a FHIRPath Patch and is read as a JSON Merge
Patch: that is what fhirpy's ``patch()`` and ``save(fields=...)`` send (the changed
members, as ``application/json``). The patch is applied to the current version, may not
change the ``resourceType`` or ``id``, the result is validated like any write, and stored
with a compare-and-set on the version it was computed from (or the one ``If-Match``
names), so concurrent writes are never lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonpatch
import jsonpointer

from fhir_server.formats import request_body_kind
from fhir_server.headers import parse_etag_version
from fhir_server.interactions.context import Context, FhirResponse, check_id
from fhir_server.interactions.write import (
    check_valid,
    content_builder,
    describe,
    index_entries,
    write_response,
)
from fhir_server.storage.base import StoredVersion, VersionConflict, WriteRequest
from resources import fhir_json
from resources.definitions import element_repeats
from resources.errors import FhirError, gone, invalid, not_found, precondition_failed
from resources.fhirpath_patch import apply_fhirpath_patch
from resources.json_merge_patch import apply_merge_patch, check_merge_patch

_ATTEMPTS = 8

Patcher = Callable[[dict[str, Any]], dict[str, Any]]
"""Applies one parsed patch document to a resource, returning the patched copy."""


async def patch(ctx: Context, type_: str, id_: str, body: bytes) -> FhirResponse:
    check_id(id_)
    apply = patcher(ctx.header("content-type"), body)
    if_match_header = ctx.header("if-match")
    if_match = parse_etag_version(if_match_header, "If-Match") if if_match_header else None
    for _ in range(_ATTEMPTS):
        current = await current_version(ctx, type_, id_)
        if if_match is not None and current.version != if_match:
            raise _conflict(type_, id_, if_match_header, current.version)
        assert current.content is not None
        patched = apply(fhir_json.loads_resource(current.content))
        check_identity(patched, type_, id_)
        check_valid(patched)
        request = WriteRequest(
            type_,
            id_,
            "patch",
            content_builder(patched, id_),
            if_match=current.version,
            index=index_entries(patched, id_),
        )
        try:
            result = await ctx.store.write(request)
        except VersionConflict as conflict:
            if if_match is not None:
                raise _conflict(type_, id_, if_match_header, conflict.current) from None
            continue  # someone wrote in between: patch the newer version
        assert result.stored is not None
        return write_response(ctx, result, 200, f"Patched {describe(result.stored)}")
    raise FhirError(409, "conflict", f"{type_}/{id_} changed too often to patch; try again")


async def current_version(ctx: Context, type_: str, id_: str) -> StoredVersion:
    stored = await ctx.store.read(type_, id_)
    if stored is None:
        raise not_found(f"{type_}/{id_} is not known")
    if stored.deleted:
        raise gone(f"{type_}/{id_} was deleted")
    return stored


def _conflict(type_: str, id_: str, header: str | None, current: int | None) -> FhirError:
    return precondition_failed(
        f"If-Match {header} does not match the current version of {type_}/{id_} ({current})"
    )


def patcher(content_type: str | None, body: bytes) -> Patcher:
    """The patcher for a patch document sent with ``content_type``: JSON Patch or JSON
    Merge Patch by their media types; as plain JSON, FHIRPath Patch for a ``Parameters``
    resource and JSON Merge Patch for any other object (else 415; not JSON, 400)."""
    kind = request_body_kind(content_type, allow_json_patch=True)
    document = fhir_json.loads(body)
    if kind == "json-patch":
        return json_patcher(document)
    if kind == "merge-patch" or _merge_patch_as_json(document):
        return merge_patcher(document)
    return fhirpath_patcher(document)


def _merge_patch_as_json(document: Any) -> bool:
    return isinstance(document, dict) and document.get("resourceType") != "Parameters"


def json_patcher(document: Any) -> Patcher:
    if not isinstance(document, list):
        raise invalid("A JSON Patch body must be a JSON array of operations")
    try:
        patch_ = jsonpatch.JsonPatch(document)
    except (jsonpatch.InvalidJsonPatch, jsonpointer.JsonPointerException, TypeError) as exc:
        # a pointer not starting with "/" fails here, before any resource is read
        raise invalid(f"Invalid JSON Patch: {exc}") from None

    def apply(resource: dict[str, Any]) -> dict[str, Any]:
        try:
            result = patch_.apply(resource)
        except jsonpatch.JsonPatchTestFailed as exc:
            raise FhirError(422, "processing", f"JSON Patch test failed: {exc}") from None
        except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
            raise FhirError(422, "processing", f"JSON Patch cannot be applied: {exc}") from None
        except (TypeError, ValueError, KeyError, IndexError) as exc:
            raise invalid(f"Invalid JSON Patch: {exc}") from None
        if not isinstance(result, dict):
            raise FhirError(422, "processing", "JSON Patch result is not a resource")
        return result

    return apply


def merge_patcher(document: Any) -> Patcher:
    """JSON Merge Patch (RFC 7386): the document must be a JSON object (else 400)."""
    patch_ = check_merge_patch(document)

    def apply(resource: dict[str, Any]) -> dict[str, Any]:
        return apply_merge_patch(resource, patch_)

    return apply


def fhirpath_patcher(document: Any) -> Patcher:
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise invalid(
            "A PATCH body sent as FHIR JSON must be a Parameters resource (FHIRPath Patch)"
            " or an object (JSON Merge Patch); send a JSON Patch array as"
            " application/json-patch+json"
        )

    def apply(resource: dict[str, Any]) -> dict[str, Any]:
        return apply_fhirpath_patch(resource, document, repeats=element_repeats)

    return apply


def check_identity(patched: dict[str, Any], type_: str, id_: str) -> None:
    if patched.get("resourceType") != type_:
        raise FhirError(
            422, "processing", "A patch may not change the resourceType", ("resourceType",)
        )
    if patched.get("id") != id_:
        raise FhirError(422, "processing", "A patch may not change the id", ("id",))

"""delete: https://hl7.org/fhir/R4/http.html#delete

A delete writes a tombstone version; reads then give 410 and history keeps it. Deleting
something already deleted, or never stored, succeeds without a new version, as the spec
allows. ``If-Match`` makes the delete conditional on the current version.
"""

from __future__ import annotations

from fhir_server.headers import etag, parse_etag_version, prefer_return
from fhir_server.interactions.context import Context, FhirResponse, check_id
from fhir_server.storage.base import VersionConflict, WriteRequest
from resources.errors import Issue, operation_outcome, precondition_failed


async def delete(ctx: Context, type_: str, id_: str) -> FhirResponse:
    check_id(id_)
    if_match = ctx.header("if-match")
    request = WriteRequest(
        type_,
        id_,
        "delete",
        if_match=parse_etag_version(if_match, "If-Match") if if_match else None,
    )
    try:
        result = await ctx.store.write(request)
    except VersionConflict:
        raise precondition_failed(
            f"If-Match {if_match} does not match the current version of {type_}/{id_}"
        ) from None
    headers = {"ETag": etag(result.stored.version)} if result.stored else {}
    if prefer_return(ctx.header("prefer")) == "minimal":
        return FhirResponse(204, None, headers)
    if result.changed:
        message = f"Deleted {type_}/{id_}"
    elif result.stored is not None:
        message = f"{type_}/{id_} was already deleted"
    else:
        message = f"{type_}/{id_} does not exist; nothing to delete"
    outcome = operation_outcome([Issue("informational", message, severity="information")])
    return FhirResponse(200, outcome, headers)

"""update: https://hl7.org/fhir/R4/http.html#update

The body's id must equal the id in the URL. Update-as-create: a client-chosen id that is
not yet stored (or was deleted) is created (201). ``If-Match`` is an atomic
compare-and-set on the current version (https://hl7.org/fhir/R4/http.html#concurrency).
"""

from __future__ import annotations

from fhir_server.headers import parse_etag_version
from fhir_server.interactions.context import Context, FhirResponse, check_id
from fhir_server.interactions.write import (
    check_valid,
    content_builder,
    describe,
    index_entries,
    parse_body,
    write_response,
)
from fhir_server.storage.base import VersionConflict, WriteRequest
from resources.errors import invalid, precondition_failed


async def update(ctx: Context, type_: str, id_: str, body: bytes) -> FhirResponse:
    check_id(id_)
    resource = parse_body(body, type_)
    body_id = resource.get("id")
    if body_id is None:
        raise invalid(f"The resource has no id; it must be {id_!r} as in the URL", "id")
    if body_id != id_:
        raise invalid(f"The resource id {body_id!r} does not match the URL id {id_!r}", "id")
    check_valid(resource)
    if_match = ctx.header("if-match")
    request = WriteRequest(
        type_,
        id_,
        "update",
        content_builder(resource, id_),
        if_match=parse_etag_version(if_match, "If-Match") if if_match else None,
        index=index_entries(resource, id_),
    )
    try:
        result = await ctx.store.write(request)
    except VersionConflict as conflict:
        raise precondition_failed(
            f"If-Match {if_match} does not match the current version of {type_}/{id_}"
            f" ({conflict.current if conflict.current is not None else 'none'})"
        ) from None
    assert result.stored is not None
    if result.created:
        return write_response(ctx, result, 201, f"Created {describe(result.stored)}")
    return write_response(ctx, result, 200, f"Updated {describe(result.stored)}")

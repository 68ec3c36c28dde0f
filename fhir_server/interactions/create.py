"""create: https://hl7.org/fhir/R4/http.html#create

The server assigns the id (any id in the body is ignored, as the spec says) and answers
201 with Location, ETag and Last-Modified. With ``If-None-Exist``, or search criteria in
the query (``POST [type]?identifier=…``, fhirpy's ``get_or_create``), it is a conditional
create (see ``conditional``): the query is never ignored.
"""

from __future__ import annotations

from urllib.parse import urlencode

from fhir_server.interactions.conditional import conditional_create, create_criteria
from fhir_server.interactions.context import Context, FhirResponse
from fhir_server.interactions.write import (
    check_valid,
    create_request,
    describe,
    parse_body,
    write_response,
)
from fhir_server.storage.base import AlreadyExists


async def create(ctx: Context, type_: str, body: bytes) -> FhirResponse:
    # readable in messages (":/|," unescaped); parse_qsl reads it back the same
    query = urlencode(ctx.params, safe=":/|,") if ctx.params else ""
    if_none_exist = create_criteria(ctx.header("if-none-exist"), query)
    if if_none_exist:
        return await conditional_create(ctx, type_, body, if_none_exist)
    resource = parse_body(body, type_)
    resource.pop("id", None)
    check_valid(resource)
    for _ in range(3):
        request = create_request(resource)
        try:
            result = await ctx.store.write(request)
        except AlreadyExists:  # pragma: no cover - a uuid4 collision
            continue
        assert result.stored is not None
        return write_response(ctx, result, 201, f"Created {describe(result.stored)}")
    raise RuntimeError("could not allocate a new id")

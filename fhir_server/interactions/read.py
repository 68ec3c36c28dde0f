"""read and vread: https://hl7.org/fhir/R4/http.html#read and
https://hl7.org/fhir/R4/http.html#vread, with conditional read
(https://hl7.org/fhir/R4/http.html#cread): ``If-None-Match`` and ``If-Modified-Since``
give 304. Stored bytes are returned as they are.
"""

from __future__ import annotations

from fhir_server.headers import etag, etag_matches_any, http_date, not_modified_since
from fhir_server.interactions.context import Context, FhirResponse, check_id
from fhir_server.storage.base import StoredVersion
from resources.errors import gone, not_found


async def read(ctx: Context, type_: str, id_: str) -> FhirResponse:
    check_id(id_)
    stored = await ctx.store.read(type_, id_)
    if stored is None:
        raise not_found(f"{type_}/{id_} is not known")
    return _respond(ctx, stored)


async def vread(ctx: Context, type_: str, id_: str, version_id: str) -> FhirResponse:
    check_id(id_)
    stored = None
    if version_id.isdigit():
        stored = await ctx.store.vread(type_, id_, int(version_id))
    if stored is None:
        raise not_found(f"{type_}/{id_} has no version {version_id!r}")
    return _respond(ctx, stored)


def _respond(ctx: Context, stored: StoredVersion) -> FhirResponse:
    headers = {"ETag": etag(stored.version), "Last-Modified": http_date(stored.last_updated)}
    if stored.deleted:
        error = gone(f"{stored.type}/{stored.id} was deleted (version {stored.version})")
        error.headers.update(headers)
        raise error
    if _not_modified(ctx, stored):
        return FhirResponse(304, None, headers)
    return FhirResponse(200, stored.content, headers)


def _not_modified(ctx: Context, stored: StoredVersion) -> bool:
    if_none_match = ctx.header("if-none-match")
    if if_none_match is not None:
        return etag_matches_any(if_none_match, stored.version)
    if_modified_since = ctx.header("if-modified-since")
    if if_modified_since is not None:
        return not_modified_since(if_modified_since, stored.last_updated)
    return False

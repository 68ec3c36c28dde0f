"""Conditional create, update, patch and delete: https://hl7.org/fhir/R4/http.html#ccreate,
https://hl7.org/fhir/R4/http.html#cond-update, https://hl7.org/fhir/R4/http.html#cdelete

``POST [type]?criteria`` (fhirpy's ``get_or_create``; a ``POST`` entry of a batch or
transaction whose ``request.url`` is ``Patient?identifier=…``) is a conditional create
too: the query is read as ``If-None-Exist`` would be, never ignored. The general
parameters (``_format``, ``_pretty``, ``_summary``, ``_elements``) are not criteria; a
query and an ``If-None-Exist`` (``ifNoneExist``) together must be the same criteria.

The criteria are a search on the type (parsed strictly: an unknown parameter must not
silently widen what is replaced or deleted). Conditional create checks the criteria in
the same store transaction as the write, so two concurrent conditional creates with the
same criteria cannot both create.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus, urlencode

from fhir_server.interactions.context import Context, FhirResponse, version_headers
from fhir_server.interactions.delete import delete
from fhir_server.interactions.patch import patch
from fhir_server.interactions.update import update
from fhir_server.interactions.write import (
    check_valid,
    create_request,
    describe,
    parse_body,
    write_response,
)
from fhir_server.storage.base import ConditionMatched, StoredVersion
from resources import fhir_json
from resources.errors import FhirError, Issue, invalid, operation_outcome
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery
from resources.terminology import value_set_codes


def criteria(ctx: Context, type_: str, items: list[tuple[str, str]]) -> SearchQuery:
    """The search that selects the target of a conditional interaction."""
    items = [(k, v) for k, v in items if k not in ("_format", "_pretty")]
    query = parse_search(
        [type_],
        items,
        strict=True,
        params_for=search_params,
        max_count=ctx.settings.max_page_size,
        default_count=ctx.settings.default_page_size,
        value_set=value_set_codes,
    )
    if not query.conditions:
        raise invalid("A conditional interaction needs search criteria", "url")
    return query


GENERAL_PARAMETERS = frozenset({"_format", "_pretty", "_summary", "_elements"})
"""The parameters every interaction takes (https://hl7.org/fhir/R4/http.html#parameters):
never the criteria of a conditional create."""


def create_criteria(header: str | None, query: str, url: str = "url") -> str | None:
    """The criteria of a create (https://hl7.org/fhir/R4/http.html#ccreate), None for a
    plain one: ``If-None-Exist`` (``header``), or the ``query`` string of ``POST
    [type]?criteria`` read the same way. Both at once must be the same criteria (the
    same parameters and values, in any order): 400 otherwise, naming ``url``."""
    fields = [
        field
        for field in query.lstrip("?").split("&")
        if field and unquote_plus(field.partition("=")[0]) not in GENERAL_PARAMETERS
    ]
    if not fields:
        return header or None
    text = "&".join(fields)
    if header and _normal(header) != _normal(text):
        raise invalid(
            f"The query of this create ({text}) and If-None-Exist ({header}) are different"
            " criteria; a conditional create takes one set of criteria (either alone, or"
            " both the same)",
            url,
        )
    return text


def _normal(criteria_text: str) -> list[tuple[str, str]]:
    return sorted(parse_qsl(criteria_text.lstrip("?"), keep_blank_values=True))


async def matches(ctx: Context, query: SearchQuery, limit: int) -> list[StoredVersion]:
    page = await ctx.store.search(query, None, limit, False)
    return page.entries


async def conditional_create(ctx: Context, type_: str, body: bytes, header: str) -> FhirResponse:
    """``If-None-Exist``: 0 matches create, 1 returns it (200), several give 412."""
    query = criteria(ctx, type_, parse_qsl(header.lstrip("?"), keep_blank_values=True))
    resource = parse_body(body, type_)
    resource.pop("id", None)
    check_valid(resource)
    request = create_request(resource, unless_exists=query)
    try:
        result = await ctx.store.write(request)
    except ConditionMatched as matched:
        if len(matched.matches) > 1:
            raise _many(f"the conditional create criteria ({header})") from None
        found = matched.matches[0]
        return FhirResponse(200, found.content, version_headers(ctx, found))
    assert result.stored is not None
    return write_response(ctx, result, 201, f"Created {describe(result.stored)}")


async def conditional_update(ctx: Context, type_: str, body: bytes) -> FhirResponse:
    query = criteria(ctx, type_, list(ctx.params))
    found = await matches(ctx, query, 2)
    if len(found) > 1:
        raise _many("the conditional update criteria")
    resource = parse_body(body, type_)
    body_id = resource.get("id")
    if found:
        target = found[0].id
        if body_id is not None and body_id != target:
            raise invalid(
                f"The resource id {body_id!r} differs from the matching resource {target!r}",
                "id",
            )
        return await update(ctx, type_, target, body if body_id else _with_id(resource, target))
    if body_id is not None:
        return await update(ctx, type_, body_id, body)
    return await conditional_create(ctx, type_, body, _query_string(ctx))


async def conditional_patch(ctx: Context, type_: str, body: bytes) -> FhirResponse:
    query = criteria(ctx, type_, list(ctx.params))
    found = await matches(ctx, query, 2)
    if not found:
        raise FhirError(404, "not-found", f"No {type_} matches the conditional patch criteria")
    if len(found) > 1:
        raise _many("the conditional patch criteria")
    return await patch(ctx, type_, found[0].id, body)


async def conditional_delete(ctx: Context, type_: str) -> FhirResponse:
    """Deletes every match, up to ``conditional_delete_max``; more give 412."""
    query = criteria(ctx, type_, list(ctx.params))
    limit = ctx.settings.conditional_delete_max
    found = await matches(ctx, query, limit + 1)
    if len(found) > limit:
        raise FhirError(
            412,
            "too-costly",
            f"More than {limit} {type_} resources match; refine the criteria"
            " (the limit is the setting conditional_delete_max)",
        )
    for stored in found:
        await delete(ctx, type_, stored.id)
    message = (
        f"Deleted {len(found)} {type_} resource(s): " + ", ".join(s.id for s in found)
        if found
        else f"No {type_} matched; nothing deleted"
    )
    outcome = operation_outcome([Issue("informational", message, severity="information")])
    return FhirResponse(200, outcome)


def _many(what: str) -> FhirError:
    return FhirError(412, "multiple-matches", f"More than one resource matches {what}")


def _with_id(resource: dict, id_: str) -> bytes:
    return fhir_json.dumps({**resource, "id": id_})


def _query_string(ctx: Context) -> str:
    return urlencode(ctx.params)

"""search at type, system and compartment level: https://hl7.org/fhir/R4/http.html#search
and https://hl7.org/fhir/R4/search.html

The parameters are parsed into the query IR, the store compiles it, and the ``searchset``
Bundle is built from stored bytes, with ``self`` (only the parameters that were applied),
``first``, ``next`` and ``previous`` links carrying a keyset cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from capability.support import support_table
from fhir_server.headers import prefer_handling
from fhir_server.interactions.context import (
    Context,
    FhirResponse,
    bundle_id,
    check_id,
    query_string,
)
from fhir_server.interactions.subsetting import subset
from fhir_server.storage.base import StoredVersion, now_instant
from fhir_server.storage.search_page import Cursor, SearchPage
from resources.compartments import compartment_params
from resources.errors import FhirError, Issue, invalid, operation_outcome
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import (
    AnyOf,
    ChainClause,
    Clause,
    Condition,
    HasClause,
    IdClause,
    Match,
    ReferenceMatch,
    SearchQuery,
)
from resources.terminology import value_set_codes

_ACCURATE_BY_DEFAULT = True


async def search_type(ctx: Context, type_: str, body: bytes | None = None) -> FhirResponse:
    items = _items(ctx, body)
    if any(name == "_query" for name, _ in items):  # a named query (_query=inbox)
        from fhir_server.interactions.named_query import named_query

        return await named_query(ctx, type_, items)
    return await run(ctx, [type_], items, type_)


async def search_system(ctx: Context, body: bytes | None = None) -> FhirResponse:
    items = _items(ctx, body)
    requested = [v for k, v in items if k == "_type"]
    supported = support_table().types
    if requested:
        types = [t.strip() for value in requested for t in value.split(",") if t.strip()]
        unknown = [t for t in types if t not in supported]
        if unknown:
            raise invalid(f"_type names unknown resource types: {', '.join(unknown)}", "_type")
    else:
        types = sorted(supported)
    rest = [(k, v) for k, v in items if k != "_type"]
    applied_type = [("_type", ",".join(types))] if requested else []
    return await run(ctx, types, rest, "", prefix_applied=applied_type)


async def search_compartment(
    ctx: Context, compartment: str, id_: str, type_: str, body: bytes | None = None
) -> FhirResponse:
    """``GET [base]/Patient/123/Observation``: the type's resources in that compartment."""
    check_id(id_)
    condition = compartment_condition(compartment, id_, type_)
    path = f"{compartment}/{id_}/{type_}"
    return await run(ctx, [type_], _items(ctx, body), path, extra=[condition])


def compartment_condition(compartment: str, id_: str, type_: str) -> Condition:
    """Membership of a ``type_`` resource in the compartment of ``compartment/id_``
    (https://hl7.org/fhir/R4/compartmentdefinition.html)."""
    codes = compartment_params(compartment, type_)
    if not codes:
        raise FhirError(404, "not-found", f"{type_} is not in the {compartment} compartment")
    params = search_params(type_)
    conditions: list[Condition] = []
    for code in codes:
        if code == "{def}":
            if type_ == compartment:
                conditions.append(IdClause((id_,)))
            continue
        param = params.get(code)
        if param is not None:
            match = ReferenceMatch(target_type=compartment, target_id=id_)
            conditions.append(Clause(param, (match,)))
    return AnyOf(tuple(conditions))


def _local(cond: Condition, base: str) -> Condition:
    """References given as absolute URLs on this server match ``Type/id`` references."""
    if isinstance(cond, Clause):
        if cond.param.type != "reference":
            return cond
        values = tuple(_local_match(v, base) for v in cond.values)
        if all(new is old for new, old in zip(values, cond.values, strict=True)):
            return cond
        return replace(cond, values=values)
    if isinstance(cond, ChainClause | HasClause):
        return replace(cond, inner=_local(cond.inner, base))
    if isinstance(cond, AnyOf):
        return AnyOf(tuple(_local(c, base) for c in cond.conditions))
    return cond


def _local_match(match: Match, base: str) -> Match:
    if isinstance(match, ReferenceMatch) and match.url and match.url.startswith(base):
        parts = match.url[len(base) :].split("/")
        if len(parts) in (2, 4) and (len(parts) == 2 or parts[2] == "_history"):
            version = parts[3] if len(parts) == 4 else None
            return ReferenceMatch(target_type=parts[0], target_id=parts[1], version=version)
    return match


def _items(ctx: Context, body: bytes | None) -> list[tuple[str, str]]:
    items = list(ctx.params)
    if body:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise invalid("The search form body is not UTF-8") from None
        items += parse_qsl(text, keep_blank_values=True)
    return items


async def run(
    ctx: Context,
    types: Sequence[str],
    items: list[tuple[str, str]],
    path: str,
    *,
    extra: Sequence[Condition] = (),
    prefix_applied: Sequence[tuple[str, str]] = (),
) -> FhirResponse:
    query = parse_search(
        types,
        items,
        strict=prefer_handling(ctx.header("prefer")) == "strict",
        params_for=search_params,
        max_count=ctx.settings.max_page_size,
        default_count=ctx.settings.default_page_size,
        value_set=value_set_codes,
    )
    query.conditions[:] = [_local(c, ctx.base_url + "/") for c in query.conditions]
    query.conditions.extend(extra)
    cursor = Cursor.decode(query.cursor) if query.cursor else None
    count = query.count if query.count is not None else ctx.settings.default_page_size
    if query.summary == "count":
        count = 0
    with_total = query.total in ("accurate", "estimate") or (
        query.total is None and (_ACCURATE_BY_DEFAULT or query.summary == "count")
    )
    page = await ctx.store.search(query, cursor, count, with_total)
    applied = [*prefix_applied, *query.applied]
    return FhirResponse(200, _bundle(ctx, query, page, path, applied, cursor))


def _bundle(
    ctx: Context,
    query: SearchQuery,
    page: SearchPage,
    path: str,
    applied: list[tuple[str, str]],
    cursor: Cursor | None,
) -> dict[str, Any]:
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "searchset",
    }
    if page.total is not None:
        bundle["total"] = page.total
    bundle["link"] = _links(ctx, path, applied, page, cursor)
    entries = [_entry(ctx, query, stored, "match") for stored in page.entries]
    entries += [_entry(ctx, query, stored, "include") for stored in page.included]
    if query.ignored:
        entries.append(_ignored_outcome(query.ignored))
    if entries:
        bundle["entry"] = entries
    return bundle


def _links(
    ctx: Context,
    path: str,
    applied: list[tuple[str, str]],
    page: SearchPage,
    cursor: Cursor | None,
) -> list[dict[str, str]]:
    def url(c: Cursor | None) -> str:
        params = [*applied, *([("_cursor", c.encode())] if c is not None else [])]
        base = ctx.url(path) if path else ctx.base_url
        return f"{base}?{query_string(params)}" if params else base

    links = [{"relation": "self", "url": url(cursor)}]
    if cursor is not None:
        links.append({"relation": "first", "url": url(None)})
    if page.prev_cursor is not None:
        links.append({"relation": "previous", "url": url(page.prev_cursor)})
    if page.next_cursor is not None:
        links.append({"relation": "next", "url": url(page.next_cursor)})
    return links


def _entry(ctx: Context, query: SearchQuery, stored: StoredVersion, mode: str) -> dict[str, Any]:
    assert stored.content is not None
    content = stored.content
    if query.summary in ("true", "text", "data") or query.elements:
        content = subset(content, stored.type, query.summary, query.elements)
    return {
        "fullUrl": ctx.url(stored.type, stored.id),
        "resource": orjson.Fragment(content),
        "search": {"mode": mode},
    }


def _ignored_outcome(ignored: list[tuple[str, str]]) -> dict[str, Any]:
    names = ", ".join(sorted({name for name, _ in ignored}))
    issue = Issue(
        "not-supported",
        f"Unknown or unsupported search parameters were ignored: {names}",
        severity="warning",
    )
    return {"resource": operation_outcome([issue]), "search": {"mode": "outcome"}}

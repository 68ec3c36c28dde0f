"""batch: https://hl7.org/fhir/R4/http.html#transaction (and
https://hl7.org/fhir/R4/bundle.html#transaction)

Each entry of a ``batch`` Bundle is processed on its own, by the same interaction that
would serve it as a single HTTP request, and gets its own ``response`` (status, location,
etag, lastModified, and an ``outcome`` when it failed); one failing entry does not affect
the others. Conditional references (``Patient?identifier=…``) in an entry's resource are
resolved for that entry. Also the dispatcher of a transaction's GET and HEAD entries.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from capability.support import support_table
from fhir_server.failures import unexpected_failure
from fhir_server.interactions.bundle_entries import (
    BundleEntry,
    entry_context,
    error_entry,
    from_response,
    named,
    parse_entry,
    patch_body,
)
from fhir_server.interactions.capabilities import capabilities
from fhir_server.interactions.conditional import (
    conditional_delete,
    conditional_patch,
    conditional_update,
    criteria,
    matches,
)
from fhir_server.interactions.context import Context, FhirResponse
from fhir_server.interactions.create import create
from fhir_server.interactions.delete import delete
from fhir_server.interactions.history import history
from fhir_server.interactions.patch import patch
from fhir_server.interactions.read import read, vread
from fhir_server.interactions.references import (
    conditional_reference,
    is_placeholder,
    iter_references,
    rewrite_references,
)
from fhir_server.interactions.search import search_compartment, search_system, search_type
from fhir_server.interactions.update import update
from resources import fhir_json
from resources.definitions import RESOURCE_TYPES
from resources.errors import FhirError, invalid


async def batch(ctx: Context, raw_entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The response entries of a batch, one per request entry, in the same order."""
    out: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = parse_entry(ctx, index, raw)
            out.append(from_response(await _process(ctx, entry), entry.method == "HEAD"))
        except FhirError as error:
            out.append(error_entry(error))
        except Exception as failure:
            out.append(error_entry(unexpected_failure(failure, f"batch entry {index}")))
    return out


async def _process(ctx: Context, entry: BundleEntry) -> FhirResponse:
    if entry.resource is not None and entry.method in ("POST", "PUT"):
        await resolve_conditional_references(ctx, entry)
    return await dispatch(ctx, entry)


async def resolve_conditional_references(ctx: Context, entry: BundleEntry) -> None:
    """Rewrite each ``Type?criteria`` reference of the entry's resource to the one match."""
    resolved: dict[str, str] = {}
    for reference in set(iter_references(entry.resource)):
        if is_placeholder(reference):
            raise invalid(
                f"{entry.label}: reference {reference!r} is a placeholder, which only a"
                " transaction resolves",
                f"{entry.where}.resource",
            )
        split = conditional_reference(reference)
        if split is not None:
            resolved[reference] = await resolve_conditional(ctx, entry, *split)
    if resolved:
        rewrite_references(entry.resource, resolved.get)


async def resolve_conditional(ctx: Context, entry: BundleEntry, type_: str, query: str) -> str:
    """``Type/id`` of the one resource a conditional reference finds; 412 otherwise."""
    search = criteria(ctx, type_, parse_qsl(query, keep_blank_values=True))
    found = await matches(ctx, search, 2)
    reference = f"{type_}?{query}"
    if not found:
        raise FhirError(
            412,
            "not-found",
            f"{entry.label}: the conditional reference {reference!r} matches no resource",
            (f"{entry.where}.resource",),
        )
    if len(found) > 1:
        raise FhirError(
            412,
            "multiple-matches",
            f"{entry.label}: the conditional reference"
            f" {reference!r} matches more than one resource",
            (f"{entry.where}.resource",),
        )
    return f"{type_}/{found[0].id}"


async def dispatch(ctx: Context, entry: BundleEntry) -> FhirResponse:
    """Run an entry through the single interaction its method and URL name."""
    try:
        return await _dispatch(ctx, entry)
    except FhirError as error:
        raise named(entry, error) from None


async def _dispatch(ctx: Context, entry: BundleEntry) -> FhirResponse:
    method, segs = entry.method, entry.segments
    if method in ("GET", "HEAD"):
        return await _read(entry_context(ctx, entry), entry)
    type_ = segs[0]
    if method == "PATCH":
        content_type, body = patch_body(entry)
        sub = entry_context(ctx, entry, content_type)
        _require(type_, "patch")
        if len(segs) == 2:
            return await patch(sub, type_, segs[1], body)
        return await conditional_patch(sub, type_, body)
    sub = entry_context(ctx, entry)
    body = fhir_json.dumps(entry.resource) if entry.resource is not None else b""
    if method == "POST":
        _require(type_, "create")
        return await create(sub, type_, body)
    if method == "PUT":
        _require(type_, "update")
        if len(segs) == 2:
            return await update(sub, type_, segs[1], body)
        return await conditional_update(sub, type_, body)
    _require(type_, "delete")
    if len(segs) == 2:
        return await delete(sub, type_, segs[1])
    return await conditional_delete(sub, type_)


async def _read(ctx: Context, entry: BundleEntry) -> FhirResponse:
    """GET and HEAD: every read, history and search form of the RESTful API."""
    segs = entry.segments
    n = len(segs)
    if n == 0:
        return await _checked(search_system(ctx), "search-system")
    if n == 1 and segs[0] == "metadata":
        return await capabilities(ctx)
    if n == 1 and segs[0] == "_history":
        return await _checked(history(ctx), "history-system")
    type_ = segs[0]
    if n == 1:
        _require(type_, "search-type")
        return await search_type(ctx, type_)
    if n == 2 and segs[1] == "_history":
        _require(type_, "history-type")
        return await history(ctx, type_)
    if n == 2:
        _require(type_, "read")
        return await read(ctx, type_, segs[1])
    if n == 3 and segs[2] == "_history":
        _require(type_, "history-instance")
        return await history(ctx, type_, segs[1])
    if n == 3:
        _require(type_, "read")
        _require(segs[2], "search-type")
        return await search_compartment(ctx, type_, segs[1], segs[2])
    if n == 4 and segs[2] == "_history":
        _require(type_, "vread")
        return await vread(ctx, type_, segs[1], segs[3])
    raise invalid(f"{entry.label}: the URL names no interaction", f"{entry.where}.request.url")


async def _checked(result: Any, code: str) -> FhirResponse:
    if code not in support_table().system_interactions:
        result.close()
        raise FhirError(405, "not-supported", f"{code} is not supported")
    return await result


def _require(type_: str, code: str) -> None:
    if type_ not in RESOURCE_TYPES:
        raise FhirError(404, "not-supported", f"Unknown resource type {type_!r}")
    if not support_table().supports(type_, code):
        raise FhirError(404, "not-supported", f"{code} is not supported for {type_}")

"""history at instance, type and system level: https://hl7.org/fhir/R4/http.html#history

Newest first, with ``_count``, ``_since`` (versions created at or after the instant) and
``_at`` (versions current at some time in the period the value's precision covers).
Pages are keyed on the global write sequence (``_cursor``), never an offset, so a page
stays the same while new versions are written.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.headers import etag
from fhir_server.interactions.context import (
    Context,
    FhirResponse,
    bundle_id,
    check_id,
    query_string,
)
from fhir_server.storage.base import HistoryQuery, StoredVersion, now_instant
from resources.errors import invalid, not_found
from resources.fhir_datetime import parse_range_text

_REQUEST_METHOD = {"create": "POST", "update": "PUT", "patch": "PATCH", "delete": "DELETE"}
_STATUS = {"create": "201 Created", "update": "200 OK", "patch": "200 OK", "delete": "200 OK"}


async def history(ctx: Context, type_: str | None = None, id_: str | None = None) -> FhirResponse:
    if id_ is not None:
        check_id(id_)
        if type_ is not None and await ctx.store.read(type_, id_) is None:
            raise not_found(f"{type_}/{id_} is not known")
    query, applied = _query(ctx, type_, id_)
    page = await ctx.store.history(query)
    path = "/".join(p for p in (type_, id_, "_history") if p)
    links = [{"relation": "self", "url": _link(ctx, path, applied, query.before_seq)}]
    if query.before_seq is not None:
        links.append({"relation": "first", "url": _link(ctx, path, applied, None)})
    if page.next_before_seq is not None:
        links.append({"relation": "next", "url": _link(ctx, path, applied, page.next_before_seq)})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "history",
        "total": page.total,
        "link": links,
        "entry": [_entry(ctx, v) for v in page.entries],
    }
    if not bundle["entry"]:
        del bundle["entry"]
    return FhirResponse(200, bundle)


def _query(ctx: Context, type_: str | None, id_: str | None) -> tuple[HistoryQuery, list]:
    applied: list[tuple[str, str]] = []
    count = ctx.settings.default_page_size
    since = at_start = at_end = None
    before = None
    for name, value in ctx.params:
        if name == "_count":
            count = _positive_int(value, "_count")
            applied.append((name, value))
        elif name == "_since":
            since = parse_range_text(value, "_since")[0]
            applied.append((name, value))
        elif name == "_at":
            at_start, at_end = parse_range_text(value, "_at")
            applied.append((name, value))
        elif name == "_cursor":
            before = _positive_int(value, "_cursor")
    count = min(count, ctx.settings.max_page_size)
    query = HistoryQuery(type_, id_, since, at_start, at_end, count, before)
    return query, applied


def _positive_int(value: str, name: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise invalid(f"{name} must be a positive integer (got {value!r})", name)
    return int(value)


def _link(ctx: Context, path: str, applied: list, before: int | None) -> str:
    params = list(applied) + ([("_cursor", str(before))] if before is not None else [])
    url = ctx.url(path)
    return f"{url}?{query_string(params)}" if params else url


def _entry(ctx: Context, stored: StoredVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": ctx.url(stored.type, stored.id)}
    if stored.content is not None:
        entry["resource"] = orjson.Fragment(stored.content)
    method = _REQUEST_METHOD[stored.method]
    url = stored.type if method == "POST" else f"{stored.type}/{stored.id}"
    entry["request"] = {"method": method, "url": url}
    entry["response"] = {
        "status": _STATUS[stored.method],
        "etag": etag(stored.version),
        "lastModified": stored.last_updated,
    }
    return entry

"""``GET [base]/Communication?_query=inbox``: the signed-in user's messages, unread first,
then the newest ``sent`` first, paged like any search (a named query,
https://hl7.org/fhir/R4/search.html#query; secure messaging, issue 19).

Whose inbox: a staff user's (``fhirUser`` a Practitioner or PractitionerRole) collects
the messages addressed to the practitioner, their PractitionerRoles, the care teams they
take part in (directly or through a role) and their roles' organizations
(:func:`fhir_server.workflows.care_relations.staff_addresses`); a patient's or
caregiver's, those addressed to the patient in context or to the user. A caller without
a ``fhirUser`` (a backend service, a server without authorization) names the addresses
with ``recipient``. Other search parameters (``category``, ``subject``, ``_include``,
``_count``, ``_summary``, ...) narrow it as in any search, and the caller's access
limits apply as always.

Unread means no ``received`` (``received:missing=true``). The pages are those of two
searches, the unread messages then the read ones, each sorted by ``-sent``; the cursor
says which one a page continues.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.access import GuardedStore
from fhir_server.headers import prefer_handling
from fhir_server.interactions.context import Context, FhirResponse, bundle_id, query_string
from fhir_server.storage.base import StoredVersion, now_instant
from fhir_server.storage.search_page import Cursor, SearchPage
from fhir_server.workflows.care_relations import staff_addresses
from resources.errors import invalid
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from resources.search.query import SearchQuery
from resources.terminology import value_set_codes

TYPE = "Communication"
_OURS = frozenset({"_cursor", "_sort"})
"""Parameters the inbox sets itself."""


async def inbox(ctx: Context, items: list[tuple[str, str]]) -> FhirResponse:
    addresses = await _addresses(ctx)
    wanted = [(k, v) for k, v in items if k not in _OURS]
    if addresses:
        wanted.append(("recipient", ",".join(addresses)))
    elif not any(k.split(":", 1)[0] == "recipient" for k, _ in wanted):
        raise invalid(
            "The inbox is the signed-in user's (fhirUser); without one, name the addresses"
            " with recipient",
            "_query",
        )
    unread = _query(ctx, [*wanted, ("received:missing", "true")])
    read = _query(ctx, [*wanted, ("received:missing", "false")])
    count = unread.count if unread.count is not None else ctx.settings.default_page_size
    if unread.summary == "count":
        count = 0
    phase, cursor = _decode(next((v for k, v in items if k == "_cursor"), None))
    entries: list[StoredVersion] = []
    included: list[StoredVersion] = []
    following: str | None = None
    if phase == "u":
        first = await ctx.store.search(unread, cursor, count, True)
        _take(first, entries, included)
        if first.next_cursor is not None:
            following = _encode("u", first.next_cursor)
        rest = count - len(entries)
        second = await ctx.store.search(read, None, rest, True)
        if first.next_cursor is None:
            _take(second, entries, included)
            if second.next_cursor is not None:
                following = _encode("r", second.next_cursor)
            elif rest == 0 and count and second.total:
                following = _encode("r", None)
    else:
        first = await ctx.store.search(unread, None, 0, True)
        second = await ctx.store.search(read, cursor, count, True)
        _take(second, entries, included)
        if second.next_cursor is not None:
            following = _encode("r", second.next_cursor)
    total = (first.total or 0) + (second.total or 0)
    shown = [("_query", "inbox"), *((k, v) for k, v in items if k != "_cursor")]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": bundle_id(),
        "meta": {"lastUpdated": now_instant()},
        "type": "searchset",
        "total": total,
        "link": _links(ctx, shown, items, following),
    }
    found = [_entry(ctx, s, "match") for s in entries] + [
        _entry(ctx, s, "include") for s in included
    ]
    if found:
        bundle["entry"] = found
    return FhirResponse(200, bundle)


async def _addresses(ctx: Context) -> list[str]:
    """The signed-in user's addresses (empty: no user)."""
    policy = getattr(ctx.store, "policy", None)
    user = getattr(policy, "fhir_user", None)
    if not user:
        return []
    if user.startswith(("Practitioner/", "PractitionerRole/")):
        return await staff_addresses(_unguarded(ctx.store), user)
    patient = getattr(policy, "patient", None)
    found = [user]
    if patient and f"Patient/{patient}" != user:
        found.append(f"Patient/{patient}")
    return found


def _unguarded(store: Any) -> Any:
    """The store under the caller's access checks: a user's roles and care teams are
    looked up whatever the token may read (they are not returned)."""
    while isinstance(store, GuardedStore):
        store = store.inner
    return store


def _query(ctx: Context, items: list[tuple[str, str]]) -> SearchQuery:
    query = parse_search(
        (TYPE,),
        [*items, ("_sort", "-sent")],
        strict=prefer_handling(ctx.header("prefer")) == "strict",
        params_for=search_params,
        max_count=ctx.settings.max_page_size,
        default_count=ctx.settings.default_page_size,
        value_set=value_set_codes,
    )
    return query


def _take(page: SearchPage, entries: list[StoredVersion], included: list[StoredVersion]) -> None:
    entries.extend(page.entries)
    included.extend(page.included)


def _encode(phase: str, cursor: Cursor | None) -> str:
    return f"{phase}.{cursor.encode() if cursor is not None else ''}"


def _decode(text: str | None) -> tuple[str, Cursor | None]:
    if not text:
        return "u", None
    phase, _, rest = text.partition(".")
    if phase not in ("u", "r"):
        raise invalid("Invalid paging cursor (_cursor)", "_cursor")
    return phase, Cursor.decode(rest) if rest else None


def _links(
    ctx: Context,
    shown: list[tuple[str, str]],
    items: list[tuple[str, str]],
    following: str | None,
) -> list[dict[str, str]]:
    def url(cursor: str | None) -> str:
        params = [*shown, *([("_cursor", cursor)] if cursor else [])]
        return f"{ctx.url(TYPE)}?{query_string(params)}"

    current = next((v for k, v in items if k == "_cursor"), None)
    links = [{"relation": "self", "url": url(current)}]
    if current:
        links.append({"relation": "first", "url": url(None)})
    if following is not None:
        links.append({"relation": "next", "url": url(following)})
    return links


def _entry(ctx: Context, stored: StoredVersion, mode: str) -> dict[str, Any]:
    assert stored.content is not None
    return {
        "fullUrl": ctx.url(stored.type, stored.id),
        "resource": orjson.Fragment(stored.content),
        "search": {"mode": mode},
    }

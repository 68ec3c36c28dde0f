"""Named queries: ``GET [base]/[type]?_query=name&...``
(https://hl7.org/fhir/R4/search.html#query), a search the server defines by name.

:func:`named_query` is called by ``search_type`` when the parameters hold ``_query``;
the queries this server defines are in :data:`QUERIES`: ``Communication?_query=inbox``
(the signed-in user's inbox, :mod:`fhir_server.interactions.named_query_inbox`). Any other
name is ``400``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fhir_server.interactions.context import Context, FhirResponse
from fhir_server.interactions.named_query_inbox import inbox
from resources.errors import invalid

NamedQuery = Callable[[Context, list[tuple[str, str]]], Awaitable[FhirResponse]]

QUERIES: dict[tuple[str, str], NamedQuery] = {("Communication", "inbox"): inbox}
"""(resource type, name) -> the query; it gets the other parameters."""


async def named_query(ctx: Context, type_: str, items: list[tuple[str, str]]) -> FhirResponse:
    names = {value for name, value in items if name == "_query"}
    if len(names) != 1:
        raise invalid("Give one _query name", "_query")
    name = names.pop()
    query = QUERIES.get((type_, name))
    if query is None:
        known = ", ".join(f"{t}?_query={n}" for t, n in sorted(QUERIES)) or "none"
        raise invalid(f"No named query {name!r} for {type_} (known: {known})", "_query")
    return await query(ctx, [(k, v) for k, v in items if k != "_query"])

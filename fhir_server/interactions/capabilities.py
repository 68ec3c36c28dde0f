"""capabilities: https://hl7.org/fhir/R4/http.html#capabilities

The CapabilityStatement (https://hl7.org/fhir/R4/capabilitystatement.html) is generated
from the same support table that registers the routes. ``_summary`` and ``_elements``
(https://hl7.org/fhir/R4/search.html#summary) subset it like any resource: the whole
statement is ~700 KB, ``?_elements=software,fhirVersion`` a few hundred bytes.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from capability.support import OperationDefinition, SupportTable
from fhir_server.events import topics
from fhir_server.events.websocket_channel import websocket_extension
from fhir_server.interactions.context import Context, FhirResponse
from fhir_server.interactions.subsetting import subset
from fhir_server.operations import support_table
from resources import fhir_json
from resources.errors import invalid

SOFTWARE_NAME = "fhir-server"
SOFTWARE_VERSION = "0.1.0"
_PUBLISHED = "2026-11-25"


async def capabilities(ctx: Context) -> FhirResponse:
    statement = capability_statement(ctx.base_url)
    if ctx.auth is not None:
        # SMART: rest.security with the service code and the oauth-uris extension
        # (https://hl7.org/fhir/smart-app-launch/conformance.html#using-cors)
        statement = {**statement, "rest": [{**statement["rest"][0]}]}
        statement["rest"][0]["security"] = ctx.auth.security(ctx.base_url)
    summary, elements = ctx.param("_summary"), ctx.param("_elements")
    if summary not in (None, "false") or elements:
        if summary not in (None, "true", "text", "data", "false"):
            raise invalid(f"_summary={summary!r} is not one of true, text, data, false", "_summary")
        names = [e.strip() for e in (elements or "").split(",") if e.strip()]
        return FhirResponse(200, subset(fhir_json.dumps(statement), _TYPE, summary, names))
    return FhirResponse(200, statement)


_TYPE = "CapabilityStatement"


@cache
def capability_statement(base_url: str) -> dict[str, Any]:
    table = support_table()
    statement: dict[str, Any] = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _PUBLISHED,
        "publisher": "fhir-server contributors",
        "kind": "instance",
    }
    instantiates = sorted({url for op in table.operations for url in op.instantiates})
    if instantiates:  # e.g. the Bulk Data server's, for $export
        statement["instantiates"] = instantiates
    statement.update(
        {
            "software": {"name": SOFTWARE_NAME, "version": SOFTWARE_VERSION},
            "implementation": {"description": "FHIR R4 server", "url": base_url},
            "fhirVersion": "4.0.1",
            "format": ["application/fhir+json", "json"],
            "patchFormat": [
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/fhir+json",
            ],
            # where Subscriptions' websocket channel connects (fhir_server/events)
            "rest": [{"extension": [websocket_extension(base_url)], **_rest(table)}],
        }
    )
    return topics.advertise(statement)  # the SubscriptionTopics (Subscriptions Backport IG)


def _rest(table: SupportTable) -> dict[str, Any]:
    rest: dict[str, Any] = {
        "mode": "server",
        "resource": [
            {
                "type": support.type,
                "interaction": [{"code": code} for code in support.interactions],
                "versioning": support.versioning,
                "readHistory": support.read_history,
                "updateCreate": support.update_create,
                "conditionalCreate": support.conditional_create,
                "conditionalUpdate": support.conditional_update,
                "conditionalDelete": support.conditional_delete,
                "searchInclude": list(support.search_include),
                "searchRevInclude": list(support.search_rev_include),
                "searchParam": [
                    {"name": p.code, "definition": p.url, "type": p.type}
                    if p.url
                    else {"name": p.code, "type": p.type}
                    for p in support.search_params
                ],
                **_operations(table, support.type),
            }
            for support in table.types.values()
        ],
        "interaction": [{"code": code} for code in table.system_interactions],
    }
    system = [op for op in table.operations if op.level == "system"]
    if system:
        rest["operation"] = [_operation(op) for op in system]
    return rest


def _operations(table: SupportTable, type_: str) -> dict[str, Any]:
    """``rest.resource.operation``: the type- and instance-level operations of ``type_``,
    one entry per definition (``$everything`` is declared at both levels; the first
    declaration's documentation is kept)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for op in table.operations:
        if type_ in op.resource_types:
            found.setdefault((op.name, op.canonical), _operation(op))
    return {"operation": list(found.values())} if found else {}


def _operation(op: OperationDefinition) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": op.name, "definition": op.canonical}
    if op.documentation:
        entry["documentation"] = op.documentation
    return entry

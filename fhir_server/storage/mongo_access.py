"""The access policy as a MongoDB filter: SMART scopes compiled into the query of every
read path (https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html).

The same semantics as ``sqlite_access``: an OR of grants, each limiting the type, the
Patient compartments a version must be in (``m``, the memberships array written with
every resource and history document) and, for v2 granular scopes, search conditions on
the current version. Only ``$or``/``$and``/``$in``/``$nin`` on plain fields: operators
whose semantics mongomock shares with MongoDB.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from resources.definitions import RESOURCE_TYPES
from resources.search.query import AccessClause, Condition, Grant

MEMBERS = "m"
"""Document field: the Patient compartments (``"Patient/1"``) of the version."""

NOTHING: dict[str, Any] = {"_id": {"$in": []}}

WhereCompiler = Callable[[Sequence[str], Condition], Awaitable[dict[str, Any]]]


async def access_filter(access: AccessClause, where: WhereCompiler | None = None) -> dict:
    """A filter on resource or history documents. Without ``where``, grants that carry
    search conditions grant nothing (they need the current search index)."""
    parts = []
    for grant in access.grants:
        part = await _grant_filter(grant, where)
        if part is not None:
            parts.append(part)
    if not parts:
        return NOTHING
    return parts[0] if len(parts) == 1 else {"$or": parts}


async def _grant_filter(grant: Grant, where: WhereCompiler | None) -> dict | None:
    parts: list[dict[str, Any]] = []
    if grant.types is not None:
        if not grant.types:
            return None
        parts.append({"type": {"$in": sorted(grant.types)}})
    if grant.compartments is not None:
        parts.append(_patient_filter(grant))
    if grant.where:
        if where is None or grant.types is None:
            return None
        for condition in grant.where:
            parts.append(await where(sorted(grant.types), condition))
    if not parts:
        return {}
    return parts[0] if len(parts) == 1 else {"$and": parts}


def _patient_filter(grant: Grant) -> dict[str, Any]:
    """A patient-context grant's rule (see ``Grant``): the compartment's types by
    membership, any other type by "no other patient, and this one or directory data"."""
    assert grant.compartments is not None
    compartments = list(grant.compartments)
    inside = {MEMBERS: {"$in": compartments}}
    types, member_types = grant.types, grant.member_types
    if types is not None and types <= member_types:
        return inside
    public = sorted(grant.public_types if types is None else grant.public_types & types)
    exclusive: dict[str, Any] = {
        "$and": [
            {MEMBERS: {"$not": {"$elemMatch": {"$nin": compartments}}}},
            {"$or": [{"type": {"$in": public}}, inside]} if public else inside,
        ]
    }
    if types is not None and not types & member_types:
        return exclusive
    # both kinds: the types as $in lists of names (point bounds on the type indexes),
    # not a $nin (the complement of ranges)
    listed = member_types if types is None else member_types & types
    outside = (set(RESOURCE_TYPES) if types is None else set(types)) - listed
    return {
        "$or": [
            {"$and": [{"type": {"$in": sorted(listed)}}, inside]},
            {"$and": [{"type": {"$in": sorted(outside)}}, exclusive]},
        ]
    }


def member_condition(access: AccessClause, types: Sequence[str]) -> dict | None:
    """When every grant limits ``types`` to compartments: ``{m: {$in: …}}``, a necessary
    condition an index on ``m`` serves (a patient's record, not every resource of the
    type); None otherwise (no compartment limit, or directory types shown without one)."""
    compartments: dict[str, None] = {}
    if not access.grants:
        return None
    for grant in access.grants:
        if grant.compartments is None or grant.public_types.intersection(types):
            return None
        compartments.update(dict.fromkeys(grant.compartments))
    return {MEMBERS: {"$in": list(compartments)}}

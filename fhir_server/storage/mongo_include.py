"""``_include`` and ``_revinclude`` (with ``:iterate``) on the MongoDB store
(https://hl7.org/fhir/R4/search.html#include), the counterpart of the SQLite store's
``run_includes``: follow-up queries after a page, on ``_id`` (``Type/id``) for the
targets of the page's references, and on ``i.ref`` elements (``$elemMatch`` of
``p``/``t``/``id``, ``$in``) for the resources referring to the page. Both use only
``find`` with ``$in``/``$elemMatch``/``$ne``, the same in mongomock 4.3 and MongoDB.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fhir_server.storage.base import StoredVersion
from fhir_server.storage.mongo_index import INDEX, REFS, STORED_FIELDS, stored_version
from fhir_server.storage.mongo_match import any_of
from resources.search.query import Include

ANY_TYPE = "*"
"""``Include.source_type`` of ``_revinclude=*``: referring resources of any type."""
MAX_INCLUDED = 1000
"""Most resources the includes of one page add."""
MAX_ROUNDS = 4
"""Rounds of ``:iterate``."""


async def run_includes(
    collection: Any,
    includes: Sequence[Include],
    matches: list[dict],
    session: Any = None,
    allowed: dict | None = None,
) -> list[StoredVersion]:
    """``_include`` / ``_revinclude`` of a page's matches, then (``:iterate``) of what
    they included, for a few rounds and at most a thousand resources; ``allowed`` (the
    caller's access filter) narrows every follow-up query."""
    seen = {doc["_id"] for doc in matches}
    found: list[StoredVersion] = []
    frontier = matches
    for round_ in range(MAX_ROUNDS):
        added: list[dict] = []
        for include in includes:
            if round_ > 0 and not include.iterate:
                continue
            where = _include_filter(include, frontier)
            if where is None:
                continue
            if allowed is not None:
                where = {"$and": [where, allowed]}
            projection = dict.fromkeys((*STORED_FIELDS, REFS), 1)
            cursor = collection.find(
                where, projection, sort=[("_id", 1)], limit=MAX_INCLUDED, session=session
            )
            for doc in await cursor.to_list(None):
                if doc["_id"] not in seen and len(found) < MAX_INCLUDED:
                    seen.add(doc["_id"])
                    found.append(stored_version(doc))
                    added.append(doc)
        if not added:
            break
        frontier = added
    return found


def _include_filter(include: Include, frontier: list[dict]) -> dict | None:
    """The resources ``include`` adds for ``frontier`` (None: certainly none)."""
    if include.reverse:
        return _revinclude_filter(include, frontier)
    code = include.param.code if include.param is not None else None
    keys: set[str] = set()
    for doc in frontier:
        if include.source_type not in (ANY_TYPE, doc.get("type")):
            continue
        for ref in doc.get(INDEX, {}).get("ref", ()):
            target_type, target_id = ref.get("t"), ref.get("id")
            if code is not None and ref.get("p") != code:
                continue
            if target_type is None or target_id is None:
                continue
            if include.target_type is None or target_type == include.target_type:
                keys.add(f"{target_type}/{target_id}")
    if not keys:
        return None
    return {"_id": {"$in": sorted(keys)}, "method": {"$ne": "delete"}}


def _revinclude_filter(include: Include, frontier: list[dict]) -> dict | None:
    ids_by_type: dict[str, list[str]] = {}
    for doc in frontier:
        if include.target_type is None or doc["type"] == include.target_type:
            ids_by_type.setdefault(doc["type"], []).append(doc["id"])
    if not ids_by_type:
        return None
    code = {} if include.param is None else {"p": include.param.code}
    refs = any_of(
        {REFS: {"$elemMatch": {**code, "t": type_, "id": {"$in": ids}}}}
        for type_, ids in sorted(ids_by_type.items())
    )
    where: dict[str, Any] = {"method": {"$ne": "delete"}, "$and": [refs]}
    if include.source_type != ANY_TYPE:
        where["type"] = include.source_type
    return where

"""Helpers of the MongoDB search compiler tests: the search parameters they use, and
documents written the way the MongoDB store writes them (the version fields plus
``mongo_index.encode`` of the index entries, none on a tombstone).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bson.binary import Binary

from fhir_server.storage.base import IndexEntries
from fhir_server.storage.mongo_index import encode
from fhir_server.storage.mongo_search import (
    RESOURCES,
    run_search,
)
from resources import fhir_json
from resources.fhir_datetime import format_instant
from resources.search.model import (
    IndexRow,
    SearchParam,
    SortKey,
)
from resources.search.query import (
    Clause,
    Match,
    SearchQuery,
)

CODE = SearchParam("Observation", "code", "token", "Observation.code")
SUBJECT = SearchParam(
    "Observation", "subject", "reference", "Observation.subject", targets=("Patient",)
)
DATE = SearchParam("Observation", "date", "date", "Observation.effective")
VALUE = SearchParam("Observation", "value", "number", "Observation.value")
QUANTITY = SearchParam("Observation", "value-quantity", "quantity", "Observation.value")
COMBO = SearchParam("Observation", "code-value-quantity", "composite", "Observation")
NAME = SearchParam("Patient", "name", "string", "Patient.name")
IDENTIFIER = SearchParam("Patient", "identifier", "token", "Patient.identifier")
ORG = SearchParam("Patient", "organization", "reference", "Patient.managingOrganization")
ORG_NAME = SearchParam("Organization", "name", "string", "Organization.name")
URL = SearchParam("ValueSet", "url", "uri", "ValueSet.url")
TEXT = SearchParam("Patient", "_text", "special", None)

_seq = itertools.count(1)
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


MONGODB_URI = os.environ.get("MONGODB_URI")


async def put(
    db: Any,
    type_: str,
    id_: str,
    rows: Sequence[IndexRow] = (),
    sort: Sequence[SortKey] = (),
    method: str = "update",
) -> None:
    """Write the current version of a resource as the MongoDB store does."""
    seq = next(_seq)
    doc: dict[str, Any] = {
        "_id": f"{type_}/{id_}",
        "type": type_,
        "id": id_,
        "version": 1,
        "last_updated": format_instant(_EPOCH + timedelta(milliseconds=seq)),
        "method": method,
        "content": None
        if method == "delete"
        else Binary(fhir_json.dumps({"resourceType": type_, "id": id_})),
        "seq": seq,
    }
    if method != "delete":
        doc |= encode(IndexEntries(rows, sort))
    await db[RESOURCES].replace_one({"_id": doc["_id"]}, doc, upsert=True)


def q(types: str, *conditions: Any, **kwargs: Any) -> SearchQuery:
    return SearchQuery(types=tuple(types.split(",")), conditions=list(conditions), **kwargs)


async def ids(db: Any, query: SearchQuery, count: int = 100) -> list[str]:
    page = await run_search(db, query, None, count, False)
    return [e.id for e in page.entries]


async def found(db: Any, param: SearchParam, *values: Match, negate: bool = False) -> list[str]:
    return await ids(db, q(param.resource_type, Clause(param, values, negate)))

"""Start-up of the MongoDB store: collections, indexes, the history sequence document and
one-time migrations, made idempotent and safe when several server processes start at
once against one database.

Every step tolerates having been done, or being done at the same moment, by another
process (https://www.mongodb.com/docs/manual/reference/command/createIndexes/,
https://www.mongodb.com/docs/manual/reference/command/create/):

- a collection that exists: ``CollectionInvalid`` from PyMongo's own check, or
  ``NamespaceExists`` (code 48) from the server (``mongod`` before 7.0 answers so when two
  processes create it at once; later versions accept an identical create);
- an index: ``createIndexes`` of an index that exists with the same definition is a
  no-op. What a concurrent start can also produce (an index build in progress, code 276;
  a collection created implicitly by the other process's ``createIndexes``, code 48 or a
  write conflict, 112; and ``IndexOptionsConflict``/``IndexKeySpecsConflict``, 85/86) is
  settled by reading the indexes: if the index now exists as wanted (under any name), it
  is done; otherwise the step waits a little and tries again. An index of the same name
  or keys with another definition (made by another version of the server, or by hand)
  stops the start-up with a message naming both definitions, rather than running without
  it;
- the ``history_seq`` counter document and the ``schema`` marker are upserts, and a
  duplicate key from two concurrent upserts means the other process made the document;
- migrations are idempotent updates that only touch documents still needing them.

Each index is created by a ``createIndexes`` of its own, so that one conflict does not
hide the state of the others. No step runs in a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any

from pymongo import IndexModel
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

from fhir_server.storage.mongo_access import MEMBERS
from fhir_server.storage.mongo_index import NO_VALUE_LAST, SORT, STORED_SORTS, sort_field
from fhir_server.storage.mongo_members import backfill_slot_members
from resources import fhir_json
from resources.compartments import memberships, referring_types
from resources.search.extract import indexer_for

log = logging.getLogger("fhir_server.storage.mongo")

NAMESPACE_EXISTS = 48
WRITE_CONFLICT = 112
INDEX_OPTIONS_CONFLICT = 85
INDEX_KEY_SPECS_CONFLICT = 86
INDEX_BUILD_ALREADY_IN_PROGRESS = 276
_INDEX_RACES = frozenset(
    {
        NAMESPACE_EXISTS,
        WRITE_CONFLICT,
        INDEX_OPTIONS_CONFLICT,
        INDEX_KEY_SPECS_CONFLICT,
        INDEX_BUILD_ALREADY_IN_PROGRESS,
    }
)
"""Codes a concurrent start-up can give ``createIndexes``: look, and try again."""
INDEX_ATTEMPTS = 20
"""How often one index is tried before the start-up gives up (about 10 s of waiting)."""

SEQUENCE = "history_seq"
"""``_id`` of the ``counters`` document holding the history sequence."""
SCHEMA = "schema"
"""``_id`` of the ``counters`` document recording the migrations that ran."""
SCHEMA_VERSION = 5
"""1: the first layout; 2: every live resource stores the :data:`STORED_SORTS` keys;
3: every version stores its Patient compartments (``m``); 4: so do the versions of the
types outside the Patient compartment (the patients they refer to); 5: the Slots of a
Schedule in a patient's compartment are in it too (``mongo_members``)."""


class IndexMismatch(RuntimeError):
    """An index of the store's name or keys exists with another definition."""


async def ensure_collections(db: Any, names: Sequence[str]) -> None:
    """Create the collections that do not exist (explicitly: shard them before first use,
    and never create one inside a transaction)."""
    for name in names:
        try:
            await db.create_collection(name, check_exists=False)
        except CollectionInvalid:
            pass
        except OperationFailure as error:
            if error.code != NAMESPACE_EXISTS:
                raise


async def ensure_indexes(collection: Any, models: Sequence[IndexModel]) -> None:
    for model in models:
        await ensure_index(collection, model)


async def ensure_index(collection: Any, model: IndexModel) -> None:
    """Create one index, or find it made by another process; raise :class:`IndexMismatch`
    when an index of its name or keys has another definition."""
    for attempt in range(INDEX_ATTEMPTS):
        try:
            await collection.create_indexes([model])
            return
        except OperationFailure as error:
            if error.code not in _INDEX_RACES:
                raise
            existing = await collection.index_information()
            if _present(model, existing):
                return
            clash = _clash(model, existing)
            if clash is not None:
                raise IndexMismatch(_mismatch(collection, model, clash)) from error
            log.info("index %s: %s; trying again", model.document["name"], error)
        await asyncio.sleep(random.uniform(0.5, 1.0) * min(0.05 * 2**attempt, 1.0))
    raise IndexMismatch(f"index {model.document['name']} could not be created")


def _definition(spec: dict[str, Any]) -> tuple[list[tuple[str, float]], bool]:
    """(keys, unique) of an index, from ``IndexModel.document`` or ``index_information``."""
    keys = spec["key"]
    pairs = keys.items() if isinstance(keys, dict) else keys
    return [(str(name), float(direction)) for name, direction in pairs], bool(spec.get("unique"))


def _present(model: IndexModel, existing: dict[str, Any]) -> bool:
    """The index exists as wanted (under its name, or another one)."""
    wanted = _definition(model.document)
    return any(_definition(spec) == wanted for spec in existing.values())


def _clash(model: IndexModel, existing: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """An existing index with the model's name or keys but another definition."""
    name = model.document["name"]
    wanted = _definition(model.document)
    for other, spec in existing.items():
        found = _definition(spec)
        if found != wanted and (other == name or found[0] == wanted[0]):
            return other, spec
    return None


def _mismatch(collection: Any, model: IndexModel, clash: tuple[str, dict[str, Any]]) -> str:
    name, spec = clash
    keys, unique = _definition(model.document)
    theirs, their_unique = _definition(spec)
    return (
        f"The {collection.name!r} collection has an index {name!r} ({theirs},"
        f" unique={their_unique}) that clashes with the index this server needs,"
        f" {model.document['name']!r} ({keys}, unique={unique}). If no older server"
        " version still uses it, drop it"
        f" (db.{collection.name}.dropIndex({name!r})) and start again."
    )


async def ensure_counter(counters: Any) -> None:
    """The history sequence document (``n`` = the last ``seq`` handed out)."""
    with contextlib.suppress(DuplicateKeyError):  # another process made it at that moment
        await counters.update_one({"_id": SEQUENCE}, {"$setOnInsert": {"n": 0}}, upsert=True)


async def migrate(resources: Any, counters: Any, history: Any = None) -> None:
    """Bring documents written by earlier versions to :data:`SCHEMA_VERSION`, once per
    database (the ``schema`` document says how far it got)."""
    marker = await counters.find_one({"_id": SCHEMA})
    done = int((marker or {}).get("version", 1))
    if done >= SCHEMA_VERSION:
        return
    if history is not None:
        await backfill_members(resources, history)
        if done < 4:
            await backfill_referring_members(resources, history)
        if done < 5:
            await backfill_slot_members(resources, history)
    for code in sorted(STORED_SORTS):
        field = f"{SORT}.{sort_field(code)}"
        result = await resources.update_many(
            {"method": {"$ne": "delete"}, field: {"$exists": False}},
            {"$set": {field: {"lo": NO_VALUE_LAST, "hi": ""}}},
        )
        if result.modified_count:
            log.info("stored the %r sort key of %d resources", code, result.modified_count)
    with contextlib.suppress(DuplicateKeyError):
        await counters.update_one(
            {"_id": SCHEMA}, {"$max": {"version": SCHEMA_VERSION}}, upsert=True
        )


async def backfill_referring_members(resources: Any, history: Any) -> None:
    """Schema 4: the memberships of every version of the types outside the R4 Patient
    compartment (Task, PaymentReconciliation, ...), which earlier schemas left empty:
    the patients each refers to; a tombstone takes its previous version's. Idempotent
    (it sets what the content says), so a migration cut short runs again."""
    last: dict[tuple[str, str], list[str]] = {}
    cursor = history.find(
        {"type": {"$in": sorted(referring_types())}},
        {"type": 1, "id": 1, "content": 1, "seq": 1, "method": 1},
    )
    count = 0
    for doc in await cursor.sort("seq", 1).to_list(None):
        key = (doc["type"], doc["id"])
        content = doc.get("content")
        if content is None and doc.get("method") != "delete":
            current = await resources.find_one(
                {"_id": f"{key[0]}/{key[1]}", "seq": doc["seq"]}, {"content": 1}
            )
            content = (current or {}).get("content")
        if doc.get("method") == "delete" or content is None:
            members = last.get(key, [])
        else:
            members = list(memberships(key[0], key[1], (), fhir_json.loads(bytes(content))))
        last[key] = members
        if members:
            await history.update_one({"_id": doc["_id"]}, {"$set": {MEMBERS: members}})
            await resources.update_one(
                {"_id": f"{key[0]}/{key[1]}", "seq": doc["seq"]}, {"$set": {MEMBERS: members}}
            )
            count += 1
    if count:
        log.info("recorded the patients of %d versions outside the Patient compartment", count)


async def backfill_members(resources: Any, history: Any) -> None:
    """Schema 3: the Patient compartments of every stored version (``m``), computed from
    its content; a tombstone takes its previous version's. Documents that have ``m``
    already are left alone, so a migration cut short resumes."""
    last: dict[tuple[str, str], list[str]] = {}
    cursor = history.find({}, {"type": 1, "id": 1, "content": 1, "seq": 1, MEMBERS: 1})
    count = 0
    for doc in await cursor.sort("seq", 1).to_list(None):
        key = (doc["type"], doc["id"])
        if MEMBERS in doc:
            last[key] = list(doc[MEMBERS])
            continue
        content = doc.get("content")
        if content is None:
            members = last.get(key, [])
        else:
            resource = fhir_json.loads(bytes(content))
            rows, _ = indexer_for(doc["type"]).index(resource)
            members = list(memberships(doc["type"], doc["id"], rows, resource))
        last[key] = members
        await history.update_one({"_id": doc["_id"]}, {"$set": {MEMBERS: members}})
        await resources.update_one(
            {"_id": f"{doc['type']}/{doc['id']}", "seq": doc["seq"]}, {"$set": {MEMBERS: members}}
        )
        count += 1
    if count:
        log.info("recorded the patient compartments of %d versions", count)

"""MongoDB store, on PyMongo's native async API (``pymongo.AsyncMongoClient``,
https://pymongo.readthedocs.io/en/stable/api/pymongo/asynchronous/).

Same behaviour as the SQLite store (https://hl7.org/fhir/R4/http.html#versioning): every
version is kept, a delete writes a tombstone, ``If-Match`` is an atomic compare-and-set.

Collections:

- ``resources``: one document per logical resource, ``_id`` = ``"Type/id"``, holding the
  current version (tombstones included): ``type, id, version, last_updated, method, seq``,
  ``content`` (the exact stored JSON bytes, BSON binary, returned untouched) and the
  search index fields from ``mongo_index.encode`` (none on a tombstone);
- ``history``: every version (``type, id, version, last_updated, ended, method, seq,
  content``), unique on ``(type, id, version)``; ``ended`` is when the next version
  replaced it, for ``_at``;
- ``counters``: the global history ``seq`` (``$inc``);
- ``locks``: one document per type that conditional creates write, so two concurrent
  conditional creates on a type conflict and the second one re-checks its criteria.

A write first reads the resource document, then replaces it with a filter on the version
it read (``{_id, version}``; a create inserts, relying on the unique ``_id``), then ends
the previous history version and inserts the new one. On a replica set or sharded
cluster a write, or a whole batch, runs in one transaction
(https://www.mongodb.com/docs/manual/core/transactions/) and conflicts are retried by
``with_transaction``. On a standalone server there are no transactions: a single write
still cannot be lost or doubled (the compare-and-set is the first write; the history
document is rebuilt from the resource document by the next write if the process died in
between), but a batch of several writes raises :class:`TransactionsUnavailable` and a
conditional create is not atomic with its check.

The global ``seq`` is drawn outside the transaction (a counter inside it would make every
write conflict with every other); it is drawn after the resource document is read, so a
resource's versions always get increasing ``seq`` values. Numbers of aborted writes are
skipped.

No user input becomes an operator: every filter here is built from typed values (the
type, id and version strings and numbers of the request, instants made by the server),
never from a mapping a client sent, and resource bodies are stored as opaque bytes, so
``$``-keys or dotted keys in a body are just data.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, IndexModel, ReadPreference, ReturnDocument
from pymongo.errors import CollectionInvalid, DuplicateKeyError

from fhir_server.storage import mongo_index, mongo_search
from fhir_server.storage.base import (
    AlreadyExists,
    ConditionMatched,
    HistoryPage,
    HistoryQuery,
    StoredVersion,
    TransactionsUnavailable,
    VersionConflict,
    WriteRequest,
    WriteResult,
    check_preconditions,
    next_version,
)
from fhir_server.storage.mongo_index import STORED_FIELDS, stored_version
from fhir_server.storage.search_page import Cursor, SearchPage
from resources.search.query import SearchQuery

log = logging.getLogger("fhir_server.storage.mongo")

"""The fields of a resource or history document that make a :class:`StoredVersion`."""
STORED_PROJECTION = {name: 1 for name in STORED_FIELDS} | {"_id": 0}

_HISTORY_INDEXES = [
    IndexModel(
        [("type", ASCENDING), ("id", ASCENDING), ("version", ASCENDING)],
        unique=True,
        name="history_version",
    ),
    IndexModel([("seq", DESCENDING)], name="history_seq"),
    IndexModel([("type", ASCENDING), ("seq", DESCENDING)], name="history_type_seq"),
    IndexModel([("last_updated", ASCENDING)], name="history_last_updated"),
]
_COLLECTIONS = ("resources", "history", "counters", "locks")
_ATTEMPTS = 100
"""Plain (not If-Match) writes that lose a race re-read and try again, this many times."""


def resource_key(type_: str, id_: str) -> str:
    """The ``_id`` of a resource document; type and id must be plain strings."""
    if not isinstance(type_, str) or not isinstance(id_, str):
        raise TypeError("resource type and id must be strings")
    return f"{type_}/{id_}"


class _Retry(Exception):
    """A plain write lost a race with another writer: read again and retry."""


class MongoStore:
    """The production / scale-out store (replica set or sharded cluster)."""

    def __init__(
        self, client: Any, database: str, *, description: str = "", in_memory: bool = False
    ) -> None:
        self.client = client
        self.db = client[database]
        self.description = description or database
        self.in_memory = in_memory
        self.transactions = False
        self._resources = self.db["resources"]
        self._history = self.db["history"]

    @classmethod
    def from_url(cls, url: str, *, database: str | None = None) -> MongoStore:
        """``mongodb://``/``mongodb+srv://`` (the URL's path names the database, default
        ``fhir``) or ``mongomock://NAME/DB`` (the in-memory stand-in)."""
        if url.startswith("mongomock:"):
            from fhir_server.storage import mongomock_async

            client, name = mongomock_async.client_from_url(url)
            description = f"mongomock (in-memory) {url}"
            return cls(client, database or name, description=description, in_memory=True)
        from pymongo import AsyncMongoClient

        client = AsyncMongoClient(url, appname="fhir-server", **_durable_defaults(url))
        name = database or client.get_default_database("fhir").name
        return cls(client, name, description=f"MongoDB database {name!r}")

    # -- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        hello = await self.client.admin.command("hello")
        self.transactions = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
        if self.in_memory:
            log.warning(
                "STORAGE IS MONGOMOCK, IN MEMORY: data is lost when the process exits;"
                " for tests and demos only, never for production"
            )
        if not self.transactions:
            log.warning(
                "MongoDB is a standalone server without transactions: transaction bundles"
                " are refused and conditional creates are not atomic; run a replica set"
                " (a single-node one will do) for both"
            )
        await self._create_collections()
        await self._history.create_indexes(_HISTORY_INDEXES)
        await self._resources.create_indexes(mongo_index.INDEXES)
        log.info("MongoDB store open: %s (transactions: %s)", self.description, self.transactions)

    async def _create_collections(self) -> None:
        # explicitly, because creating a collection inside a transaction is restricted
        existing = set(await self.db.list_collection_names())
        for name in _COLLECTIONS:
            if name not in existing:
                with contextlib.suppress(CollectionInvalid):  # made by another process
                    await self.db.create_collection(name)

    async def close(self) -> None:
        await self.client.close()

    # -- reads -----------------------------------------------------------------------

    async def read(self, type_: str, id_: str) -> StoredVersion | None:
        doc = await self._resources.find_one({"_id": resource_key(type_, id_)}, STORED_PROJECTION)
        return None if doc is None else stored_version(doc)

    async def vread(self, type_: str, id_: str, version: int) -> StoredVersion | None:
        resource_key(type_, id_)
        doc = await self._history.find_one(
            {"type": type_, "id": id_, "version": int(version)}, STORED_PROJECTION
        )
        return None if doc is None else stored_version(doc)

    async def history(self, query: HistoryQuery) -> HistoryPage:
        where = _history_filter(query)
        total = await self._history.count_documents(where)
        page_where = where
        if query.before_seq is not None:
            page_where = {**where, "seq": {"$lt": int(query.before_seq)}}
        cursor = self._history.find(page_where, STORED_PROJECTION)
        docs = await cursor.sort("seq", DESCENDING).limit(query.count + 1).to_list(None)
        entries = [stored_version(d) for d in docs[: query.count]]
        more = len(docs) > query.count
        return HistoryPage(entries, total, entries[-1].seq if more and entries else None)

    async def search(
        self, query: SearchQuery, cursor: Cursor | None, count: int, with_total: bool
    ) -> SearchPage:
        return await mongo_search.run_search(self.db, query, cursor, count, with_total)

    # -- writes ----------------------------------------------------------------------

    async def write(self, request: WriteRequest) -> WriteResult:
        return (await self.write_batch([request]))[0]

    async def write_batch(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        if not requests:
            return []
        if len(requests) > 1 and not self.transactions:
            raise TransactionsUnavailable(
                "This MongoDB deployment is a standalone server without transactions, so"
                f" {len(requests)} writes cannot be applied all-or-nothing; run MongoDB as a"
                " replica set (a single node will do) to use transaction bundles"
            )
        for attempt in range(_ATTEMPTS):
            try:
                return await self._run(requests)
            except _Retry:
                await asyncio.sleep(random.random() * min(0.001 * 2**attempt, 0.05))
        raise RuntimeError(f"write kept losing races after {_ATTEMPTS} attempts")

    async def _run(self, requests: Sequence[WriteRequest]) -> list[WriteResult]:
        async def apply_all(session: Any) -> list[WriteResult]:
            return [await self._apply(request, session) for request in requests]

        if not self.transactions:
            return await apply_all(None)
        async with self.client.start_session() as session:
            # a URL readPreference must not reach transactions: they read the primary
            return await session.with_transaction(apply_all, read_preference=ReadPreference.PRIMARY)

    async def _apply(self, req: WriteRequest, session: Any) -> WriteResult:
        key = resource_key(req.type, req.id)
        doc = await self._resources.find_one({"_id": key}, STORED_PROJECTION, session=session)
        previous = None if doc is None else stored_version(doc)
        if req.unless_exists is not None:
            await self._check_absent(req, session)
        no_op = check_preconditions(req, previous)
        if no_op is not None:
            return no_op
        version, last_updated = next_version(previous)
        content = None if req.build is None else req.build(version, last_updated)
        seq = await self._next_seq()
        stored = StoredVersion(req.type, req.id, version, last_updated, req.method, content, seq)
        await self._put_resource(req, stored, previous, session)
        if previous is not None:
            await self._end_version(previous, last_updated, session)
        await self._add_history(stored, session)
        return WriteResult(stored, previous is None or previous.deleted, previous)

    async def _check_absent(self, req: WriteRequest, session: Any) -> None:
        """Conditional create: no match, checked so that concurrent ones serialise."""
        assert req.unless_exists is not None
        if session is not None:  # concurrent conditional creates on a type conflict here
            await self.db["locks"].update_one(
                {"_id": f"conditional-create/{req.type}"},
                {"$inc": {"n": 1}},
                upsert=True,
                session=session,
            )
        found = await mongo_search.run_search(
            self.db, req.unless_exists, None, 2, False, session=session
        )
        if found.entries:
            raise ConditionMatched(found.entries)

    async def _next_seq(self) -> int:
        doc = await self.db["counters"].find_one_and_update(
            {"_id": "history_seq"},
            {"$inc": {"n": 1}},
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )
        return int(doc["n"])

    async def _put_resource(
        self,
        req: WriteRequest,
        stored: StoredVersion,
        previous: StoredVersion | None,
        session: Any,
    ) -> None:
        """The compare-and-set: insert a new resource, or replace the version we read."""
        key = resource_key(stored.type, stored.id)
        doc = {"_id": key, **_version_fields(stored), **_index_fields(req)}
        if previous is None:
            try:
                await self._resources.insert_one(doc, session=session)
            except DuplicateKeyError:
                if req.must_not_exist:
                    raise AlreadyExists(key) from None
                raise _Retry from None
            return
        result = await self._resources.replace_one(
            {"_id": key, "version": previous.version}, doc, session=session
        )
        if result.matched_count == 1:
            return
        if req.if_match is not None:
            current = await self.read(stored.type, stored.id)
            raise VersionConflict(None if current is None else current.version)
        raise _Retry

    async def _end_version(self, previous: StoredVersion, ended: str, session: Any) -> None:
        """Mark the replaced version ended; rebuild its history document if it is missing
        (a standalone write whose process died between its two steps)."""
        fields = _version_fields(previous)
        await self._history.update_one(
            {"type": previous.type, "id": previous.id, "version": previous.version},
            {
                "$set": {"ended": ended},
                "$setOnInsert": {
                    k: fields[k] for k in ("last_updated", "method", "seq", "content")
                },
            },
            upsert=True,
            session=session,
        )

    async def _add_history(self, stored: StoredVersion, session: Any) -> None:
        try:
            await self._history.insert_one(
                {**_version_fields(stored), "ended": None}, session=session
            )
        except DuplicateKeyError:
            if session is not None:
                raise
            # standalone: a later write already rebuilt it from the resource document


def _version_fields(stored: StoredVersion) -> dict[str, Any]:
    return {
        "type": stored.type,
        "id": stored.id,
        "version": stored.version,
        "last_updated": stored.last_updated,
        "method": stored.method,
        "seq": stored.seq,
        "content": stored.content,
    }


def _index_fields(req: WriteRequest) -> dict[str, Any]:
    """The search index fields of the new version (none for a tombstone)."""
    if req.index is None or req.method == "delete":
        return {}
    fields = mongo_index.encode(req.index)
    clash = set(fields) & {"_id", *STORED_FIELDS}
    if clash:
        raise ValueError(f"index fields clash with the resource document: {sorted(clash)}")
    return fields


def _history_filter(query: HistoryQuery) -> dict[str, Any]:
    where: dict[str, Any] = {}
    if query.type is not None:
        where["type"] = str(query.type)
        if query.id is not None:
            resource_key(query.type, query.id)
            where["id"] = query.id
    updated: dict[str, str] = {}
    if query.since is not None:
        updated["$gte"] = str(query.since)
    if query.at_start is not None and query.at_end is not None:
        # the version was current at some point of [at_start, at_end)
        updated["$lt"] = str(query.at_end)
        where["$or"] = [{"ended": None}, {"ended": {"$gt": str(query.at_start)}}]
    if updated:
        where["last_updated"] = updated
    return where


def _durable_defaults(url: str) -> dict[str, Any]:
    """Majority, journaled writes unless the URL says otherwise: an acknowledged write
    survives a crash (https://www.mongodb.com/docs/manual/reference/write-concern/)."""
    options = {k.lower() for k in parse_qs(urlsplit(url).query)}
    defaults: dict[str, Any] = {}
    if "w" not in options:
        defaults["w"] = "majority"
    if "journal" not in options:
        defaults["journal"] = True
    return defaults

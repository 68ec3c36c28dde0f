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
  replaced it, for ``_at``. Reads also accept a current version's history document
  without ``content`` (taking it from the resource document): the first step of storing
  a content once, as the SQLite store does. Writers keep both copies until every
  server that may share a database reads that form (a server of an earlier release
  would lose a content it replaces; see ``MongoStore._with_contents``);
- ``events`` and ``event_cursors``: the outbox (``fhir_server.events.outbox_mongo``), an
  event per version written with it;
- ``counters``: the document ``history_seq`` (the last history ``seq`` handed out, ``n``,
  and the latest ``last_updated``) and ``schema`` (which one-time migrations ran).

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

History order is commit order (https://hl7.org/fhir/R4/http.html#history: newest first,
followed with ``_since``). Each transaction takes its ``seq`` numbers (a block, one per
write of the batch) and its ``lastUpdated`` from the ``history_seq`` document, in the
transaction, after reading the resources it writes (:class:`_Clock`): ``$inc`` of the
sequence and ``$max`` of the instant (now, and never before the previous version's).
MongoDB lets only one transaction at a time write a document: a second one that writes
it while the first is in progress, or after the first committed since the second's
snapshot, fails with a ``WriteConflict`` (``TransientTransactionError``) and
``with_transaction`` runs it again from the start (new snapshot, new reads, a new
block). So write transactions commit one at a time in ``seq`` order, and a version that
is visible never gets one with a smaller ``seq`` or an earlier ``lastUpdated`` committed
behind it: a client paging back with ``_cursor`` or polling with ``_since`` (the newest
``lastUpdated`` it has seen; the spec warns it may get boundary versions twice) misses
nothing, whichever server process wrote and whatever their clocks say. The price: write
transactions are serialised across the deployment, as the SQLite store's ``BEGIN
IMMEDIATE`` serialises its writers; a batch holds the sequence once for all its writes.
It also makes conditional creates safe: two overlapping transactions always conflict on
the sequence, so the search of the second one runs again after the first committed.

On a standalone server the sequence is the same document, updated by itself (no
transaction) before the resource: ``seq`` and ``lastUpdated`` still grow with every
write, and a resource's versions are in order, but a write that is slow between taking
its ``seq`` and inserting its history entry becomes visible after writes with larger
ones, so a client following the history can miss it. Run a replica set (one node will
do) where clients follow the history.

No user input becomes an operator: every filter here is built from typed values (the
type, id and version strings and numbers of the request, instants made by the server),
never from a mapping a client sent, and resource bodies are stored as opaque bytes, so
``$``-keys or dotted keys in a body are just data.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pymongo import ASCENDING, DESCENDING, IndexModel, ReadPreference, ReturnDocument
from pymongo.errors import DuplicateKeyError

from fhir_server.events import outbox_mongo
from fhir_server.redact import url_for_log
from fhir_server.storage import base, mongo_index, mongo_members, mongo_search, mongo_setup
from fhir_server.storage.base import (
    AccessDenied,
    AlreadyExists,
    ConditionMatched,
    HistoryPage,
    HistoryQuery,
    IndexEntries,
    StoredVersion,
    TransactionsUnavailable,
    VersionConflict,
    WriteRequest,
    WriteResult,
    check_preconditions,
)
from fhir_server.storage.mongo_access import MEMBERS, access_filter
from fhir_server.storage.mongo_index import STORED_FIELDS, stored_version
from fhir_server.storage.mongo_setup import SEQUENCE
from fhir_server.storage.search_page import Cursor, SearchPage
from resources.search.query import AccessClause, SearchQuery

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
    # patient-context history: the versions in a compartment, newest first
    IndexModel([(MEMBERS, ASCENDING), ("seq", DESCENDING)], name="history_member_seq"),
]
_COLLECTIONS = ("resources", "history", "counters", outbox_mongo.EVENTS, outbox_mongo.CURSORS)
_ATTEMPTS = 100
"""Plain (not If-Match) writes that lose a race re-read and try again, this many times."""


def resource_key(type_: str, id_: str) -> str:
    """The ``_id`` of a resource document; type and id must be plain strings."""
    if not isinstance(type_, str) or not isinstance(id_, str):
        raise TypeError("resource type and id must be strings")
    return f"{type_}/{id_}"


class _Retry(Exception):
    """A plain write lost a race with another writer: read again and retry."""


class _Clock:
    """The ``seq`` numbers and ``lastUpdated`` of the versions one attempt at a write (or
    batch) makes, drawn from the ``history_seq`` document in its transaction.

    The first write reserves a block of ``size`` numbers (unused ones are skipped) and
    raises the document's instant to now, or to the previous version's if that is later;
    every version of the attempt gets that instant. A later write of the attempt whose
    previous version is later still (data written before this scheme) raises it again.
    """

    def __init__(self, counters: Any, session: Any, size: int) -> None:
        self._counters = counters
        self._session = session
        self._size = size
        self._next = 1
        self._last = 0
        self._instant = ""

    async def tick(self, previous: StoredVersion | None) -> tuple[int, str]:
        floor = "" if previous is None else previous.last_updated
        if self._next > self._last:
            doc = await self._counters.find_one_and_update(
                {"_id": SEQUENCE},
                {
                    "$inc": {"n": self._size},
                    "$max": {"last_updated": max(base.now_instant(), floor)},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
                session=self._session,
            )
            self._last = int(doc["n"])
            self._next = self._last - self._size + 1
            self._instant = str(doc["last_updated"])
        elif floor > self._instant:
            await self._counters.update_one(
                {"_id": SEQUENCE}, {"$max": {"last_updated": floor}}, session=self._session
            )
            self._instant = floor
        seq, self._next = self._next, self._next + 1
        return seq, self._instant


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
        self._counters = self.db["counters"]
        self._events = self.db[outbox_mongo.EVENTS]

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        database: str | None = None,
        server_selection_timeout: float | None = None,
    ) -> MongoStore:
        """``mongodb://``/``mongodb+srv://`` (the URL's path names the database, default
        ``fhir``) or ``mongomock://NAME/DB`` (the in-memory stand-in).
        ``server_selection_timeout``: seconds to wait for a server, unless the URL sets
        ``serverSelectionTimeoutMS`` (the start-up check's few seconds)."""
        if url.startswith("mongomock:"):
            from fhir_server.storage import mongomock_async

            client, name = mongomock_async.client_from_url(url)
            description = f"mongomock (in-memory) {url_for_log(url)}"
            return cls(client, database or name, description=description, in_memory=True)
        from pymongo import AsyncMongoClient

        options = _durable_defaults(url)
        if server_selection_timeout is not None and not _url_sets(url, "serverselectiontimeoutms"):
            options["serverSelectionTimeoutMS"] = int(server_selection_timeout * 1000)
        client = AsyncMongoClient(url, appname="fhir-server", **options)
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
                " are refused, conditional creates are not atomic, and a client following"
                " the history can miss a version written concurrently; run a replica set"
                " (a single-node one will do) for all three"
            )
        # idempotent, and safe when several server processes start at once (mongo_setup)
        await mongo_setup.ensure_collections(self.db, _COLLECTIONS)
        await mongo_setup.ensure_indexes(self._history, _HISTORY_INDEXES)
        await mongo_setup.ensure_indexes(self._resources, mongo_index.INDEXES)
        await mongo_setup.ensure_counter(self._counters)
        await mongo_setup.migrate(self._resources, self._counters, self._history)
        log.info("MongoDB store open: %s (transactions: %s)", self.description, self.transactions)

    async def close(self) -> None:
        await self.client.close()

    @property
    def outbox(self) -> outbox_mongo.MongoOutbox:
        return outbox_mongo.MongoOutbox(self.db)

    async def ping(self) -> None:
        """MongoDB's ``ping`` command (https://www.mongodb.com/docs/manual/reference/command/ping/)."""
        await self.client.admin.command("ping")

    # -- reads -----------------------------------------------------------------------

    async def read(
        self, type_: str, id_: str, access: AccessClause | None = None
    ) -> StoredVersion | None:
        where = await _restricted({"_id": resource_key(type_, id_)}, access)
        doc = await self._resources.find_one(where, STORED_PROJECTION)
        return None if doc is None else stored_version(doc)

    async def vread(
        self, type_: str, id_: str, version: int, access: AccessClause | None = None
    ) -> StoredVersion | None:
        resource_key(type_, id_)
        where = await _restricted({"type": type_, "id": id_, "version": int(version)}, access)
        doc = await self._history.find_one(where, STORED_PROJECTION)
        return None if doc is None else (await self._with_contents([doc]))[0]

    async def history(self, query: HistoryQuery) -> HistoryPage:
        where = await _restricted(_history_filter(query), query.access)
        total = await self._history.count_documents(where)
        page_where = where
        if query.before_seq is not None:
            page_where = {**where, "seq": {"$lt": int(query.before_seq)}}
        cursor = self._history.find(page_where, STORED_PROJECTION)
        docs = await cursor.sort("seq", DESCENDING).limit(query.count + 1).to_list(None)
        entries = await self._with_contents(docs[: query.count])
        more = len(docs) > query.count
        return HistoryPage(entries, total, entries[-1].seq if more and entries else None)

    async def _with_contents(self, docs: list[dict[str, Any]]) -> list[StoredVersion]:
        """History documents as versions; a current version's document may hold no
        content (the form a later release writes), which is then its resource document's
        (one query for the page). A version replaced since has its content in its
        history document by then: read again from there."""
        current = [d for d in docs if d.get("content") is None and d["method"] != "delete"]
        if current:
            keys = [resource_key(d["type"], d["id"]) for d in current]
            found = await self._resources.find(
                {"_id": {"$in": keys}}, {"version": 1, "content": 1}
            ).to_list(None)
            by_key = {f["_id"]: f for f in found}
            for doc, key in zip(current, keys, strict=True):
                resource = by_key.get(key)
                if resource is not None and resource.get("version") == doc["version"]:
                    doc["content"] = resource.get("content")
                    continue
                where = {"type": doc["type"], "id": doc["id"], "version": doc["version"]}
                again = await self._history.find_one(where, {"content": 1})
                doc["content"] = (again or {}).get("content")
        return [stored_version(d) for d in docs]

    async def search(
        self, query: SearchQuery, cursor: Cursor | None, count: int, with_total: bool
    ) -> SearchPage:
        return await mongo_search.run_search(self.db, query, cursor, count, with_total)

    # -- writes ----------------------------------------------------------------------

    async def purge(self, type_: str, ids: Sequence[str]) -> int:
        """Remove resources for good: the resource documents (with their index fields)
        and every version of the history. Not a FHIR delete: only the audit trail's
        retention uses it (``fhir_server.audit.trail.AuditTrail.prune``)."""
        keys = [resource_key(type_, id_) for id_ in ids]
        removed = await self._resources.delete_many({"_id": {"$in": keys}})
        await self._history.delete_many({"type": type_, "id": {"$in": list(ids)}})
        return int(removed.deleted_count)

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
            # a new clock per attempt: with_transaction may run this again from the start
            clock = _Clock(self._counters, session, len(requests))
            return [await self._apply(request, session, clock) for request in requests]

        if not self.transactions:
            return await apply_all(None)
        async with self.client.start_session() as session:
            # a URL readPreference must not reach transactions: they read the primary
            return await session.with_transaction(apply_all, read_preference=ReadPreference.PRIMARY)

    async def _apply(self, req: WriteRequest, session: Any, clock: _Clock) -> WriteResult:
        key = resource_key(req.type, req.id)
        projection = {**STORED_PROJECTION, MEMBERS: 1, **mongo_members.projection_for(req.type)}
        doc = await self._resources.find_one({"_id": key}, projection, session=session)
        previous = None if doc is None else stored_version(doc)
        if req.access is not None and doc is not None:
            visible = await _restricted({"_id": key}, req.access)
            if await self._resources.find_one(visible, {"_id": 1}, session=session) is None:
                raise AccessDenied(req)
        if req.unless_exists is not None:
            await self._check_absent(req, session)
        no_op = check_preconditions(req, previous)
        if no_op is not None:
            return no_op
        version = 1 if previous is None else previous.version + 1
        seq, last_updated = await clock.tick(previous)
        content = None if req.build is None else req.build(version, last_updated)
        stored = StoredVersion(req.type, req.id, version, last_updated, req.method, content, seq)
        members = await mongo_members.members_of(self._resources, req, doc, session)
        await self._put_resource(req, stored, previous, session, members)
        if previous is not None:
            await self._end_version(previous, last_updated, session)
        await self._add_history(stored, session, members)
        await mongo_members.after_write(self._resources, self._history, req, doc, members, session)
        # the outbox: the version is an event, in the same transaction
        event = outbox_mongo.event_document(seq, req.type, req.id, version, req.method)
        await self._events.insert_one(event, session=session)
        return WriteResult(stored, previous is None or previous.deleted, previous)

    async def _check_absent(self, req: WriteRequest, session: Any) -> None:
        """Conditional create: no match. In a transaction, the write that follows takes
        the history sequence, so a concurrent conditional create conflicts with this one
        and runs again, its search then seeing what this one wrote."""
        assert req.unless_exists is not None
        found = await mongo_search.run_search(
            self.db, req.unless_exists, None, 2, False, session=session
        )
        if found.entries:
            raise ConditionMatched(found.entries)

    async def _put_resource(
        self,
        req: WriteRequest,
        stored: StoredVersion,
        previous: StoredVersion | None,
        session: Any,
        members: list[str],
    ) -> None:
        """The compare-and-set: insert a new resource, or replace the version we read."""
        key = resource_key(stored.type, stored.id)
        doc = {"_id": key, **_version_fields(stored), **_index_fields(req), MEMBERS: members}
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

    async def _add_history(self, stored: StoredVersion, session: Any, members: list[str]) -> None:
        try:
            await self._history.insert_one(
                {**_version_fields(stored), "ended": None, MEMBERS: members}, session=session
            )
        except DuplicateKeyError:
            if session is not None:
                raise
            # standalone: a later write already rebuilt it from the resource document


async def _restricted(where: dict[str, Any], access: AccessClause | None) -> dict[str, Any]:
    """``where``, narrowed to what ``access`` lets the caller see (grants that carry
    search conditions need the search index of the current version: ignored here)."""
    if access is None or access.unrestricted:
        return where
    return {"$and": [where, await access_filter(access)]}


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
    """The search index fields of the new version (none for a tombstone; without index
    entries, still the stored sort keys' sentinels, so that every live document has them)."""
    if req.method == "delete":
        return {}
    fields = mongo_index.encode(req.index or IndexEntries())
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


def _url_sets(url: str, option: str) -> bool:
    """Whether the connection string sets ``option`` (lower case)."""
    return option in {k.lower() for k in parse_qs(urlsplit(url).query)}


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

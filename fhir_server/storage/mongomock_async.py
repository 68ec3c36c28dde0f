"""An in-process MongoDB stand-in: mongomock 4.3 behind the slice of PyMongo's async API
(https://pymongo.readthedocs.io/en/stable/api/pymongo/asynchronous/) that the MongoDB
store uses. For tests and demos only (``FHIR_SERVER_STORAGE=mongomock://``); it keeps
everything in memory.

What it adds to mongomock:

- awaitable collection methods, and cursors with ``to_list`` and ``async for``; every
  operation first yields to the event loop, so concurrent tasks interleave between
  operations as concurrent clients of a server do;
- ``admin.command("hello")`` answering as a replica set (or, with ``?standalone=true`` in
  the URL, as a standalone server, which refuses transactions as ``mongod`` does);
- sessions and multi-document transactions (mongomock has none) with MongoDB's semantics
  (``mongomock_session``): transactions run concurrently, each on a snapshot plus its own
  writes, invisible until committed; writing a document that another transaction in
  progress wrote, or that was written after the snapshot, is a ``WriteConflict``
  (``TransientTransactionError``), and ``with_transaction`` retries as PyMongo's does; a
  write outside transactions to a document that a transaction in progress has written
  waits until that transaction ends;
- collection and index creation that fail as a MongoDB server does when several clients
  start at once: ``create_collection(check_exists=False)`` of an existing collection is
  ``NamespaceExists`` (code 48; ``mongod`` before 7.0 answers so, later ones accept an
  identical create), an index whose name or keys clash with an existing index of another
  definition is ``IndexOptionsConflict`` (85) or ``IndexKeySpecsConflict`` (86).

Named servers (``mongomock://NAME/DB``) live as long as the process, like a server that
outlives a client: closing and reopening a store on the same name finds its data, and
several clients of one name are several clients of one server.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import mongomock
from mongomock.filtering import filter_applies
from pymongo.errors import CollectionInvalid

from fhir_server.storage.mongomock_session import (
    MISSING,
    AsyncMockSession,
    Server,
    documents,
    failure,
)

_T = TypeVar("_T")
_SERVERS: dict[str, Server] = {}


def parse_url(url: str) -> tuple[str, str, bool]:
    """``mongomock://NAME/DB?standalone=true`` -> (name, database, replica_set)."""
    parts = urlsplit(url)
    if parts.scheme != "mongomock":
        raise ValueError(f"not a mongomock URL: {url!r}")
    database = parts.path.strip("/") or "fhir"
    standalone = parse_qs(parts.query).get("standalone", ["false"])[0].lower()
    return parts.netloc, database, standalone not in ("true", "1", "yes")


def client_from_url(url: str) -> tuple[AsyncMockClient, str]:
    """The client of the named in-memory server, and the database the URL names."""
    name, database, replica_set = parse_url(url)
    return AsyncMockClient(name, replica_set=replica_set), database


class AsyncMockClient:
    """``AsyncMongoClient`` over a named mongomock server."""

    def __init__(self, name: str = "", *, replica_set: bool = True) -> None:
        self.name = name
        self.replica_set = replica_set
        self.server = _SERVERS.setdefault(name, Server())
        self.sync = self.server.sync

    def __getitem__(self, name: str) -> AsyncMockDatabase:
        return AsyncMockDatabase(self, name)

    def get_database(self, name: str) -> AsyncMockDatabase:
        return self[name]

    @property
    def admin(self) -> AsyncMockDatabase:
        return self["admin"]

    def start_session(self) -> AsyncMockSession:
        return AsyncMockSession(self)

    async def drop_database(self, name_or_database: str) -> None:
        await asyncio.sleep(0)
        self.sync.drop_database(name_or_database)

    async def close(self) -> None:
        """Nothing to release; the named server keeps its data."""


class AsyncMockDatabase:
    def __init__(self, client: AsyncMockClient, name: str) -> None:
        self.client = client
        self.name = name
        self.sync = client.sync[name]

    def __getitem__(self, name: str) -> AsyncMockCollection:
        return AsyncMockCollection(self, name)

    def get_collection(self, name: str) -> AsyncMockCollection:
        return self[name]

    async def command(self, command: str) -> dict[str, Any]:
        """``hello`` and ``ping``; the shape of https://www.mongodb.com/docs/manual/reference/command/hello/"""
        await asyncio.sleep(0)
        if command == "ping":
            return {"ok": 1.0}
        if command != "hello":
            raise NotImplementedError(f"mongomock_async: command {command!r}")
        reply: dict[str, Any] = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
        if self.client.replica_set:
            reply["setName"] = "mongomock"
        return reply

    async def list_collection_names(self) -> list[str]:
        await asyncio.sleep(0)
        return list(self.sync.list_collection_names())

    async def create_collection(
        self, name: str, check_exists: bool | None = True
    ) -> AsyncMockCollection:
        """As PyMongo: ``CollectionInvalid`` when ``check_exists`` finds it; without the
        check, the server's ``NamespaceExists`` of a ``mongod`` before 7.0."""
        await asyncio.sleep(0)
        if name in self.sync.list_collection_names():
            if check_exists:
                raise CollectionInvalid(f"collection {name} already exists")
            raise failure(f"Collection {self.name}.{name} already exists.", 48, "NamespaceExists")
        self.sync.create_collection(name)
        return self[name]


class AsyncMockCollection:
    """``AsyncCollection``: the methods the store and its search use, made awaitable."""

    def __init__(self, database: AsyncMockDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.sync: mongomock.Collection = database.sync[name]

    def _transaction(self, session: Any) -> AsyncMockSession | None:
        return session if isinstance(session, AsyncMockSession) and session.in_transaction else None

    def _view(self, session: Any) -> mongomock.Collection:
        """What an operation reads: the transaction's view, or the committed data."""
        txn = self._transaction(session)
        return self.sync if txn is None else txn._view(self.database.name, self.name)

    # -- writes ---------------------------------------------------------------------

    async def _write(
        self,
        session: Any,
        key_of: Callable[[mongomock.Collection], Any],
        operation: Callable[[mongomock.Collection], _T],
        created: Callable[[_T], Any] = lambda result: None,
    ) -> _T:
        """Run a one-document write: in a transaction after claiming its document; outside
        one after any transaction writing that document has ended. ``key_of`` finds the
        document's ``_id`` (or ``MISSING`` when unknown before the write, as for an insert
        without ``_id``); ``created`` the ``_id`` of a document the write created."""
        db, name = self.database.name, self.name
        txn = self._transaction(session)
        while True:
            await asyncio.sleep(0)
            view = self._view(session)
            key = key_of(view)
            if txn is not None:
                if key is not MISSING:
                    txn._claim(db, name, key)
                result = operation(view)
                new = created(result)
                if new is not None and key is MISSING:
                    txn._claim_created(db, name, new)
                return result
            owner = self.database.client.server.writers.get((db, name, key))
            if owner is not None:  # MongoDB makes the write wait for the transaction
                await owner._wait_ended()
                continue
            table = documents(self.database.client.sync, db, name)
            if key in table:  # a transaction's snapshot may hold the old one
                table[key] = copy.deepcopy(table[key])
            self.database.client.server.changes += 1
            return operation(view)

    @staticmethod
    def _matched(filter: Mapping[str, Any], upsert: bool) -> Callable[[Any], Any]:
        def key_of(view: mongomock.Collection) -> Any:
            named = filter.get("_id", MISSING)
            if isinstance(named, str | int):  # one document to look at, not all of them
                document = view._store._documents.get(named)
                if document is not None and filter_applies(filter, document):
                    return named
            else:
                found = view.find_one(filter, {"_id": 1})
                if found is not None:
                    return found["_id"]
            return named if upsert and not isinstance(named, dict) else MISSING

        return key_of

    async def insert_one(self, document: Mapping[str, Any], session: Any = None) -> Any:
        data = dict(document)
        return await self._write(
            session,
            lambda view: data.get("_id", MISSING),
            lambda view: view.insert_one(data),
            lambda result: result.inserted_id,
        )

    async def replace_one(
        self,
        filter: Mapping[str, Any],
        replacement: Mapping[str, Any],
        upsert: bool = False,
        session: Any = None,
    ) -> Any:
        return await self._write(
            session,
            self._matched(filter, upsert),
            lambda view: view.replace_one(filter, dict(replacement), upsert=upsert),
            lambda result: result.upserted_id,
        )

    async def update_one(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        upsert: bool = False,
        session: Any = None,
    ) -> Any:
        return await self._write(
            session,
            self._matched(filter, upsert),
            lambda view: view.update_one(filter, update, upsert=upsert),
            lambda result: result.upserted_id,
        )

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        upsert: bool = False,
        return_document: bool = False,
        session: Any = None,
    ) -> Any:
        if upsert and self._transaction(session) and not isinstance(filter.get("_id"), str):
            raise NotImplementedError("mongomock_async: an upsert in a transaction needs an _id")
        return await self._write(
            session,
            self._matched(filter, upsert),
            lambda view: view.find_one_and_update(
                filter, update, upsert=upsert, return_document=return_document
            ),
        )

    async def delete_one(self, filter: Mapping[str, Any], session: Any = None) -> Any:
        return await self._write(
            session, self._matched(filter, False), lambda view: view.delete_one(filter)
        )

    async def update_many(
        self, filter: Mapping[str, Any], update: Mapping[str, Any], session: Any = None
    ) -> Any:
        """Outside transactions only (the store's one-time migrations); waits for the
        transactions writing any of the documents it matches."""
        if self._transaction(session) is not None:
            raise NotImplementedError("mongomock_async: update_many in a transaction")
        keys = await self._settled(filter)
        table = documents(self.database.client.sync, self.database.name, self.name)
        for key in keys:
            table[key] = copy.deepcopy(table[key])
        self.database.client.server.changes += 1
        return self.sync.update_many(filter, update)

    async def delete_many(self, filter: Mapping[str, Any], session: Any = None) -> Any:
        """Outside transactions only (the outbox's pruning); waits for the transactions
        writing any of the documents it matches."""
        if self._transaction(session) is not None:
            raise NotImplementedError("mongomock_async: delete_many in a transaction")
        await self._settled(filter)
        self.database.client.server.changes += 1
        return self.sync.delete_many(filter)

    async def _settled(self, filter: Mapping[str, Any]) -> list[Any]:
        """The keys of the documents ``filter`` matches, once no transaction in progress
        writes any of them."""
        server = self.database.client.server
        while True:
            await asyncio.sleep(0)
            keys = [found["_id"] for found in self.sync.find(filter, {"_id": 1})]
            owners = {server.writers.get((self.database.name, self.name, k)) for k in keys}
            owners.discard(None)
            if not owners:
                return keys
            for owner in owners:
                await owner._wait_ended()

    # -- reads ----------------------------------------------------------------------

    async def find_one(
        self, filter: Mapping[str, Any], projection: Any = None, session: Any = None, **kwargs: Any
    ) -> Any:
        await asyncio.sleep(0)
        return self._view(session).find_one(filter, projection, **kwargs)

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Any = None,
        session: Any = None,
        **kwargs: Any,
    ) -> AsyncMockCursor:
        return AsyncMockCursor(lambda: self._view(session).find(filter, projection, **kwargs))

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], session: Any = None, **kwargs: Any
    ) -> AsyncMockCursor:
        return AsyncMockCursor(lambda: self._view(session).aggregate(list(pipeline)))

    async def count_documents(
        self, filter: Mapping[str, Any], session: Any = None, **kwargs: Any
    ) -> int:
        await asyncio.sleep(0)
        return self._view(session).count_documents(filter, **kwargs)

    async def distinct(
        self, key: str, filter: Mapping[str, Any] | None = None, session: Any = None
    ) -> list[Any]:
        await asyncio.sleep(0)
        return self._view(session).distinct(key, filter)

    # -- indexes --------------------------------------------------------------------

    async def create_indexes(self, indexes: Sequence[Any], session: Any = None) -> list[str]:
        """As ``createIndexes``: identical indexes are a no-op; an index clashing with an
        existing one (same name, or same keys, with another definition) fails as MongoDB
        does (https://www.mongodb.com/docs/manual/reference/command/createIndexes/)."""
        await asyncio.sleep(0)
        existing = self.sync.index_information()
        for model in indexes:
            _check_index(self.name, model.document, existing)
        return self.sync.create_indexes(list(indexes))

    async def index_information(self) -> dict[str, Any]:
        await asyncio.sleep(0)
        return self.sync.index_information()


_INDEX_OPTIONS = ("unique", "sparse", "partialFilterExpression", "expireAfterSeconds")


def _check_index(collection: str, wanted: Mapping[str, Any], existing: Mapping[str, Any]) -> None:
    keys = list(wanted["key"].items())
    options = {k: wanted[k] for k in _INDEX_OPTIONS if wanted.get(k)}
    for name, info in existing.items():
        same_keys = [tuple(k) for k in info["key"]] == keys
        same_options = {k: info[k] for k in _INDEX_OPTIONS if info.get(k)} == options
        if name == wanted["name"] and not same_keys:
            raise failure(
                f"An existing index has the same name as the requested index ({name} on"
                f" {collection})",
                86,
                "IndexKeySpecsConflict",
            )
        if same_keys and not (name == wanted["name"] and same_options):
            raise failure(
                f"An equivalent index already exists with a different name or options"
                f" ({name} on {collection})",
                85,
                "IndexOptionsConflict",
            )


class AsyncMockCursor:
    """``AsyncCursor`` / ``AsyncCommandCursor``: built lazily, read with ``to_list`` or
    ``async for``; ``sort``/``skip``/``limit`` chain as in PyMongo."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._steps: list[tuple[str, tuple[Any, ...]]] = []
        self._items: list[Any] | None = None

    def sort(self, *args: Any) -> AsyncMockCursor:
        self._steps.append(("sort", args))
        return self

    def skip(self, skip: int) -> AsyncMockCursor:
        self._steps.append(("skip", (skip,)))
        return self

    def limit(self, limit: int) -> AsyncMockCursor:
        self._steps.append(("limit", (limit,)))
        return self

    async def _load(self) -> list[Any]:
        if self._items is None:
            await asyncio.sleep(0)
            cursor = self._make()
            for name, args in self._steps:
                cursor = getattr(cursor, name)(*args)
            self._items = list(cursor)
        return self._items

    async def to_list(self, length: int | None = None) -> list[Any]:
        items = await self._load()
        taken, self._items = (items, []) if length is None else (items[:length], items[length:])
        return taken

    def __aiter__(self) -> AsyncMockCursor:
        return self

    async def __anext__(self) -> Any:
        items = await self._load()
        if not items:
            raise StopAsyncIteration
        return items.pop(0)

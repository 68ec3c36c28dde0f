"""An in-process MongoDB stand-in: mongomock 4.3 behind the slice of PyMongo's async API
(https://pymongo.readthedocs.io/en/stable/api/pymongo/asynchronous/) that the MongoDB
store uses. For tests and demos only (``FHIR_SERVER_STORAGE=mongomock://``); it keeps
everything in memory.

What it adds to mongomock:

- awaitable collection methods, and cursors with ``to_list`` and ``async for``;
- ``admin.command("hello")`` answering as a replica set (or, with ``?standalone=true`` in
  the URL, as a standalone server), so the store takes its transactional code path;
- sessions and transactions (mongomock has none): a transaction holds a gate that
  serialises transactions and makes every operation outside it wait until it ends, so
  nobody sees a half-applied transaction; an abort replays an undo log of the
  transaction's writes. Real MongoDB runs transactions concurrently under snapshot
  isolation and reports conflicts as ``TransientTransactionError``: that path is only
  exercised against a real server (``MONGODB_URI``);
- every operation first yields to the event loop, so concurrent writers interleave
  between operations (the store's compare-and-set, not the shim, must keep them apart).

Named servers (``mongomock://NAME/DB``) live as long as the process, like a server that
outlives a client: closing and reopening a store on the same name finds its data.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import mongomock

_T = TypeVar("_T")
_SERVERS: dict[str, mongomock.MongoClient] = {}
_GATES: dict[str, tuple[asyncio.AbstractEventLoop, _Gate]] = {}


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


class _Gate:
    """One transaction at a time; operations outside it wait for it to end."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.owner: asyncio.Task[Any] | None = None

    async def enter(self) -> None:
        """Called before every operation: yield, and wait for another task's transaction."""
        await asyncio.sleep(0)
        if self.lock.locked() and self.owner is not asyncio.current_task():
            async with self.lock:
                pass

    async def acquire(self) -> None:
        await self.lock.acquire()
        self.owner = asyncio.current_task()

    def release(self) -> None:
        self.owner = None
        self.lock.release()


class AsyncMockClient:
    """``AsyncMongoClient`` over a named mongomock server."""

    def __init__(self, name: str = "", *, replica_set: bool = True) -> None:
        self.name = name
        self.replica_set = replica_set
        self.sync = _SERVERS.setdefault(name, mongomock.MongoClient())

    @property
    def gate(self) -> _Gate:
        # asyncio locks belong to one event loop; tests run one loop per test
        loop = asyncio.get_running_loop()
        current = _GATES.get(self.name)
        if current is None or current[0] is not loop:
            current = _GATES[self.name] = (loop, _Gate())
        return current[1]

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
        await self.gate.enter()
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
        await self.client.gate.enter()
        if command == "ping":
            return {"ok": 1.0}
        if command != "hello":
            raise NotImplementedError(f"mongomock_async: command {command!r}")
        reply: dict[str, Any] = {"isWritablePrimary": True, "maxWireVersion": 21, "ok": 1.0}
        if self.client.replica_set:
            reply["setName"] = "mongomock"
        return reply

    async def list_collection_names(self) -> list[str]:
        await self.client.gate.enter()
        return list(self.sync.list_collection_names())

    async def create_collection(self, name: str) -> AsyncMockCollection:
        await self.client.gate.enter()
        self.sync.create_collection(name)
        return self[name]


class AsyncMockSession:
    """``AsyncClientSession``: a transaction holds the gate and keeps an undo log."""

    def __init__(self, client: AsyncMockClient) -> None:
        self.client = client
        self.in_transaction = False
        self._undo: list[Callable[[], object]] = []

    async def __aenter__(self) -> AsyncMockSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.end_session()

    async def end_session(self) -> None:
        if self.in_transaction:
            await self.abort_transaction()

    async def start_transaction(self) -> _TransactionContext:
        if self.in_transaction:
            raise RuntimeError("transaction already in progress")
        await self.client.gate.acquire()
        self.in_transaction = True
        self._undo = []
        return _TransactionContext(self)

    async def commit_transaction(self) -> None:
        self._end()

    async def abort_transaction(self) -> None:
        for undo in reversed(self._undo):
            undo()
        self._end()

    def _end(self) -> None:
        if self.in_transaction:
            self.in_transaction = False
            self._undo = []
            self.client.gate.release()

    async def with_transaction(
        self,
        callback: Callable[[AsyncMockSession], Awaitable[_T]],
        read_concern: Any = None,
        write_concern: Any = None,
        read_preference: Any = None,
    ) -> _T:
        """Options are accepted as PyMongo's are; the stand-in has one node, so they are moot."""
        async with await self.start_transaction():
            return await callback(self)

    def record(self, undo: Callable[[], object]) -> None:
        self._undo.append(undo)


class _TransactionContext:
    def __init__(self, session: AsyncMockSession) -> None:
        self.session = session

    async def __aenter__(self) -> _TransactionContext:
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if not self.session.in_transaction:
            return
        if exc is None:
            await self.session.commit_transaction()
        else:
            await self.session.abort_transaction()


class AsyncMockCollection:
    """``AsyncCollection``: the methods the store and its search use, made awaitable."""

    def __init__(self, database: AsyncMockDatabase, name: str) -> None:
        self.database = database
        self.name = name
        self.sync: mongomock.Collection = database.sync[name]

    async def _enter(self, session: AsyncMockSession | None) -> AsyncMockSession | None:
        """Wait our turn; the session when the operation is part of its transaction."""
        if session is not None and session.in_transaction:
            await asyncio.sleep(0)
            return session
        await self.database.client.gate.enter()
        return None

    # -- writes (undone when their transaction aborts) ----------------------------------

    async def insert_one(self, document: Mapping[str, Any], session: Any = None) -> Any:
        txn = await self._enter(session)
        result = self.sync.insert_one(dict(document))
        if txn is not None:
            inserted = result.inserted_id
            txn.record(lambda: self.sync.delete_one({"_id": inserted}))
        return result

    async def replace_one(
        self,
        filter: Mapping[str, Any],
        replacement: Mapping[str, Any],
        upsert: bool = False,
        session: Any = None,
    ) -> Any:
        txn = await self._enter(session)
        before = self._before(txn, filter)
        result = self.sync.replace_one(filter, dict(replacement), upsert=upsert)
        self._record_update(txn, before, result.upserted_id)
        return result

    async def update_one(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        upsert: bool = False,
        session: Any = None,
    ) -> Any:
        txn = await self._enter(session)
        before = self._before(txn, filter)
        result = self.sync.update_one(filter, update, upsert=upsert)
        self._record_update(txn, before, result.upserted_id)
        return result

    async def find_one_and_update(
        self,
        filter: Mapping[str, Any],
        update: Mapping[str, Any],
        *,
        upsert: bool = False,
        return_document: bool = False,
        session: Any = None,
    ) -> Any:
        txn = await self._enter(session)
        before = self._before(txn, filter)
        result = self.sync.find_one_and_update(
            filter, update, upsert=upsert, return_document=return_document
        )
        if txn is not None:
            upserted = None if before is not None or result is None else result["_id"]
            self._record_update(txn, before, upserted)
        return result

    async def delete_one(self, filter: Mapping[str, Any], session: Any = None) -> Any:
        txn = await self._enter(session)
        before = self._before(txn, filter)
        result = self.sync.delete_one(filter)
        if txn is not None and before is not None:
            txn.record(lambda: self.sync.insert_one(before))
        return result

    def _before(self, txn: AsyncMockSession | None, filter: Mapping[str, Any]) -> Any:
        return None if txn is None else self.sync.find_one(filter)

    def _record_update(self, txn: AsyncMockSession | None, before: Any, upserted: Any) -> None:
        if txn is None:
            return
        if before is not None:
            txn.record(lambda: self.sync.replace_one({"_id": before["_id"]}, before))
        elif upserted is not None:
            txn.record(lambda: self.sync.delete_one({"_id": upserted}))

    # -- reads ----------------------------------------------------------------------

    async def find_one(
        self, filter: Mapping[str, Any], projection: Any = None, session: Any = None, **kwargs: Any
    ) -> Any:
        await self._enter(session)
        return self.sync.find_one(filter, projection, **kwargs)

    def find(
        self,
        filter: Mapping[str, Any] | None = None,
        projection: Any = None,
        session: Any = None,
        **kwargs: Any,
    ) -> AsyncMockCursor:
        return AsyncMockCursor(self, session, lambda: self.sync.find(filter, projection, **kwargs))

    async def aggregate(
        self, pipeline: Sequence[Mapping[str, Any]], session: Any = None, **kwargs: Any
    ) -> AsyncMockCursor:
        return AsyncMockCursor(self, session, lambda: self.sync.aggregate(list(pipeline)))

    async def count_documents(
        self, filter: Mapping[str, Any], session: Any = None, **kwargs: Any
    ) -> int:
        await self._enter(session)
        return self.sync.count_documents(filter, **kwargs)

    async def distinct(
        self, key: str, filter: Mapping[str, Any] | None = None, session: Any = None
    ) -> list[Any]:
        await self._enter(session)
        return self.sync.distinct(key, filter)

    # -- indexes --------------------------------------------------------------------

    async def create_indexes(self, indexes: Sequence[Any], session: Any = None) -> list[str]:
        await self._enter(session)
        return self.sync.create_indexes(list(indexes))

    async def index_information(self) -> dict[str, Any]:
        await self._enter(None)
        return self.sync.index_information()


class AsyncMockCursor:
    """``AsyncCursor`` / ``AsyncCommandCursor``: built lazily, read with ``to_list`` or
    ``async for``; ``sort``/``skip``/``limit`` chain as in PyMongo."""

    def __init__(
        self, collection: AsyncMockCollection, session: Any, make: Callable[[], Any]
    ) -> None:
        self._collection = collection
        self._session = session
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
            await self._collection._enter(self._session)
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

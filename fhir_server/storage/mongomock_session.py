"""Sessions and multi-document transactions for the MongoDB stand-in
(``mongomock_async``), with MongoDB's semantics
(https://www.mongodb.com/docs/manual/core/transactions-production-consideration/):
transactions run concurrently, each on a snapshot of the committed data (taken at
``start_transaction``) plus its own writes, invisible to others until it commits; a commit
publishes all of its writes at once. A transaction that writes a document which another
transaction in progress has written, or which was made visible after its snapshot, fails
at that write with ``WriteConflict`` (code 112, label ``TransientTransactionError``).
``with_transaction`` is PyMongo's algorithm: it runs the callback again after a transient
error, with jittered exponential backoff, for up to 120 seconds.

The snapshot is a copy of every collection's table of documents, sharing the documents
themselves: every write replaces a document by a changed copy and never changes one in
place (mongomock's updates do, so the collection wrapper copies first), so a conflict is
a matter of document identity. A unique index is checked against other transactions'
writes at commit (only when something else was made visible since the snapshot), not at
the write as MongoDB does; the store's writes conflict on ``_id`` before that matters.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import mongomock
from mongomock import helpers
from mongomock.store import ServerStore
from pymongo.errors import DuplicateKeyError, InvalidOperation, OperationFailure, PyMongoError

if TYPE_CHECKING:
    from fhir_server.storage.mongomock_async import AsyncMockClient

_T = TypeVar("_T")
MISSING = object()
"""A document that is not there (in a snapshot, or after a delete)."""
_RETRY_TIME_LIMIT = 120.0
_BACKOFF_INITIAL = 0.005
_BACKOFF_MAX = 0.5
"""PyMongo's ``with_transaction`` retry limits (``pymongo.client_session_shared``)."""

_Key = tuple[str, str, Any]
"""(database, collection, ``_id``) of a document."""


@dataclass
class Server:
    """One named in-memory server: its committed data, and who is writing what."""

    sync: mongomock.MongoClient = field(default_factory=mongomock.MongoClient)
    writers: dict[_Key, AsyncMockSession] = field(default_factory=dict)
    """Documents written by transactions in progress, and by which."""
    changes: int = 0
    """Counts the writes made visible (commits and writes outside transactions)."""


def write_conflict(message: str) -> OperationFailure:
    """MongoDB's answer to a conflicting write in a transaction."""
    details = {
        "ok": 0,
        "errmsg": message,
        "code": 112,
        "codeName": "WriteConflict",
        "errorLabels": ["TransientTransactionError"],
    }
    return OperationFailure(message, 112, details)


def failure(message: str, code: int, code_name: str) -> OperationFailure:
    """An error as the server reports it (``code``, ``codeName``)."""
    details = {"ok": 0, "errmsg": message, "code": code, "codeName": code_name}
    return OperationFailure(message, code, details)


def snapshot(store: ServerStore) -> ServerStore:
    """A copy of every collection's table of documents (sharing the documents)."""
    copied = ServerStore()
    for db_name, database in store._databases.items():
        for name, collection in database._collections.items():
            target = copied[db_name][name]
            target._documents = OrderedDict(collection._documents)
            target.indexes = collection.indexes
            target._ttl_indexes = collection._ttl_indexes
            target._is_force_created = collection._is_force_created
    return copied


def documents(client: mongomock.MongoClient, db: str, collection: str) -> OrderedDict:
    """The table of documents of a collection (keyed by ``_id``)."""
    return client._store[db][collection]._documents


class AsyncMockSession:
    """``AsyncClientSession``: a transaction reads its snapshot and writes privately until
    it commits (see the module docstring)."""

    def __init__(self, client: AsyncMockClient) -> None:
        self.client = client
        self.in_transaction = False
        self._private: mongomock.MongoClient | None = None
        self._written: dict[tuple[str, str], dict[Any, Any]] = {}
        self._snapshot_at = 0
        self._ended = asyncio.Event()
        self._ended.set()

    async def __aenter__(self) -> AsyncMockSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.end_session()

    async def end_session(self) -> None:
        if self.in_transaction:
            await self.abort_transaction()

    async def start_transaction(
        self,
        read_concern: Any = None,
        write_concern: Any = None,
        read_preference: Any = None,
        max_commit_time_ms: int | None = None,
    ) -> _TransactionContext:
        """Options are accepted as PyMongo's are; the stand-in has one node, so they are moot."""
        if not self.client.replica_set:
            raise failure(
                "Transaction numbers are only allowed on a replica set member or mongos",
                20,
                "IllegalOperation",
            )
        if self.in_transaction:
            raise InvalidOperation("Transaction already in progress")
        await asyncio.sleep(0)
        self.in_transaction = True
        self._private = mongomock.MongoClient(_store=snapshot(self.client.sync._store))
        self._snapshot_at = self.client.server.changes
        self._written = {}
        self._ended = asyncio.Event()
        return _TransactionContext(self)

    async def commit_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        await asyncio.sleep(0)
        try:
            self._publish()
        finally:
            self._end()

    async def abort_transaction(self) -> None:
        if not self.in_transaction:
            raise InvalidOperation("No transaction started")
        self._end()

    async def with_transaction(
        self,
        callback: Callable[[AsyncMockSession], Awaitable[_T]],
        read_concern: Any = None,
        write_concern: Any = None,
        read_preference: Any = None,
        max_commit_time_ms: int | None = None,
    ) -> _T:
        """PyMongo's algorithm: run the callback in a transaction and commit; after an
        error labelled ``TransientTransactionError`` start again (with backoff)."""
        start = time.monotonic()
        attempt = 0
        while True:
            if attempt:
                backoff = random.random() * min(_BACKOFF_INITIAL * 1.5**attempt, _BACKOFF_MAX)
                await asyncio.sleep(backoff)
            attempt += 1
            await self.start_transaction()
            try:
                result = await callback(self)
                if self.in_transaction:
                    await self.commit_transaction()
                return result
            except BaseException as exc:
                if self.in_transaction:
                    await self.abort_transaction()
                transient = isinstance(exc, PyMongoError) and exc.has_error_label(
                    "TransientTransactionError"
                )
                if not transient or time.monotonic() - start >= _RETRY_TIME_LIMIT:
                    raise

    # -- the transaction's writes -----------------------------------------------------

    def _view(self, db: str, name: str) -> mongomock.Collection:
        """The transaction's view of a collection: its snapshot and its own writes."""
        assert self._private is not None
        return self._private[db][name]

    def _claim(self, db: str, collection: str, key: Any) -> None:
        """Before writing a document: fail on a conflict, else make it ours."""
        assert self._private is not None
        written = self._written.setdefault((db, collection), {})
        if key in written:
            return
        owner = self.client.server.writers.get((db, collection, key))
        if owner is not None and owner is not self:
            raise write_conflict(f"{db}.{collection} {key!r} is written by another transaction")
        private = documents(self._private, db, collection)
        base = private.get(key, MISSING)
        if documents(self.client.sync, db, collection).get(key, MISSING) is not base:
            raise write_conflict(f"{db}.{collection} {key!r} was written after the snapshot")
        self.client.server.writers[(db, collection, key)] = self
        written[key] = base
        if base is not MISSING:  # never change a document that others may hold
            private[key] = copy.deepcopy(base)

    def _claim_created(self, db: str, collection: str, key: Any) -> None:
        """After a write created a document with a new ``_id``: it is ours."""
        self._written.setdefault((db, collection), {}).setdefault(key, MISSING)
        self.client.server.writers[(db, collection, key)] = self

    def _publish(self) -> None:
        """Commit: every document this transaction wrote replaces the committed one."""
        assert self._private is not None
        applied: list[tuple[OrderedDict, Any, Any]] = []
        # nothing else was made visible since the snapshot: mongomock checked it all
        others_wrote = self.client.server.changes != self._snapshot_at
        self.client.server.changes += 1
        try:
            for (db, name), keys in self._written.items():
                shared = documents(self.client.sync, db, name)
                private = documents(self._private, db, name)
                for key in keys:
                    applied.append((shared, key, shared.get(key, MISSING)))
                    _put(shared, key, private.get(key, MISSING))
                if others_wrote:
                    _check_unique(self.client.sync._store[db][name])
        except DuplicateKeyError:
            for shared, key, before in reversed(applied):
                _put(shared, key, before)
            message = "a unique index entry was written by another transaction"
            raise write_conflict(message) from None

    def _end(self) -> None:
        writers = self.client.server.writers
        for (db, name), keys in self._written.items():
            for key in keys:
                if writers.get((db, name, key)) is self:
                    del writers[(db, name, key)]
        self.in_transaction = False
        self._private = None
        self._written = {}
        self._ended.set()

    async def _wait_ended(self) -> None:
        await self._ended.wait()


def _check_unique(collection: Any) -> None:
    """Raise ``DuplicateKeyError`` if two documents share a key of a unique index."""
    for index in collection.indexes.values():
        if not index.get("unique"):
            continue
        seen: set[Any] = set()
        for document in collection._documents.values():
            values = []
            for name, _direction in index["key"]:
                try:
                    values.append(helpers.get_value_by_dot(document, name))
                except KeyError:
                    values.append(None)
            if index.get("sparse") and all(v is None for v in values):
                continue
            entry = tuple(values)
            try:
                hash(entry)
            except TypeError:  # arrays: mongomock does not enforce those either
                continue
            if entry in seen:
                raise DuplicateKeyError("E11000 duplicate key error", 11000)
            seen.add(entry)


def _put(documents: OrderedDict, key: Any, document: Any) -> None:
    if document is MISSING:
        documents.pop(key, None)
    else:
        documents[key] = document


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

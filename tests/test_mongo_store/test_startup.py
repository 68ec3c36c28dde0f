"""The MongoDB store at the storage level, continued: start-up on a new or old database
(index races, index definitions, earlier document layouts), the stand-in's likeness to
PyMongo's async API, commit order seen by history polling, and the logged description.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import IndexModel
from pymongo.errors import OperationFailure

from fhir_server.storage import base, mongo_index, mongo_setup
from fhir_server.storage import mongomock_async as shim
from fhir_server.storage.base import (
    HistoryQuery,
)
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.open import open_store
from resources.fhir_datetime import format_instant
from tests.test_mongo_store.support import (
    delete,
    put,
)


class _Scripted:
    """A collection whose ``create_indexes`` fails as scripted (another process at work)."""

    def __init__(self, collection: Any, failures: list[tuple[int, bool]]) -> None:
        self.collection = collection
        self.name = collection.name
        self.failures = failures
        self.calls = 0

    async def create_indexes(self, models: Any) -> Any:
        self.calls += 1
        if self.failures:
            code, made_by_other = self.failures.pop(0)
            if made_by_other:
                await self.collection.create_indexes(models)
            raise OperationFailure(f"scripted {code}", code)
        return await self.collection.create_indexes(models)

    async def index_information(self) -> dict[str, Any]:
        return await self.collection.index_information()


@pytest.mark.parametrize(
    "failures",
    [
        [(276, False), (276, False)],  # another process's build of it is in progress
        [(48, False)],  # the collection was created implicitly by another process
        [(112, False)],
        [(85, True)],  # another process finished it first
        [(86, True)],
    ],
)
async def test_an_index_race_at_start_up_is_settled(store, failures):
    scripted = _Scripted(store.db["scratch"], list(failures))
    model = IndexModel([("type", 1), ("x", 1)], name="scratch_x")
    await mongo_setup.ensure_index(scripted, model)
    assert "scratch_x" in await store.db["scratch"].index_information()
    assert scripted.calls == len(failures) + (not failures[-1][1])


async def test_an_index_of_another_definition_stops_the_start_up(store):
    """An index with the store's name but other options (an older server, or made by
    hand) is reported, not ignored: the unique index keeps versions unique."""
    await store.client.drop_database(store.db.name)
    plain = IndexModel([("type", 1), ("id", 1), ("version", 1)], name="history_version")
    await store.db["history"].create_indexes([plain])
    with pytest.raises(mongo_setup.IndexMismatch, match="history_version.*dropIndex"):
        await store.open()


async def test_other_start_up_failures_are_not_hidden(store):
    scripted = _Scripted(store.db["scratch"], [(13, False)])  # Unauthorized
    with pytest.raises(OperationFailure, match="scripted 13"):
        await mongo_setup.ensure_index(scripted, IndexModel([("x", 1)], name="scratch_x"))


async def test_documents_of_the_previous_layout_get_their_date_sort_key(store):
    """Migration to schema 2 (once per database): every live resource stores its ``date``
    sort key, a sentinel when it has none, so ``_sort=date`` can walk an index."""
    await store.write(put("Basic", "old"))
    await store.write(put("Basic", "gone"))
    await store.write(delete("Basic", "gone"))
    await store.db["resources"].update_one({"_id": "Basic/old"}, {"$unset": {"s.date": ""}})
    await store.db["counters"].delete_one({"_id": "schema"})
    await store.open()
    migrated = await store.db["resources"].find_one({"_id": "Basic/old"})
    assert migrated["s"]["date"] == {"lo": mongo_index.NO_VALUE_LAST, "hi": ""}
    assert "s" not in await store.db["resources"].find_one({"_id": "Basic/gone"})
    assert (await store.db["counters"].find_one({"_id": "schema"}))["version"] == (
        mongo_setup.SCHEMA_VERSION
    )


def test_storage_urls_choose_the_store():
    assert isinstance(open_store("mongomock://x"), MongoStore)
    assert isinstance(open_store("mongodb://localhost:1/db?serverSelectionTimeoutMS=1"), MongoStore)
    with pytest.raises(ValueError, match="unsupported storage URL"):
        open_store("postgres://x")


def test_the_stand_in_has_the_shape_of_pymongo_async():
    """Every public method of the shim exists in PyMongo's async API, awaitable exactly
    when PyMongo's is, with parameters PyMongo accepts."""
    from pymongo import AsyncMongoClient
    from pymongo.asynchronous.client_session import AsyncClientSession
    from pymongo.asynchronous.collection import AsyncCollection
    from pymongo.asynchronous.cursor import AsyncCursor
    from pymongo.asynchronous.database import AsyncDatabase

    pairs = [
        (shim.AsyncMockClient, AsyncMongoClient),
        (shim.AsyncMockDatabase, AsyncDatabase),
        (shim.AsyncMockCollection, AsyncCollection),
        (shim.AsyncMockSession, AsyncClientSession),
        (shim.AsyncMockCursor, AsyncCursor),
    ]
    for mock, real in pairs:
        for name, member in vars(mock).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            counterpart = getattr(real, name)
            assert inspect.iscoroutinefunction(member) == inspect.iscoroutinefunction(
                counterpart
            ), f"{mock.__name__}.{name}"
            accepted = inspect.signature(counterpart).parameters
            open_ended = any(p.kind is p.VAR_KEYWORD for p in accepted.values())
            for param in inspect.signature(member).parameters.values():
                if param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
                    continue
                assert open_ended or param.name in accepted, f"{mock.__name__}.{name}({param})"


class _PausedHistory:
    """The store's history collection, with the insert of one resource's history entries
    held until released: a writer that has its ``seq`` and ``lastUpdated`` but has not
    committed yet."""

    def __init__(self, collection: Any, id_: str) -> None:
        self._collection = collection
        self._id = id_
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._collection, name)

    async def insert_one(self, document: Any, **kwargs: Any) -> Any:
        if document.get("id") == self._id:
            self.reached.set()
            await self.release.wait()
        return await self._collection.insert_one(document, **kwargs)


async def test_a_version_never_commits_behind_a_visible_one(store):
    """While a writer that has taken its ``seq`` is slow to commit, no other write can
    commit (a later ``seq``) before it, so a client reading the history in between and
    again afterwards finds only newer versions the second time. On a standalone server
    (no transactions) the other write does commit first: what the docs say remains."""
    await store.write(put("Basic", "slow"))
    await store.write(put("Basic", "fast"))
    paused = _PausedHistory(store._history, "slow")
    store._history = paused
    slow = asyncio.create_task(store.write(put("Basic", "slow")))
    await paused.reached.wait()
    fast = asyncio.create_task(store.write(put("Basic", "fast")))
    finished, _ = await asyncio.wait({fast}, timeout=0.3)
    seen = {(e.id, e.version): e.seq for e in (await store.history(HistoryQuery())).entries}
    paused.release.set()
    slow_result, fast_result = await asyncio.gather(slow, fast)
    after = (await store.history(HistoryQuery())).entries
    new = [e.seq for e in after if (e.id, e.version) not in seen]
    if not store.transactions:
        assert finished and ("fast", 2) in seen
        assert min(new) < max(seen.values())  # the slow version appeared behind it
        return
    assert not finished  # the fast writer waited for the slow one to commit
    assert set(seen) == {("slow", 1), ("fast", 1)}
    assert min(new) > max(seen.values())
    assert slow_result.stored.seq < fast_result.stored.seq
    assert slow_result.stored.last_updated <= fast_result.stored.last_updated


async def test_history_polling_during_concurrent_writes_sees_every_version_once(store, monkeypatch):
    """https://hl7.org/fhir/R4/http.html#history: clients that follow the history while
    several writers commit, one with ``_since`` (the newest ``lastUpdated`` it has seen)
    and ``_cursor`` paging, one re-reading the newest page, see every version, and never
    see a version appear behind one they have already seen: ``seq`` and ``lastUpdated``
    follow the order in which versions commit."""
    ticks = itertools.count()
    epoch = datetime(2024, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(
        base, "now_instant", lambda: format_instant(epoch + timedelta(milliseconds=next(ticks)))
    )
    writers, writes = 10, 6
    since_seen: dict[tuple[str, int], tuple[int, int]] = {}
    tail_seen: dict[tuple[str, int], tuple[int, int]] = {}
    polls = itertools.count()
    writing = True

    async def writer(w: int) -> None:
        for n in range(writes):
            await store.write(put("Basic", "shared" if n % 3 == 0 else f"w{w}", f'"n":{n}'))

    async def poll_since(since: str | None) -> str | None:
        number, before, newest = next(polls), None, since
        while True:
            page = await store.history(HistoryQuery(since=since, count=4, before_seq=before))
            for e in page.entries:
                since_seen.setdefault((e.id, e.version), (number, e.seq))
                newest = max(newest or e.last_updated, e.last_updated)
            if page.next_before_seq is None:
                return newest
            before = page.next_before_seq

    async def follow_since() -> None:
        since = None
        while writing:
            since = await poll_since(since)
        await poll_since(since)

    async def follow_tail() -> None:
        while writing:
            number = next(polls)
            for e in (await store.history(HistoryQuery(count=100))).entries:
                tail_seen.setdefault((e.id, e.version), (number, e.seq))

    followers = [asyncio.create_task(follow_since()), asyncio.create_task(follow_tail())]
    await asyncio.gather(*(writer(w) for w in range(writers)))
    writing = False
    await asyncio.gather(*followers)

    total = writers * writes
    everything = await store.history(HistoryQuery(count=1000))
    versions = {(e.id, e.version) for e in everything.entries}
    assert len(everything.entries) == everything.total == len(versions) == total
    seqs = [e.seq for e in everything.entries]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == total
    if not store.transactions:  # documented: a standalone server orders by seq, not by commit
        return
    instants = [e.last_updated for e in everything.entries]
    assert instants == sorted(instants, reverse=True)  # lastUpdated follows seq
    assert set(since_seen) == versions  # the _since follower missed nothing
    for seen in (since_seen, tail_seen):  # a later look never finds an older seq
        order = sorted(seen.values())
        assert [seq for _, seq in order] == sorted(seq for _, seq in order)


def test_the_logged_description_of_a_store_hides_its_password():
    """No secret in the logs (security review, item 17): the start-up line names the
    store by its description."""
    store = MongoStore.from_url("mongomock://admin:s3cret-pw@logged/fhir")
    assert "s3cret-pw" not in store.description and "logged" in store.description

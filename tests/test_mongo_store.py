"""The MongoDB store at the storage level: versions, tombstones, If-Match as a
compare-and-set, history order and paging, all-or-nothing batches
(https://hl7.org/fhir/R4/http.html#versioning, https://hl7.org/fhir/R4/http.html#history).

Runs on the in-process stand-in (mongomock under ``mongomock_async``), answering as a
replica set and as a standalone server, and on a real MongoDB when ``MONGODB_URI`` is set
(each test in a database of its own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo import IndexModel
from pymongo.errors import OperationFailure

from fhir_server.storage import base, mongo_index, mongo_setup
from fhir_server.storage import mongomock_async as shim
from fhir_server.storage.base import (
    AlreadyExists,
    ConditionMatched,
    HistoryQuery,
    IndexEntries,
    TransactionsUnavailable,
    VersionConflict,
    WriteRequest,
)
from fhir_server.storage.mongo import MongoStore
from fhir_server.storage.open import open_store
from resources.fhir_datetime import format_instant
from resources.search.model import SearchParam, TokenRow
from resources.search.query import Clause, SearchQuery, TokenMatch

MONGODB_URI = os.environ.get("MONGODB_URI")


@pytest.fixture(params=["mongomock", "mongomock-standalone", "mongodb"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MongoStore]:
    name = f"t{uuid.uuid4().hex}"
    if request.param == "mongodb":
        if not MONGODB_URI:
            pytest.skip("set MONGODB_URI to run against a real MongoDB")
        instance = MongoStore.from_url(MONGODB_URI, database=f"fhir_test_{name}")
    elif request.param == "mongomock":
        instance = MongoStore.from_url(f"mongomock://{name}/fhir")
    else:
        instance = MongoStore.from_url(f"mongomock://{name}/fhir?standalone=true")
    await instance.open()
    yield instance
    await instance.client.drop_database(instance.db.name)
    await instance.close()


def body(text: str):
    return lambda version, last_updated: (
        f'{{"resourceType":"Basic","v":{version},"lu":"{last_updated}",{text}}}'.encode()
    )


def put(type_: str, id_: str, text: str = '"x":1', **kwargs) -> WriteRequest:
    return WriteRequest(type_, id_, "update", body(text), **kwargs)


CODE = SearchParam("Basic", "code", "token", "Basic.code")
TAGGED = IndexEntries([TokenRow("code", "http://x", "tag")])
IF_NONE_EXIST = SearchQuery(
    types=("Basic",), conditions=[Clause(CODE, (TokenMatch(system="http://x", code="tag"),))]
)


def conditional_create(id_: str) -> WriteRequest:
    return WriteRequest(
        "Basic",
        id_,
        "create",
        body('"code":"tag"'),
        must_not_exist=True,
        index=TAGGED,
        unless_exists=IF_NONE_EXIST,
    )


def delete(type_: str, id_: str, **kwargs) -> WriteRequest:
    return WriteRequest(type_, id_, "delete", **kwargs)


async def test_create_then_read_returns_the_stored_bytes(store):
    result = await store.write(put("Basic", "a", '"value":72.50,"$where":"1","a.b":{"$gt":""}'))
    assert result.created and result.changed and result.previous is None
    stored = await store.read("Basic", "a")
    assert stored == result.stored
    assert stored.version == 1 and stored.method == "update"
    assert b'"value":72.50,"$where":"1","a.b":{"$gt":""}' in stored.content


async def test_read_of_an_unknown_resource_is_none(store):
    assert await store.read("Basic", "nope") is None
    assert await store.vread("Basic", "nope", 1) is None


async def test_ids_are_literals_not_operators(store):
    await store.write(put("Basic", "$gt"))
    assert (await store.read("Basic", "$gt")).id == "$gt"
    assert await store.read("Basic", "$ne") is None


async def test_update_makes_versions_and_keeps_the_old_ones(store):
    await store.write(put("Basic", "a", '"n":1'))
    second = await store.write(put("Basic", "a", '"n":2'))
    assert not second.created
    assert second.stored.version == 2 and second.previous.version == 1
    assert b'"n":1' in (await store.vread("Basic", "a", 1)).content
    assert b'"n":2' in (await store.vread("Basic", "a", 2)).content
    assert (await store.read("Basic", "a")).version == 2
    assert second.stored.seq > second.previous.seq


async def test_last_updated_never_goes_backwards(store, monkeypatch):
    first = await store.write(put("Basic", "a"))
    monkeypatch.setattr(base, "now_instant", lambda: "2000-01-01T00:00:00.000Z")
    second = await store.write(put("Basic", "a"))
    assert second.stored.last_updated == first.stored.last_updated
    other = await store.write(put("Basic", "b"))  # nor across resources: it follows seq
    assert other.stored.last_updated == first.stored.last_updated
    assert first.stored.seq < second.stored.seq < other.stored.seq


async def test_create_of_a_taken_id_is_already_exists(store):
    await store.write(put("Basic", "a", '"n":1'))
    with pytest.raises(AlreadyExists):
        await store.write(WriteRequest("Basic", "a", "create", body('"n":2'), must_not_exist=True))
    assert b'"n":1' in (await store.read("Basic", "a")).content


async def test_if_match_with_the_current_version_writes(store):
    await store.write(put("Basic", "a"))
    result = await store.write(put("Basic", "a", if_match=1))
    assert result.stored.version == 2


async def test_if_match_with_another_version_is_a_conflict(store):
    await store.write(put("Basic", "a"))
    await store.write(put("Basic", "a"))
    with pytest.raises(VersionConflict) as raised:
        await store.write(put("Basic", "a", if_match=1))
    assert raised.value.current == 2
    with pytest.raises(VersionConflict) as raised:
        await store.write(put("Basic", "absent", if_match=1))
    assert raised.value.current is None


async def test_concurrent_if_match_writers_exactly_one_wins(store):
    await store.write(put("Basic", "a"))
    writes = [store.write(put("Basic", "a", f'"w":{n}', if_match=1)) for n in range(10)]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    wins = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(o, VersionConflict) for o in outcomes if o not in wins)
    current = await store.read("Basic", "a")
    assert current.version == 2 and current.content == wins[0].stored.content
    assert (await store.history(HistoryQuery("Basic", "a"))).total == 2


async def test_concurrent_plain_updates_all_apply_in_order(store):
    await store.write(put("Basic", "a"))
    results = await asyncio.gather(*(store.write(put("Basic", "a")) for _ in range(10)))
    assert sorted(r.stored.version for r in results) == list(range(2, 12))
    by_version = sorted(results, key=lambda r: r.stored.version)
    seqs = [r.stored.seq for r in by_version]
    assert seqs == sorted(seqs)
    page = await store.history(HistoryQuery("Basic", "a"))
    assert [e.version for e in page.entries] == list(range(11, 0, -1))


async def test_concurrent_creates_of_one_id_exactly_one_wins(store):
    writes = [
        store.write(WriteRequest("Basic", "a", "create", body(f'"w":{n}'), must_not_exist=True))
        for n in range(10)
    ]
    outcomes = await asyncio.gather(*writes, return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1
    assert all(isinstance(o, AlreadyExists) for o in outcomes if isinstance(o, BaseException))


async def test_conditional_create_without_a_match_creates(store):
    result = await store.write(conditional_create("a"))
    assert result.created
    page = await store.search(IF_NONE_EXIST, None, 10, True)
    assert [e.id for e in page.entries] == ["a"] and page.total == 1


async def test_conditional_create_with_a_match_writes_nothing(store):
    await store.write(put("Basic", "a", index=TAGGED))
    with pytest.raises(ConditionMatched) as raised:
        await store.write(conditional_create("b"))
    assert [m.id for m in raised.value.matches] == ["a"]
    assert await store.read("Basic", "b") is None


async def test_concurrent_conditional_creates_create_once(store):
    outcomes = await asyncio.gather(
        *(store.write(conditional_create(f"c{n}")) for n in range(10)), return_exceptions=True
    )
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    assert all(isinstance(o, ConditionMatched) for o in outcomes if o not in created)
    if store.transactions:
        assert len(created) == 1
    else:  # documented: a standalone server cannot make the check atomic with the write
        assert len(created) >= 1


async def test_deleted_resources_leave_the_search_indexes(store):
    await store.write(put("Basic", "a", index=TAGGED))
    await store.write(delete("Basic", "a"))
    assert (await store.search(IF_NONE_EXIST, None, 10, True)).total == 0
    assert (await store.write(conditional_create("b"))).created


async def test_delete_writes_a_tombstone(store):
    await store.write(put("Basic", "a"))
    result = await store.write(delete("Basic", "a"))
    assert result.changed and not result.created
    assert result.stored.version == 2 and result.stored.deleted
    assert result.stored.content is None
    current = await store.read("Basic", "a")
    assert current.deleted and current.version == 2
    assert (await store.vread("Basic", "a", 1)).content is not None


async def test_delete_of_a_deleted_or_absent_resource_changes_nothing(store):
    await store.write(put("Basic", "a"))
    tombstone = (await store.write(delete("Basic", "a"))).stored
    again = await store.write(delete("Basic", "a"))
    assert not again.changed and again.stored == tombstone
    absent = await store.write(delete("Basic", "never"))
    assert not absent.changed and absent.stored is None
    assert (await store.history(HistoryQuery("Basic", "a"))).total == 2
    assert await store.read("Basic", "never") is None


async def test_if_match_on_a_deleted_resource_is_a_conflict(store):
    await store.write(put("Basic", "a"))
    await store.write(delete("Basic", "a"))
    with pytest.raises(VersionConflict):
        await store.write(put("Basic", "a", if_match=2))


async def test_update_after_delete_recreates_with_the_next_version(store):
    await store.write(put("Basic", "a"))
    await store.write(delete("Basic", "a"))
    result = await store.write(put("Basic", "a"))
    assert result.created and result.stored.version == 3
    assert result.previous.deleted


async def test_history_is_newest_first_across_types(store):
    await store.write(put("Basic", "a"))
    await store.write(put("Patient", "p"))
    await store.write(put("Basic", "a"))
    await store.write(delete("Patient", "p"))
    page = await store.history(HistoryQuery())
    assert [(e.type, e.version) for e in page.entries] == [
        ("Patient", 2),
        ("Basic", 2),
        ("Patient", 1),
        ("Basic", 1),
    ]
    assert page.total == 4 and page.next_before_seq is None
    assert page.entries[0].deleted
    typed = await store.history(HistoryQuery("Basic"))
    assert [(e.id, e.version) for e in typed.entries] == [("a", 2), ("a", 1)]
    instance = await store.history(HistoryQuery("Patient", "p"))
    assert [e.version for e in instance.entries] == [2, 1]


async def test_history_pages_by_seq(store):
    for n in range(5):
        await store.write(put("Basic", f"r{n}"))
    first = await store.history(HistoryQuery(count=2))
    assert [e.id for e in first.entries] == ["r4", "r3"] and first.total == 5
    second = await store.history(HistoryQuery(count=2, before_seq=first.next_before_seq))
    assert [e.id for e in second.entries] == ["r2", "r1"] and second.total == 5
    last = await store.history(HistoryQuery(count=2, before_seq=second.next_before_seq))
    assert [e.id for e in last.entries] == ["r0"] and last.next_before_seq is None
    only_total = await store.history(HistoryQuery(count=0))
    assert only_total.entries == [] and only_total.total == 5


async def test_history_since(store, monkeypatch):
    instants = iter(["2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z"])
    monkeypatch.setattr(base, "now_instant", lambda: next(instants))
    await store.write(put("Basic", "a"))
    await store.write(put("Basic", "b"))
    page = await store.history(HistoryQuery(since="2024-01-15T00:00:00.000Z"))
    assert [e.id for e in page.entries] == ["b"] and page.total == 1


async def test_history_at_gives_the_versions_current_then(store, monkeypatch):
    instants = iter(
        ["2024-01-01T00:00:00.000Z", "2024-02-01T00:00:00.000Z", "2024-03-01T00:00:00.000Z"]
    )
    monkeypatch.setattr(base, "now_instant", lambda: next(instants))
    await store.write(put("Basic", "a"))  # a/1 from January, ended in March
    await store.write(put("Basic", "b"))  # b/1 from February
    await store.write(put("Basic", "a"))  # a/2 from March
    at = HistoryQuery(at_start="2024-02-15T00:00:00.000Z", at_end="2024-02-16T00:00:00.000Z")
    page = await store.history(at)
    assert [(e.id, e.version) for e in page.entries] == [("b", 1), ("a", 1)]


async def test_batch_applies_every_write(store):
    await store.write(put("Basic", "b"))
    batch = [put("Basic", "a"), put("Basic", "b", if_match=1), delete("Basic", "b")]
    if not store.transactions:  # a standalone server refuses, writing nothing
        with pytest.raises(TransactionsUnavailable, match="replica set"):
            await store.write_batch(batch)
        assert await store.read("Basic", "a") is None
        return
    results = await store.write_batch(batch)
    assert [(r.stored.id, r.stored.version) for r in results] == [("a", 1), ("b", 2), ("b", 3)]
    assert (await store.read("Basic", "b")).deleted


async def test_failed_batch_writes_nothing(store):
    await store.write(put("Basic", "b", '"n":1'))
    before = await store.history(HistoryQuery())
    failure = VersionConflict if store.transactions else TransactionsUnavailable
    with pytest.raises(failure):
        await store.write_batch(
            [
                put("Basic", "a"),
                put("Basic", "b", '"n":2'),
                delete("Basic", "c"),
                put("Basic", "b", if_match=1),
            ]
        )
    assert await store.read("Basic", "a") is None
    assert b'"n":1' in (await store.read("Basic", "b")).content
    after = await store.history(HistoryQuery())
    assert after.entries == before.entries and after.total == 1


async def test_a_batch_of_one_works_everywhere(store):
    [result] = await store.write_batch([put("Basic", "a")])
    assert result.stored.version == 1
    assert await store.write_batch([]) == []


async def test_a_missing_history_version_is_rebuilt_by_the_next_write(store):
    """A standalone write that died between the resource and the history write."""
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    await store.db["history"].delete_one({"type": "Basic", "id": "a", "version": 2})
    await store.write(put("Basic", "a", '"n":3'))
    rebuilt = await store.vread("Basic", "a", 2)
    assert rebuilt is not None and b'"n":2' in rebuilt.content
    assert [e.version for e in (await store.history(HistoryQuery("Basic", "a"))).entries] == [
        3,
        2,
        1,
    ]


async def test_reopening_keeps_data_and_indexes(store):
    await store.write(put("Basic", "a"))
    await store.open()  # creating collections and indexes again is a no-op
    assert (await store.read("Basic", "a")).version == 1
    with pytest.raises(AlreadyExists):
        await store.write(WriteRequest("Basic", "a", "create", body(""), must_not_exist=True))
    info = await store.db["history"].index_information()
    assert info["history_version"]["unique"]


async def test_servers_starting_at_once_on_a_new_database_all_start(store):
    """Several server processes starting together against one new database: each one
    creates the collections, indexes and the sequence document, and none fails on what
    another made a moment before (``NamespaceExists`` from the stand-in, as from a
    ``mongod`` before 7.0)."""
    if isinstance(store.client, shim.AsyncMockClient):
        server = f"mongomock://t{uuid.uuid4().hex}/fhir"
        url = server if store.transactions else f"{server}?standalone=true"
        others = [MongoStore.from_url(url) for _ in range(6)]
    else:
        database = f"{store.db.name}_b"
        others = [MongoStore.from_url(MONGODB_URI, database=database) for _ in range(4)]
    first = others[0]
    try:
        await asyncio.gather(*(other.open() for other in others))
        await asyncio.gather(*(other.open() for other in others))  # and again: a no-op
        assert {"resources", "history", "counters"} <= set(await first.db.list_collection_names())
        info = await first.db["resources"].index_information()
        assert {m.document["name"] for m in mongo_index.INDEXES} <= set(info)
        assert (await first.db["history"].index_information())["history_version"]["unique"]
        assert await first.db["counters"].count_documents({"_id": "history_seq"}) == 1
        results = [await other.write(put("Basic", f"p{n}")) for n, other in enumerate(others)]
        assert [r.stored.seq for r in results] == list(range(1, len(others) + 1))
    finally:
        await first.client.drop_database(first.db.name)
        for other in others:
            await other.close()


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

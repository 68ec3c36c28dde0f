"""The MongoDB store at the storage level: versions, tombstones, If-Match as a
compare-and-set, history order and paging, all-or-nothing batches
(https://hl7.org/fhir/R4/http.html#versioning, https://hl7.org/fhir/R4/http.html#history).

Runs on the in-process stand-in (mongomock under ``mongomock_async``), answering as a
replica set and as a standalone server, and on a real MongoDB when ``MONGODB_URI`` is set
(each test in a database of its own, dropped afterwards).
"""

from __future__ import annotations

import asyncio
import uuid

import pytest

from fhir_server.storage import base, mongo_index
from fhir_server.storage import mongomock_async as shim
from fhir_server.storage.base import (
    AlreadyExists,
    ConditionMatched,
    HistoryQuery,
    TransactionsUnavailable,
    VersionConflict,
    WriteRequest,
)
from fhir_server.storage.mongo import MongoStore
from tests.test_mongo_store.support import (
    IF_NONE_EXIST,
    MONGODB_URI,
    TAGGED,
    body,
    conditional_create,
    delete,
    put,
)


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

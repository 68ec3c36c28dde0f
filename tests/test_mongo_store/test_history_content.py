"""MongoDB store: history and vread accept a current version's history document without
its content (the form of storing a content once, which writers switch to once every
server reads it): the content comes from the resource document, or from the history
document again when the version was replaced meanwhile
(https://hl7.org/fhir/R4/http.html#history, #vread)."""

from __future__ import annotations

from fhir_server.storage.base import HistoryQuery, WriteRequest
from fhir_server.storage.mongo import MongoStore
from tests.test_mongo_store.support import put


async def _drop_current_content(store: MongoStore, version: int) -> None:
    result = await store.db["history"].update_one(
        {"type": "Basic", "id": "a", "version": version}, {"$unset": {"content": ""}}
    )
    assert result.modified_count == 1


async def test_writers_keep_both_copies(store: MongoStore) -> None:
    """Until every server reads the single-copy form (servers of an earlier release would
    lose a content they replace), the current content is in both documents."""
    await store.write(put("Basic", "a", '"n":1'))
    doc = await store.db["history"].find_one({"type": "Basic", "id": "a", "version": 1})
    assert doc is not None and b'"n":1' in bytes(doc["content"])


async def test_a_current_version_without_history_content(store: MongoStore) -> None:
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    await store.write(WriteRequest("Basic", "a", "delete"))
    await store.write(put("Basic", "a", '"n":4'))
    expected = await store.history(HistoryQuery("Basic", "a"))
    await _drop_current_content(store, 4)

    page = await store.history(HistoryQuery("Basic", "a"))
    assert [(e.version, e.content) for e in page.entries] == [
        (e.version, e.content) for e in expected.entries
    ]
    assert b'"n":4' in page.entries[0].content and page.entries[1].content is None
    vread = await store.vread("Basic", "a", 4)
    assert vread is not None and vread.content == page.entries[0].content
    everything = await store.history(HistoryQuery())
    assert [e.content for e in everything.entries] == [e.content for e in page.entries]


async def test_a_version_replaced_during_a_read_keeps_its_content(store: MongoStore) -> None:
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    await _drop_current_content(store, 2)
    read_before = await store.db["history"].find_one({"type": "Basic", "id": "a", "version": 2})
    assert read_before is not None and "content" not in read_before
    # a writer of the single-copy form replaces it: its content moves to its history doc
    await store.db["history"].update_one(
        {"type": "Basic", "id": "a", "version": 2},
        {"$set": {"content": (await store.read("Basic", "a")).content}},
    )
    await store.write(put("Basic", "a", '"n":3'))
    [version] = await store._with_contents([read_before])
    assert version.version == 2 and version.content is not None and b'"n":2' in version.content

"""MongoDB store: a version's content is stored once. The current version's content is in
its resource document only; it moves to its history document when a newer version
replaces it. History and vread give every version's content, including a version
replaced while a history page was being read, and documents written when both copies
were kept (https://hl7.org/fhir/R4/http.html#history, #vread)."""

from __future__ import annotations

from fhir_server.storage.base import HistoryQuery, WriteRequest
from fhir_server.storage.mongo import MongoStore
from tests.test_mongo_store import put, store  # noqa: F401 - the store fixture


async def _history_doc(store: MongoStore, version: int) -> dict:  # noqa: F811 - the fixture
    doc = await store.db["history"].find_one({"type": "Basic", "id": "a", "version": version})
    assert doc is not None
    return doc


async def test_the_current_content_is_only_in_the_resource(store: MongoStore) -> None:  # noqa: F811
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    await store.write(WriteRequest("Basic", "a", "delete"))
    await store.write(put("Basic", "a", '"n":4'))

    assert (await _history_doc(store, 4)).get("content") is None  # current: resource only
    assert b'"n":4' in bytes((await store.db["resources"].find_one({"_id": "Basic/a"}))["content"])
    assert b'"n":1' in bytes((await _history_doc(store, 1))["content"])
    assert b'"n":2' in bytes((await _history_doc(store, 2))["content"])

    page = await store.history(HistoryQuery("Basic", "a"))
    contents = [e.content for e in page.entries]
    assert [e.version for e in page.entries] == [4, 3, 2, 1]
    assert contents[1] is None  # the tombstone
    for version, content in ((4, contents[0]), (2, contents[2]), (1, contents[3])):
        assert content is not None and f'"n":{version}'.encode() in content
        vread = await store.vread("Basic", "a", version)
        assert vread is not None and vread.content == content
    everything = await store.history(HistoryQuery())
    assert [e.content for e in everything.entries] == contents


async def test_a_version_replaced_during_a_read_keeps_its_content(store: MongoStore) -> None:  # noqa: F811
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    read_before = await _history_doc(store, 2)  # current when read: no content of its own
    assert read_before.get("content") is None
    await store.write(put("Basic", "a", '"n":3'))  # replaces it meanwhile
    [version] = await store._with_contents([read_before])
    assert version.version == 2 and version.content is not None and b'"n":2' in version.content


async def test_documents_with_both_copies_are_read_as_before(store: MongoStore) -> None:  # noqa: F811
    """What earlier versions of the server wrote: the current content in history too."""
    await store.write(put("Basic", "a", '"n":1'))
    await store.write(put("Basic", "a", '"n":2'))
    resource = await store.db["resources"].find_one({"_id": "Basic/a"})
    await store.db["history"].update_one(
        {"type": "Basic", "id": "a", "version": 2}, {"$set": {"content": resource["content"]}}
    )
    page = await store.history(HistoryQuery("Basic", "a"))
    assert [e.version for e in page.entries] == [2, 1]
    assert b'"n":2' in page.entries[0].content and b'"n":1' in page.entries[1].content
    await store.write(put("Basic", "a", '"n":3'))
    vread = await store.vread("Basic", "a", 2)
    assert vread is not None and b'"n":2' in vread.content

"""The MongoDB stand-in (``fhir_server.storage.mongomock_async``) behaves as MongoDB does
where the store depends on it: transactions with snapshot isolation and write conflicts
(https://www.mongodb.com/docs/manual/core/transactions-production-consideration/),
PyMongo's ``with_transaction`` retries
(https://pymongo.readthedocs.io/en/stable/api/pymongo/asynchronous/client_session.html),
and the errors of collection and index creation that concurrent start-ups meet.

The same behaviours of a real server are what ``tests/test_mongo_store/`` relies on
when it runs with ``MONGODB_URI``; these tests pin the stand-in to them.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from pymongo import IndexModel
from pymongo.errors import CollectionInvalid, DuplicateKeyError, OperationFailure

from fhir_server.storage.mongomock_async import AsyncMockClient


@pytest.fixture
def client() -> AsyncMockClient:
    return AsyncMockClient(f"stand-in-{uuid.uuid4().hex}")


def docs(client: AsyncMockClient) -> Any:
    return client["db"]["docs"]


async def committed(client: AsyncMockClient, id_: str) -> Any:
    found = await docs(client).find_one({"_id": id_})
    return None if found is None else found["n"]


async def test_a_transaction_is_invisible_until_it_commits(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as session:
        await session.start_transaction()
        await docs(client).update_one({"_id": "a"}, {"$set": {"n": 2}}, session=session)
        await docs(client).insert_one({"_id": "b", "n": 1}, session=session)
        assert (await docs(client).find_one({"_id": "a"}, session=session))["n"] == 2
        assert await committed(client, "a") == 1 and await committed(client, "b") is None
        await session.commit_transaction()
    assert await committed(client, "a") == 2 and await committed(client, "b") == 1


async def test_an_aborted_transaction_leaves_nothing(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as session:
        await session.start_transaction()
        await docs(client).delete_one({"_id": "a"}, session=session)
        await docs(client).insert_one({"_id": "b", "n": 1}, session=session)
        await session.abort_transaction()
    assert await committed(client, "a") == 1 and await committed(client, "b") is None


async def test_a_transaction_reads_its_snapshot(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as session:
        await session.start_transaction()
        await docs(client).update_one({"_id": "a"}, {"$set": {"n": 2}})  # outside, commits
        assert (await docs(client).find_one({"_id": "a"}, session=session))["n"] == 1
        assert await docs(client).count_documents({"n": 2}, session=session) == 0
        await session.abort_transaction()


async def test_writing_a_document_another_transaction_wrote_is_a_write_conflict(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as first, client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await docs(client).update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=first)
        with pytest.raises(OperationFailure) as raised:
            await docs(client).update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=second)
        assert raised.value.code == 112
        assert raised.value.has_error_label("TransientTransactionError")
        await second.abort_transaction()
        await first.commit_transaction()
    assert await committed(client, "a") == 2


async def test_writing_a_document_changed_since_the_snapshot_is_a_write_conflict(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as late, client.start_session() as early:
        await late.start_transaction()
        await early.start_transaction()
        await docs(client).update_one({"_id": "a"}, {"$inc": {"n": 1}}, session=early)
        await early.commit_transaction()
        with pytest.raises(OperationFailure) as raised:  # committed after late's snapshot
            await docs(client).find_one_and_update({"_id": "a"}, {"$inc": {"n": 1}}, session=late)
        assert raised.value.code == 112
        await late.abort_transaction()


async def test_inserting_an_id_another_transaction_inserted_is_a_write_conflict(client):
    async with client.start_session() as first, client.start_session() as second:
        await first.start_transaction()
        await second.start_transaction()
        await docs(client).insert_one({"_id": "a", "n": 1}, session=first)
        with pytest.raises(OperationFailure, match="another transaction"):
            await docs(client).insert_one({"_id": "a", "n": 2}, session=second)
        await first.commit_transaction()
        await second.abort_transaction()
    with pytest.raises(DuplicateKeyError):
        await docs(client).insert_one({"_id": "a", "n": 3})


async def test_a_write_outside_transactions_waits_for_the_writing_transaction(client):
    await docs(client).insert_one({"_id": "a", "n": 1})
    async with client.start_session() as session:
        await session.start_transaction()
        await docs(client).update_one({"_id": "a"}, {"$set": {"n": 2}}, session=session)
        outside = asyncio.create_task(docs(client).update_one({"_id": "a"}, {"$inc": {"n": 10}}))
        await asyncio.sleep(0.01)
        assert not outside.done()
        await session.commit_transaction()
        await outside
    assert await committed(client, "a") == 12


async def test_with_transaction_runs_the_callback_again_after_a_conflict(client):
    await docs(client).insert_one({"_id": "counter", "n": 0})
    attempts = 0

    async def increment(session: Any) -> int:
        nonlocal attempts
        attempts += 1
        found = await docs(client).find_one({"_id": "counter"}, session=session)
        await asyncio.sleep(0)  # let the others read the same value
        await docs(client).replace_one(
            {"_id": "counter"}, {"_id": "counter", "n": found["n"] + 1}, session=session
        )
        return found["n"] + 1

    async def one() -> int:
        async with client.start_session() as session:
            return await session.with_transaction(increment)

    values = await asyncio.gather(*(one() for _ in range(8)))
    assert sorted(values) == list(range(1, 9)) and attempts > 8  # no lost update
    assert await committed(client, "counter") == 8


async def test_with_transaction_does_not_retry_other_errors(client):
    calls = 0

    async def failing(session: Any) -> None:
        nonlocal calls
        calls += 1
        await docs(client).insert_one({"_id": "x", "n": 1}, session=session)
        raise ValueError("no")

    async with client.start_session() as session:
        with pytest.raises(ValueError):
            await session.with_transaction(failing)
    assert calls == 1 and await committed(client, "x") is None


async def test_a_standalone_server_refuses_transactions():
    standalone = AsyncMockClient(f"stand-in-{uuid.uuid4().hex}", replica_set=False)
    async with standalone.start_session() as session:
        with pytest.raises(OperationFailure) as raised:
            await session.start_transaction()
    assert raised.value.code == 20


async def test_creating_an_existing_collection_fails_as_pymongo_and_mongod_do(client):
    await client["db"].create_collection("c")
    with pytest.raises(CollectionInvalid):
        await client["db"].create_collection("c")
    with pytest.raises(OperationFailure) as raised:
        await client["db"].create_collection("c", check_exists=False)
    assert raised.value.code == 48


@pytest.mark.parametrize(
    ("other", "code"),
    [
        (IndexModel([("a", 1)], name="a_idx"), None),  # identical: a no-op
        (IndexModel([("a", 1)], name="a_idx", unique=True), 85),
        (IndexModel([("a", 1)], name="other_name"), 85),
        (IndexModel([("b", 1)], name="a_idx"), 86),
    ],
)
async def test_clashing_indexes_fail_with_the_codes_of_mongodb(client, other, code):
    await docs(client).create_indexes([IndexModel([("a", 1)], name="a_idx")])
    if code is None:
        await docs(client).create_indexes([other])
        return
    with pytest.raises(OperationFailure) as raised:
        await docs(client).create_indexes([other])
    assert raised.value.code == code

"""Group commit of the SQLite store (``fhir_server.storage.sqlite_write``): the write
batches queued while the writer is busy are committed in one transaction, each in a
savepoint of its own, so a batch that fails is rolled back alone and the others commit.

The writer is held busy by a ``run_write`` that waits on an event, so the batches queue
behind it for certain; the transactions are counted on the writer's connection (its
``BEGIN`` statements)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage import sqlite_write
from fhir_server.storage.base import ConditionMatched, VersionConflict, WriteRequest
from fhir_server.storage.sqlite import SQLiteStore
from tests.store_support import observation_query, put, sqlite_store


def _observation(id_: str, code: str = "1-8") -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": id_,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
    }


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with sqlite_store(tmp_path / "fhir.sqlite3") as opened:
        yield opened


async def _queued_behind_a_busy_writer(
    store: SQLiteStore, writes: list[Awaitable[Any]]
) -> tuple[list[Any], list[str]]:
    """Run ``writes`` while the writer thread is held busy, then let it go: their
    outcomes (results or errors) and the statements the writer ran meanwhile."""
    release = threading.Event()
    statements: list[str] = []
    assert store._writer is not None
    blocker = asyncio.ensure_future(store.run_write(lambda conn: release.wait(10)))
    await asyncio.sleep(0.05)  # the writer thread is in the blocker now
    tasks = [asyncio.ensure_future(w) for w in writes]
    await asyncio.sleep(0.05)  # every batch is queued
    store._writer.set_trace_callback(statements.append)
    release.set()
    await blocker
    outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    store._writer.set_trace_callback(None)
    return outcomes, statements


async def test_queued_batches_share_one_commit(store: SQLiteStore) -> None:
    writes = [store.write(put(_observation(f"o{n}"))) for n in range(10)]
    outcomes, statements = await _queued_behind_a_busy_writer(store, writes)
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    assert [o.stored.id for o in outcomes] == [f"o{n}" for n in range(10)]
    seqs = [o.stored.seq for o in outcomes]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10  # in queue order, one seq each
    assert statements.count("BEGIN IMMEDIATE") == 1
    page = await store.search(observation_query([("code", "1-8")], 50), None, 50, True)
    assert page.total == 10


async def test_a_failed_batch_is_rolled_back_alone(store: SQLiteStore) -> None:
    half = put(_observation("half", "9-9"))
    # the batch writes "half" and "other", then "half" again at a version it never had:
    # it fails where that write is applied, after the first two, and none may remain
    stale = dataclasses.replace(put({**_observation("half"), "status": "amended"}), if_match=7)
    batches = [
        store.write_batch([put(_observation("before"))]),
        store.write_batch([half, put(_observation("other", "9-9")), stale]),
        store.write_batch([put(_observation("after"))]),
    ]
    outcomes, statements = await _queued_behind_a_busy_writer(store, batches)
    assert isinstance(outcomes[1], VersionConflict) and outcomes[1].current == 1
    assert [r.stored.id for r in outcomes[0]] == ["before"]
    assert [r.stored.id for r in outcomes[2]] == ["after"]
    assert statements.count("BEGIN IMMEDIATE") == 1 and "ROLLBACK TO batch" in statements
    assert await store.read("Observation", "half") is None
    assert await store.read("Observation", "other") is None
    gone = await store.search(observation_query([("code", "9-9")]), None, 10, True)
    assert gone.total == 0  # nor their index rows
    # the seqs the rolled-back batch had are the next batch's: no gap in the history
    assert outcomes[2][0].stored.seq == outcomes[0][0].stored.seq + 1
    events = await store.outbox.events_after(0, 100)
    assert [(e.type, e.id) for e in events][-2:] == [
        ("Observation", "before"),
        ("Observation", "after"),
    ]


async def test_a_batch_that_lost_its_compare_and_set_writes_nothing(store: SQLiteStore) -> None:
    """A booking's batch: the Appointment, then the Slot at the version read; when the Slot
    changed meanwhile the batch ends before the Appointment is written."""
    await store.write(put(_observation("slot")))
    await store.write(put({**_observation("slot"), "status": "amended"}))  # version 2
    statements: list[str] = []
    assert store._writer is not None
    store._writer.set_trace_callback(statements.append)
    stale = dataclasses.replace(put(_observation("slot")), if_match=1)
    with pytest.raises(VersionConflict) as raised:
        await store.write_batch([put(_observation("booking")), stale])
    store._writer.set_trace_callback(None)
    assert raised.value.current == 2
    assert not [s for s in statements if s.startswith(("INSERT", "UPDATE"))]
    assert "ROLLBACK" in statements
    assert await store.read("Observation", "booking") is None


async def test_a_small_write_runs_on_the_event_loop_when_the_writer_is_free(
    store: SQLiteStore,
) -> None:
    """No hand-off to the writer thread while nothing waits; while another process holds
    the turn (a lock of its own on the lock file), the write waits on the writer thread."""
    threads: list[str] = []
    assert store._writer is not None
    store._writer.set_trace_callback(lambda _: threads.append(threading.current_thread().name))
    await store.write(put(_observation("now")))
    assert set(threads) == {threading.current_thread().name}

    threads.clear()
    other = os.open(f"{store.path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(other, fcntl.LOCK_EX)  # another process's turn
        waiting = asyncio.ensure_future(store.write(put(_observation("later"))))
        await asyncio.sleep(0.1)
        assert not waiting.done() and threads == []
        fcntl.flock(other, fcntl.LOCK_UN)
        assert (await waiting).stored.id == "later"
    finally:
        os.close(other)
    store._writer.set_trace_callback(None)
    assert threads and all(name.startswith("sqlite-writer") for name in threads)


async def test_a_conditional_create_sees_the_batches_committed_with_it(store: SQLiteStore) -> None:
    """Two queued creates with the same If-None-Exist: the second sees the first, as it
    would in transactions of their own."""
    condition = observation_query([("code", "5-5")])

    def create(id_: str) -> WriteRequest:
        return dataclasses.replace(
            put(_observation(id_, "5-5")), method="create", unless_exists=condition
        )

    outcomes, statements = await _queued_behind_a_busy_writer(
        store, [store.write(create("first")), store.write(create("second"))]
    )
    assert outcomes[0].stored.id == "first"
    assert isinstance(outcomes[1], ConditionMatched)
    assert [e.id for e in outcomes[1].matches] == ["first"]
    assert statements.count("BEGIN IMMEDIATE") == 1
    assert await store.read("Observation", "second") is None


async def test_a_group_stops_at_its_size_in_writes(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Big batches (an audit trail's, an import's) are not merged into one long
    transaction that the other processes' writes would wait for."""
    monkeypatch.setattr(sqlite_write, "GROUP_WRITES", 4)
    batches = [
        store.write_batch([put(_observation(f"b{n}-{k}")) for k in range(3)]) for n in range(3)
    ]
    outcomes, statements = await _queued_behind_a_busy_writer(store, batches)
    assert all(not isinstance(o, BaseException) for o in outcomes), outcomes
    assert statements.count("BEGIN IMMEDIATE") == 3  # 3 + 3 writes is past 4: one each


async def test_a_failed_batch_is_answered_once_the_group_has_committed(
    store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller that looks at the store after its error (the workflow rules find the
    resource that made a conditional create fail, to answer 409) sees what the batches
    committed with it wrote: the error comes after the COMMIT."""
    condition = observation_query([("code", "5-5")])
    seen: list[bool] = []

    def committed_first() -> bool:
        with contextlib.closing(sqlite3.connect(store.path)) as other:
            found = other.execute(
                "SELECT 1 FROM resource WHERE type='Observation' AND id='first'"
            ).fetchone()
        return found is not None

    queue = store._queue_write

    def watched(requests: Any) -> Any:
        done = queue(requests)
        if requests[0].id == "second":
            # called on the writer thread at the moment the batch is answered
            done.add_done_callback(lambda _: seen.append(committed_first()))
        return done

    monkeypatch.setattr(store, "_queue_write", watched)

    def create(id_: str) -> WriteRequest:
        return dataclasses.replace(
            put(_observation(id_, "5-5")), method="create", unless_exists=condition
        )

    outcomes, _ = await _queued_behind_a_busy_writer(
        store, [store.write(create("first")), store.write(create("second"))]
    )
    assert isinstance(outcomes[1], ConditionMatched)
    assert seen == [True]


async def test_a_write_keeps_its_place_behind_the_writer_threads_other_work(
    store: SQLiteStore,
) -> None:
    """A write does not run on the event loop ahead of work already given to the writer
    thread (an outbox cursor's transaction): they run in the order they were asked for."""
    busy = asyncio.ensure_future(store._in_writer(time.sleep, 0.2))  # the thread, not the turn
    await asyncio.sleep(0.05)
    seen: list[int] = []

    def job(conn: sqlite3.Connection) -> None:
        found = conn.execute("SELECT count(*) FROM resource WHERE id='late'").fetchone()
        seen.append(found[0])

    earlier = asyncio.ensure_future(store.run_write(job))
    await asyncio.sleep(0)  # it is queued behind the sleep
    await store.write(put(_observation("late")))
    await earlier
    await busy
    assert seen == [0]  # the job ran first, as asked

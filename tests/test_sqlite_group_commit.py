"""Group commit of the SQLite store (``fhir_server.storage.sqlite_write``): the writes a
process queues while another is applied commit together, each all-or-nothing on its own
(a refused one leaves the others committed), compare-and-set stays atomic inside a group
and across processes, and parameter ids interned by a rolled-back write are forgotten."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from fhir_server.storage.base import AlreadyExists, HistoryQuery, VersionConflict, WriteRequest
from fhir_server.storage.open import open_store
from fhir_server.storage.sqlite import SQLiteStore
from resources.search.parameters import search_params
from resources.search.parse import parse_search
from tests.store_support import put


def _patient(id_: str, text: str = "") -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id_, "name": [{"text": text or id_}]}


def _basic(id_: str, code: str, subject: str | None = None) -> dict[str, Any]:
    basic: dict[str, Any] = {
        "resourceType": "Basic",
        "id": id_,
        "code": {"coding": [{"system": "urn:test", "code": code}]},
    }
    if subject:
        basic["subject"] = {"reference": subject}
    return basic


async def _open(path: Path) -> SQLiteStore:
    store = open_store(f"sqlite:///{path}")
    assert isinstance(store, SQLiteStore)
    await store.open()
    return store


async def _found(store: SQLiteStore, type_: str, items: list[tuple[str, str]]) -> list[str]:
    """The ids a search of ``type_`` finds."""
    query = parse_search(
        [type_], items, strict=True, params_for=search_params, max_count=100, default_count=10
    )
    return [e.id for e in (await store.search(query, None, 10, False)).entries]


def _count_transactions(store: SQLiteStore) -> list[str]:
    """The transactions the writer connection begins from now on (SQLite's statement
    trace of the real connection)."""
    begun: list[str] = []
    assert store._writer is not None
    store._writer.set_trace_callback(
        lambda sql: begun.append(sql) if sql.startswith("BEGIN") else None
    )
    return begun


async def test_a_refused_write_leaves_the_others_of_its_group_committed(tmp_path: Path) -> None:
    store = await _open(tmp_path / "fhir.sqlite3")
    try:
        await store.write(put(_patient("taken")))
        begun = _count_transactions(store)
        # one write of two: the first stored, then refused by the second (a stale If-Match)
        refused_batch = [put(_patient("rolled-back")), _with(put(_patient("taken")), if_match=7)]
        outcomes = await asyncio.gather(
            store.write(put(_patient("a"))),
            store.write_batch(refused_batch),
            store.write(put(_patient("b"))),
            store.write(_with(put(_patient("taken")), must_not_exist=True)),
            store.write(put(_patient("c"))),
            return_exceptions=True,
        )
        assert len(begun) == 1  # one transaction for the five writes
        assert isinstance(outcomes[1], VersionConflict) and outcomes[1].current == 1
        assert isinstance(outcomes[3], AlreadyExists)
        for n, id_ in ((0, "a"), (2, "b"), (4, "c")):
            result = outcomes[n]
            assert not isinstance(result, BaseException)
            stored = await store.read("Patient", id_)
            assert stored is not None and stored.version == 1
            assert result.stored is not None and result.stored.seq == stored.seq
        # nothing of the refused write: no resource, history, event or index row
        assert await store.read("Patient", "rolled-back") is None
        history = await store.history(HistoryQuery(type="Patient", count=100))
        assert sorted(v.id for v in history.entries) == ["a", "b", "c", "taken"]
        events = await store.outbox.events_after(0, 100)
        assert sorted(e.id for e in events) == ["a", "b", "c", "taken"]
        # versions are numbered without the refused write's: seqs follow one another
        assert sorted(v.seq for v in history.entries) == list(range(1, 5))
        assert await _found(store, "Patient", [("name", "rolled-back")]) == []
    finally:
        await store.close()


def _with(request: WriteRequest, **changes: Any) -> WriteRequest:
    return replace(request, **changes)


async def test_parameter_ids_of_a_rolled_back_write_are_forgotten(tmp_path: Path) -> None:
    """The first Basic interns (Basic, code) in a write that is rolled back; the next
    write of the group must intern it again (a stale cached id would be the id SQLite
    gives the next new parameter), as another process reading the file sees."""
    path = tmp_path / "fhir.sqlite3"
    store = await _open(path)
    try:
        await store.write(put(_patient("z")))
        begun = _count_transactions(store)
        failing = [put(_basic("b1", "X")), _with(put(_patient("z")), if_match=9)]
        outcomes = await asyncio.gather(
            store.write_batch(failing),
            store.write(put(_basic("b2", "Y", subject="Patient/z"))),
            return_exceptions=True,
        )
        assert len(begun) == 1
        assert isinstance(outcomes[0], VersionConflict)
        assert not isinstance(outcomes[1], BaseException)
    finally:
        await store.close()
    other = await _open(path)  # another process: parameter ids from the file only
    try:
        assert await _found(other, "Basic", [("code", "urn:test|Y")]) == ["b2"]
        assert await _found(other, "Basic", [("subject", "Patient/z")]) == ["b2"]
        assert await _found(other, "Basic", [("code", "urn:test|X")]) == []
    finally:
        await other.close()


async def test_a_call_and_writes_run_in_queue_order(tmp_path: Path) -> None:
    """``run_write`` (the outbox's cursor changes) waits its turn among the writes."""
    store = await _open(tmp_path / "fhir.sqlite3")
    try:
        seen: list[int] = []

        def count(conn: Any) -> None:
            seen.append(conn.execute("SELECT count(*) FROM resource").fetchone()[0])

        await asyncio.gather(
            store.write(put(_patient("a"))),
            store.run_write(count),
            store.write(put(_patient("b"))),
        )
        assert seen == [1]
        assert await store.read("Patient", "b") is not None
    finally:
        await store.close()


# -- two processes -----------------------------------------------------------------------


def _increments(path: str, worker: str, tasks: int, each: int) -> None:
    """In its own process: ``tasks`` concurrent tasks each add 1 to the counter ``each``
    times by compare-and-set (read the version, write with If-Match, again on conflict)."""

    async def run() -> None:
        store = await _open(Path(path))

        async def task(n: int) -> None:
            done = 0
            while done < each:
                current = await store.read("Patient", "counter")
                assert current is not None and current.content is not None
                count = int(json.loads(current.content)["name"][0]["text"])
                body = _patient("counter", str(count + 1))
                try:
                    await store.write(_with(put(body), if_match=current.version))
                except VersionConflict:
                    continue
                done += 1
                await store.write(put(_patient(f"{worker}-{n}-{done}")))

        try:
            await asyncio.gather(*(task(n) for n in range(tasks)))
        finally:
            await store.close()

    asyncio.run(run())


async def test_compare_and_set_across_two_processes_loses_no_update(tmp_path: Path) -> None:
    path = tmp_path / "fhir.sqlite3"
    store = await _open(path)
    await store.write(put(_patient("counter", "0")))
    await store.close()
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_increments, args=(str(path), name, 6, 8)) for name in ("p", "q")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=240)
        assert worker.exitcode == 0
    store = await _open(path)
    try:
        counter = await store.read("Patient", "counter")
        assert counter is not None and counter.version == 1 + 2 * 6 * 8
        history = await store.history(HistoryQuery("Patient", "counter", count=200))
        for version in history.entries:  # every version saw the one before it
            assert version.content is not None
            text = json.loads(version.content)["name"][0]["text"]
            assert int(text) == version.version - 1
        everything = await store.history(HistoryQuery(type="Patient", count=1))
        assert everything.total == 1 + 2 * 6 * 8 + 2 * 6 * 8
    finally:
        await store.close()


# -- over HTTP, on every store -----------------------------------------------------------


async def test_concurrent_if_match_updates_one_wins(client: httpx.AsyncClient) -> None:
    """Concurrent updates with the same If-Match (one group on SQLite): one 200, the
    others 412, and the resource has the winner's version."""
    created = await client.put("Patient/cas", json=_patient("cas"))
    assert created.status_code == 201

    async def update(n: int) -> httpx.Response:
        return await client.put(
            "Patient/cas", json=_patient("cas", f"try {n}"), headers={"If-Match": 'W/"1"'}
        )

    answers = await asyncio.gather(*(update(n) for n in range(10)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [412] * 9
    winner = next(a for a in answers if a.status_code == 200).json()["name"][0]["text"]
    current = (await client.get("Patient/cas")).json()
    assert current["meta"]["versionId"] == "2" and current["name"][0]["text"] == winner

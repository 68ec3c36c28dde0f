"""SQLite concurrency: searches and history pages run on the event loop's connection
within a time budget (one that needs longer is stopped and answered from a thread
instead, with the same result), and the writers of several processes take turns."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from fhir_server.storage import sqlite as sqlite_store
from fhir_server.storage.base import HistoryQuery
from fhir_server.storage.open import open_store
from tests.store_support import observation_query, put


async def _answers(url: str) -> tuple[list[Any], int]:
    store = open_store(url)
    await store.open()
    try:
        answers = []
        for items in (
            [("patient", "p1"), ("_sort", "-date")],
            [("code", "http://loinc.org|1-8"), ("_sort", "date")],
            [("patient.identifier", "urn:mrn|m1")],
        ):
            page = await store.search(observation_query(items), None, 5, True)
            answers.append((page.total, [e.id for e in page.entries], page.next_cursor is not None))
        for query in (HistoryQuery(type="Observation", count=4), HistoryQuery(count=4)):
            history = await store.history(query)
            more = await store.history(
                HistoryQuery(type=query.type, count=4, before_seq=history.next_before_seq)
            )
            answers.append(
                (history.total, [(e.id, e.version) for e in history.entries + more.entries])
            )
        return answers, len(store._search_conns)
    finally:
        await store.close()


async def test_over_budget_searches_move_to_a_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    store = open_store(url)
    await store.open()
    try:
        patient = {
            "resourceType": "Patient",
            "id": "p1",
            "identifier": [{"system": "urn:mrn", "value": "m1"}],
        }
        await store.write(put(patient))
        for n in range(12):
            observation = {
                "resourceType": "Observation",
                "id": f"o{n}",
                "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "1-8"}]},
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": f"2024-01-{n + 1:02d}",
            }
            await store.write(put(observation))
    finally:
        await store.close()

    inline, threads = await _answers(url)
    assert threads == 0  # every search fitted the budget on the event loop
    assert inline[0] == (12, ["o11", "o10", "o9", "o8", "o7"], True)
    assert inline[3] == (12, [(f"o{n}", 1) for n in range(11, 3, -1)])
    assert inline[4][0] == 13  # and the patient

    # always over budget, checked at every step of SQLite's virtual machine
    monkeypatch.setattr(sqlite_store, "INLINE_BUDGET", -1.0)
    monkeypatch.setattr(sqlite_store, "_PROGRESS_STEPS", 1)
    moved, threads = await _answers(url)
    assert threads >= 1  # answered from the thread pool's connections
    assert moved == inline


async def test_two_stores_on_one_file_write_in_turn(tmp_path: Path) -> None:
    """Two stores on one file (as the processes of ``serve --workers 2`` are) take turns
    through the writer lock file and SQLite's lock: every write lands, versions in order."""
    url = f"sqlite:///{tmp_path / 'fhir.sqlite3'}"
    first, second = open_store(url), open_store(url)
    await first.open()
    await second.open()
    try:
        assert (tmp_path / "fhir.sqlite3-writer.lock").exists()

        async def writes(store: Any, owner: str) -> None:
            for n in range(15):
                patient = {
                    "resourceType": "Patient",
                    "id": "shared",
                    "name": [{"text": f"{owner}{n}"}],
                }
                await store.write(put(patient))
                await store.write(put({"resourceType": "Patient", "id": f"{owner}-{n}"}))

        await asyncio.gather(writes(first, "a"), writes(second, "b"))
        shared = await first.read("Patient", "shared")
        assert shared is not None and shared.version == 30
        history = await second.history(HistoryQuery(type="Patient", id="shared", count=100))
        assert [v.version for v in history.entries] == list(range(30, 0, -1))
        everything = await first.history(HistoryQuery(count=100))
        assert everything.total == 60
    finally:
        await first.close()
        await second.close()
